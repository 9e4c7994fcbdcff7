//! Clients as their own process, configured from a TOML file (an
//! [`aos_cluster::ClientConfig`]):
//!
//! ```text
//! cargo run -p aos-cluster-examples --bin client -- examples/config/client.toml [--count 60] [--exit]
//! ```
//!
//! Opens `--count` balanced sessions at once (default 1). On each it sends one
//! line and reads the instance's answer (the `instance` example echoes it,
//! prefixed with its id). Prints where the sessions went, then keeps them open
//! until Ctrl-C, so the instances' counts show them (`--exit`: close at once).

use std::collections::BTreeMap;
use std::time::Duration;

use aos_cluster::ClientConfig;
use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tracing::warn;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Opens balanced sessions and says hello on each.
#[derive(Parser)]
#[command(name = "client")]
struct Args {
    /// The client configuration (TOML: seeds, cluster, timeouts, retry).
    config: String,
    /// Sessions to open, all at once.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Close the sessions and exit instead of waiting for Ctrl-C.
    #[arg(long)]
    exit: bool,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.config).map_err(|e| format!("{}: {e}", args.config))?;
    let config: ClientConfig = toml::from_str(&text).map_err(|e| format!("{}: {e}", args.config))?;
    config.validate()?;

    let mut clients = tokio::task::JoinSet::new();
    for n in 0..args.count {
        let config = config.clone();
        clients.spawn(async move {
            let session = aos_cluster_tokio::Client::new(config.clone()).connect().await?;
            let mut session = BufReader::new(session);
            session.get_mut().write_all(format!("hello from client {n}\n").as_bytes()).await?;
            let mut reply = String::new();
            let mut limited = (&mut session).take(4096);
            let read = limited.read_line(&mut reply);
            tokio::time::timeout(Duration::from_secs(5), read).await.map_err(|_| "no answer in 5 s")??;
            Ok::<_, Error>((session, reply))
        });
    }
    let mut sessions = Vec::new();
    let mut per_instance = BTreeMap::new();
    while let Some(joined) = clients.join_next().await {
        match joined? {
            Ok((session, reply)) => {
                let s = session.get_ref();
                println!(
                    "session {} on {} after {:.1?}: {}",
                    s.session_id(),
                    s.endpoint(),
                    s.time_to_session(),
                    reply.trim_end()
                );
                *per_instance.entry(s.endpoint().to_string()).or_insert(0u32) += 1;
                sessions.push(session);
            }
            Err(e) => warn!(error = %e, "no session"),
        }
    }
    for (endpoint, n) in &per_instance {
        println!("{endpoint}: {n} session(s)");
    }
    println!("{} of {} connected", sessions.len(), args.count);
    if !args.exit {
        println!("Ctrl-C ends the sessions");
        tokio::signal::ctrl_c().await?;
    }
    drop(sessions);
    Ok(())
}
