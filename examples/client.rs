//! Clients as their own process, configured from a TOML file (an
//! [`aos_cluster::ClientConfig`]):
//!
//! ```text
//! cargo run --example client -- examples/config/client.toml [--count 20]
//! ```
//!
//! Opens `--count` sessions (default 1), prints where each went, and keeps
//! them until Ctrl-C.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;

use aos_cluster::ClientConfig;
use tracing::{info, warn};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    support::init_tracing("info");
    let mut args = std::env::args().skip(1);
    let (Some(path), count) = (args.next(), args.next()) else {
        eprintln!("usage: client CONFIG.toml [--count N]");
        std::process::exit(2);
    };
    let count: u64 = match (count.as_deref(), args.next()) {
        (None, _) => 1,
        (Some("--count"), Some(n)) => n.parse()?,
        _ => {
            eprintln!("usage: client CONFIG.toml [--count N]");
            std::process::exit(2);
        }
    };
    let config: ClientConfig = toml::from_str(&std::fs::read_to_string(&path)?)?;
    config.validate()?;

    let salt = u64::from(std::process::id()) << 32;
    let mut clients = tokio::task::JoinSet::new();
    for n in 0..count {
        clients.spawn(support::client::connect(config.clone(), salt | n));
    }
    let mut sessions = Vec::new();
    let mut per_instance = BTreeMap::new();
    while let Some(joined) = clients.join_next().await {
        match joined? {
            Ok(session) => {
                info!(instance = ?session.instance, endpoint = %session.endpoint,
                      time_to_session = ?session.time_to_session, "connected");
                *per_instance.entry(session.instance).or_insert(0u32) += 1;
                sessions.push(session);
            }
            Err(e) => warn!(error = %e, "no session"),
        }
    }
    for (instance, n) in &per_instance {
        let instance = instance.map_or("an unnamed instance".to_owned(), |id| id.to_string());
        println!("{instance}: {n} session(s)");
    }
    println!("{} of {count} connected; Ctrl-C ends the sessions", sessions.len());
    tokio::signal::ctrl_c().await?;
    drop(sessions);
    Ok(())
}
