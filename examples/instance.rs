//! One instance as its own process, configured from a TOML file:
//!
//! ```text
//! cargo run --example instance -- examples/config/instance-1.toml
//! ```
//!
//! The file holds `listen` (the socket address to bind), `registry` (a
//! `sqlite://path` or `postgres://...` URL shared by the cluster) and an
//! `[instance]` table, an [`aos_cluster::InstanceConfig`]. Ctrl-C stops
//! gracefully (the registry row is removed); on Unix, `SIGUSR1` toggles
//! draining ("Reject new clients").

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;

use aos_cluster::InstanceConfig;
use support::registry::Registry;
use support::server::InstanceServer;
use tracing::info;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: String,
    registry: String,
    instance: InstanceConfig,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    support::init_tracing("info");
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: instance CONFIG.toml");
        std::process::exit(2);
    };
    let file: File = toml::from_str(&std::fs::read_to_string(&path)?)?;
    file.instance.validate()?;
    let registry = Arc::new(Registry::connect(&file.registry).await?);
    let listen_addr =
        tokio::net::lookup_host(&file.listen).await?.next().ok_or("`listen` names no address")?;
    let listener = support::server::listen(listen_addr)?;
    let seed = u64::from(file.instance.id.0) ^ u64::from(std::process::id());
    let server = InstanceServer::start(file.instance, listener, registry, seed)?;
    info!(listen = %server.addr, "Ctrl-C stops; SIGUSR1 toggles draining");
    wait_for_ctrl_c(&server).await?;
    server.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_ctrl_c(server: &InstanceServer) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut toggle = signal(SignalKind::user_defined1())?;
    let mut accepting = true;
    loop {
        tokio::select! {
            stop = tokio::signal::ctrl_c() => return stop,
            _ = toggle.recv() => {
                accepting = !accepting;
                info!(accepting, "admission toggled");
                server.set_accepting(accepting);
            }
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_ctrl_c(_server: &InstanceServer) -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}
