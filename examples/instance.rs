//! One instance as its own process, configured from a TOML file:
//!
//! ```text
//! cargo run -p aos-cluster-examples --bin instance -- examples/config/instance-1.toml
//! ```
//!
//! The file is an [`aos_cluster_tokio::ServerConfig`] (`listen`, the
//! `[instance]` table and any of the server's limits) plus `registry`: the
//! `sqlite://PATH` or `postgres://...` URL the cluster's instances share.
//!
//! The application it serves on every admitted session is a line echo: each
//! line the client sends comes back prefixed with this instance's id
//! (`AOS01> hello`), so a client sees which instance answered. Ctrl-C stops
//! gracefully (the registry row is removed); on Unix, `SIGUSR1` toggles
//! draining ("Reject new clients").

use std::sync::Arc;

use aos_cluster_tokio::{registry, Server, ServerConfig, ServerHandle};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tracing::info;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The longest line the echo accepts; a longer one ends the session.
const MAX_LINE: u64 = 4096;

/// One instance of a cluster, serving a line echo on its sessions.
#[derive(Debug, clap::Parser)]
#[command(name = "instance")]
struct Args {
    /// The instance's file: `listen`, `registry` and an `[instance]` table.
    config: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let args = <Args as clap::Parser>::parse();
    let path = args.config.display().to_string();
    let (config, url) = read_config(&path)?;
    let registry = registry::open(&url).await?;
    let server = Server::bind(config, registry).await?;
    let handle = server.handle();
    let label = server.endpoint().instance().unwrap_or("instance").to_owned();
    info!(listen = %server.local_addr(), endpoint = %server.endpoint(), registry = %registry::redact_password(&url),
        "serving a line echo; Ctrl-C stops, SIGUSR1 toggles draining");
    tokio::spawn(serve_echo(server, Arc::from(label)));
    wait_for_ctrl_c(&handle).await?;
    handle.shutdown().await;
    Ok(())
}

/// The file's `registry` key, and the rest as a `ServerConfig` (which refuses
/// unknown keys, so a typo is an error, not a default).
fn read_config(path: &str) -> Result<(ServerConfig, String), Error> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let url = match table.remove("registry") {
        Some(toml::Value::String(url)) => url,
        _ => return Err(format!("{path}: `registry` (a sqlite:// or postgres:// URL) is required").into()),
    };
    let config: ServerConfig = table.try_into().map_err(|e| format!("{path}: {e}"))?;
    config.validate()?;
    Ok((config, url))
}

/// Every admitted session gets a task that echoes its lines, prefixed.
async fn serve_echo(mut server: Server, label: Arc<str>) {
    while let Some(accepted) = server.accept().await {
        let label = label.clone();
        tracing::debug!(session = %accepted.info.session_id, peer = %accepted.info.peer_addr, "session");
        tokio::spawn(async move {
            let (read, mut write) = tokio::io::split(accepted.stream);
            let mut read = BufReader::new(read);
            let mut line = String::new();
            loop {
                line.clear();
                match (&mut read).take(MAX_LINE).read_line(&mut line).await {
                    Ok(n) if n > 0 && line.ends_with('\n') => {}
                    _ => break,
                }
                if write.write_all(format!("{label}> {line}").as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

#[cfg(unix)]
async fn wait_for_ctrl_c(handle: &ServerHandle) -> Result<(), Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut toggle = signal(SignalKind::user_defined1())?;
    let mut accepting = true;
    loop {
        tokio::select! {
            stop = tokio::signal::ctrl_c() => return Ok(stop?),
            _ = toggle.recv() => {
                accepting = !accepting;
                info!(accepting, "admission toggled");
                handle.set_accepting(accepting).await?;
            }
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_ctrl_c(_handle: &ServerHandle) -> Result<(), Error> {
    Ok(tokio::signal::ctrl_c().await?)
}
