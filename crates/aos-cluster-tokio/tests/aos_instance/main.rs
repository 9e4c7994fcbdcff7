//! The `aos-instance` binary end to end: three processes on one SQLite
//! registry over loopback, scraped and driven through their admin endpoints
//! with plain HTTP/1.1 requests, and clients that avoid the drained one.

mod admin;
mod check;
mod restart;

use aos_cluster_tokio::registry::MemberTiming;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aos_cluster::{ClientConfig, Endpoint, InstanceId};
use aos_cluster_tokio::registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_aos-instance");
/// The longest any wait of these tests may take (a loaded CI machine included).
const PATIENCE: Duration = Duration::from_secs(30);

/// A running `aos-instance`; killed if the test ends without stopping it.
struct Instance {
    child: Child,
    listen: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, id: u32, db: &str) -> std::path::PathBuf {
    let path = dir.join(format!("instance-{id}.toml"));
    let text = format!(
        r#"registry = "{db}"
admin = "127.0.0.1:0"
listen = "127.0.0.1:0"
shutdown_grace = "2s"

[instance]
id = {id}
endpoint = "127.0.0.1:1"
cluster = "ci"
max_sessions = 100
member_ttl = "3s"
heartbeat_interval = "200ms"
snapshot_ttl = "100ms"
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts the binary and reads the line that says where it listens.
fn start(config: &Path) -> Instance {
    start_with(config, &[])
}

/// [`start`] with extra environment variables.
fn start_with(config: &Path, env: &[(&str, &str)]) -> Instance {
    let mut child = Command::new(BIN)
        .args(["run"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    // The read ends at the line or at EOF (the process exited): bounded by the process.
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let field = |name: &str| -> SocketAddr {
        let value = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"));
        value.trim_start_matches("http://").parse().unwrap()
    };
    let (listen, admin) = (field("listen="), field("admin="));
    Instance { child, listen, admin }
}

/// One HTTP/1.1 request; the status code and the body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    http_as(addr, &format!("Host: {addr}\r\n"), method, path, body).await
}

/// [`http`] with `headers` (each ending in CRLF) in place of the `Host` line.
async fn http_as(addr: SocketAddr, headers: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\n{headers}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        String::from_utf8(response).unwrap()
    };
    let response = timeout(Duration::from_secs(10), exchange).await.expect("the admin endpoint answers");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The value of an unlabelled metric line `name value`.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn client(instances: &[&Instance]) -> ClientConfig {
    let seeds = instances.iter().map(|i| Endpoint::new("127.0.0.1", i.listen.port()).unwrap()).collect();
    ClientConfig {
        cluster: Some("ci".into()),
        handshake_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(3),
        ..ClientConfig::with_seeds(seeds)
    }
}
