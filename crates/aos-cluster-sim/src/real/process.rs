//! Instances as `aos-instance run` processes: each with its own file, its
//! own runtime and registry connection, reached through its admin endpoint.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use aos_cluster::Endpoint;
use aos_cluster_tokio::config_file::InstanceFile;
use aos_cluster_tokio::ServerConfig;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::Figures;

/// How long a process may take to print where it listens.
const START_PATIENCE: Duration = Duration::from_secs(30);
/// How long one admin request may take.
const ADMIN_PATIENCE: Duration = Duration::from_secs(10);

/// A running `aos-instance` process.
pub(super) struct Process {
    child: Child,
    admin: SocketAddr,
}

impl Process {
    /// Writes `config` into `dir` and starts `binary run` on it; returns once
    /// the process said where it listens.
    pub(super) async fn start(
        binary: &Path,
        dir: &Path,
        registry: &str,
        config: ServerConfig,
    ) -> Result<(Process, Endpoint), String> {
        let id = config.instance.id;
        let file = InstanceFile {
            registry: registry.to_owned(),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_token: None,
            server: config,
        };
        let path = dir.join(format!("instance-{}.toml", id.0));
        std::fs::write(&path, file.to_toml()).map_err(|e| format!("{}: {e}", path.display()))?;
        let log =
            std::fs::File::create(dir.join(format!("instance-{}.log", id.0))).map_err(|e| e.to_string())?;
        let mut child = Command::new(binary)
            .arg("run")
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        let read = tokio::time::timeout(START_PATIENCE, BufReader::new(stdout).read_line(&mut line)).await;
        if !matches!(read, Ok(Ok(1..))) {
            let _ = child.kill().await;
            return Err(format!(
                "instance {id} did not start (see {})",
                dir.join(format!("instance-{}.log", id.0)).display()
            ));
        }
        // `aos-instance listen=ADDR endpoint=EP admin=http://ADDR`
        let field =
            |name: &str| line.split_whitespace().find_map(|w| w.strip_prefix(name)).map(str::to_owned);
        let endpoint = field("endpoint=").and_then(|e| e.parse::<Endpoint>().ok());
        let admin = field("admin=http://").and_then(|a| a.parse::<SocketAddr>().ok());
        match (endpoint, admin) {
            (Some(endpoint), Some(admin)) => Ok((Process { child, admin }, endpoint)),
            _ => {
                let _ = child.kill().await;
                Err(format!("instance {id} printed an unexpected first line: {line:?}"))
            }
        }
    }

    /// The figures its `/stats` shows.
    pub(super) async fn figures(&self) -> Option<Figures> {
        let body = admin_request(self.admin, "GET", "/stats", "").await?;
        let stats: serde_json::Value = serde_json::from_str(&body).ok()?;
        let count = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        Some(Figures {
            connected: u32::try_from(count(&stats["connected"])).ok()?,
            rounds: count(&stats["instance"]["round"]["rounds"]),
            peer_queries: count(&stats["instance"]["round"]["peer_queries"]),
            peer_silent: count(&stats["instance"]["round"]["peer_silent"]),
        })
    }

    /// `POST /drain`.
    pub(super) async fn set_accepting(&self, accepting: bool) {
        admin_request(self.admin, "POST", "/drain", if accepting { "off" } else { "on" }).await;
    }

    /// `POST /max-sessions`.
    pub(super) async fn set_max_sessions(&self, max: u32) {
        admin_request(self.admin, "POST", "/max-sessions", &max.to_string()).await;
    }

    /// SIGKILL: no goodbye, the row stays until it ages out.
    pub(super) async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// `POST /shutdown`, then waits for the exit (killed if it takes long).
    pub(super) async fn stop(mut self) {
        admin_request(self.admin, "POST", "/shutdown", "").await;
        if tokio::time::timeout(ADMIN_PATIENCE, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// One HTTP/1.1 request on its own connection; the body of a 2xx answer.
async fn admin_request(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8(response).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let ok = head.split_whitespace().nth(1).is_some_and(|code| code.starts_with('2'));
        ok.then(|| body.to_owned())
    };
    tokio::time::timeout(ADMIN_PATIENCE, exchange).await.ok().flatten()
}
