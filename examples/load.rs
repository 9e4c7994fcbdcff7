//! Load test: 10 000 clients against 4 loopback instances; reports sessions
//! established per second and the time-to-session percentiles.
//!
//! ```text
//! cargo run --release --example load -- [--clients 10000] [--concurrency 256]
//! ```
//!
//! The instances run in a child process (this same binary with `--serve`),
//! as they would in production, and because one process holding both ends
//! of 10 000 sessions would need 20 000 descriptors. Every session stays open
//! until the end, so the instances really carry 10 000 sessions.

#[path = "support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use aos_cluster::Endpoint;
use support::cluster::{LocalCluster, Timing};
use tokio::sync::Semaphore;

const CAPACITIES: [u32; 4] = [2_000, 2_500, 3_000, 3_500];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    support::init_tracing("warn");
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        return serve().await;
    }
    let flag = |name: &str, default: usize| -> Result<usize, String> {
        match args.iter().position(|a| a == name) {
            Some(i) => args.get(i + 1).and_then(|v| v.parse().ok()).ok_or(format!("{name} needs a number")),
            None => Ok(default),
        }
    };
    let clients = flag("--clients", 10_000)?;
    let concurrency = flag("--concurrency", 256)?.max(1);

    let mut child = Command::new(std::env::current_exe()?)
        .arg("--serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    if line.is_empty() {
        return Err("the instance process exited before serving".into());
    }
    let seeds: Vec<Endpoint> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
    let config = support::cluster::client_config(seeds);
    println!(
        "{clients} clients, at most {concurrency} connecting at once, against 4 instances {CAPACITIES:?}"
    );

    tokio::select! {
        result = run_clients(config, clients, concurrency) => result?,
        _ = tokio::signal::ctrl_c() => println!("interrupted"),
    }
    // Closing the child's stdin asks it to shut down gracefully.
    drop(child.stdin.take());
    child.wait()?;
    Ok(())
}

/// Connects `clients` clients, at most `concurrency` at once, holds every
/// session until all have an outcome, and prints the figures.
async fn run_clients(
    config: aos_cluster::ClientConfig,
    clients: usize,
    concurrency: usize,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let limit = Arc::new(Semaphore::new(concurrency));
    let started = support::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..clients as u64 {
        let permit = limit.clone().acquire_owned().await?;
        let config = config.clone();
        tasks.spawn(async move {
            let outcome = support::client::connect(config, n).await;
            drop(permit);
            outcome
        });
    }
    let mut times = Vec::with_capacity(clients);
    let mut sessions = Vec::with_capacity(clients);
    let mut failed = 0usize;
    while let Some(joined) = tasks.join_next().await {
        match joined? {
            Ok(session) => {
                times.push(session.time_to_session);
                sessions.push(session);
            }
            Err(e) => {
                failed += 1;
                tracing::warn!(error = %e, "client failed");
            }
        }
    }
    let elapsed = started.elapsed();
    times.sort();
    let pct = |p: f64| times.get(((times.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied();
    println!("sessions established: {} ({failed} failed) in {elapsed:.2?}", sessions.len());
    println!("  rate:  {:.0} sessions/s", sessions.len() as f64 / elapsed.as_secs_f64());
    println!(
        "  time to session: p50 {:?}  p99 {:?}  max {:?}",
        pct(0.50).unwrap_or_default(),
        pct(0.99).unwrap_or_default(),
        times.last().copied().unwrap_or_default()
    );
    let mut per_instance = std::collections::BTreeMap::new();
    for s in &sessions {
        *per_instance.entry(s.instance).or_insert(0u32) += 1;
    }
    for ((id, n), cap) in per_instance.iter().zip(CAPACITIES) {
        let id = id.map_or("unnamed".to_owned(), |id| id.to_string());
        println!("  {id}: {n}/{cap} sessions ({:.3} of capacity)", f64::from(*n) / f64::from(cap));
    }
    Ok(())
}

/// The child: four instances and a SQLite registry until stdin closes.
async fn serve() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let timing = Timing {
        member_ttl: Duration::from_secs(5),
        heartbeat_interval: Duration::from_secs(1),
        ..Timing::FAST
    };
    let cluster = LocalCluster::start(&CAPACITIES, None, timing).await?;
    cluster.wait_registered().await?;
    let endpoints: Vec<String> = cluster.endpoints.iter().map(ToString::to_string).collect();
    println!("{}", endpoints.join(" "));
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = closed_tx.send(());
    });
    tokio::select! {
        _ = closed => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    cluster.shutdown().await;
    Ok(())
}
