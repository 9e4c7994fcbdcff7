//! The main job: a cluster of instances on 127.0.0.1, a SQLite registry in a
//! temp directory, and a stream of clients. Shows where the sessions go, then
//! crashes one instance, drains another, and shows where new clients go.
//!
//! ```text
//! cargo run --release --example cluster -- [--capacities 50,100,150,200 | --instances N]
//!     [--clients 300] [--after 80] [--rate 500] [--registry URL]
//! ```
//! `--instances N` gives instance `i` (from 1) `50 * i` sessions.
//! `--registry postgres://user:pass@host/db` uses PostgreSQL instead of SQLite.

#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aos_cluster::InstanceId;
use support::cluster::{LocalCluster, Timing};
use support::server::Stats;
use tokio::sync::{watch, Mutex};
use tracing::info;

const USAGE: &str =
    "usage: cluster [--capacities 50,100,150,200 | --instances N] [--clients 300] [--after 80] \
                     [--rate 500] [--registry URL]";

struct Args {
    capacities: Vec<u32>,
    clients: usize,
    after: usize,
    rate: f64,
    registry: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args =
        Args { capacities: vec![50, 100, 150, 200], clients: 300, after: 80, rate: 500.0, registry: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--capacities" => {
                args.capacities = value()?
                    .split(',')
                    .map(|c| c.trim().parse().map_err(|e| format!("--capacities: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--instances" => {
                let n: usize = value()?.parse().map_err(|e| format!("--instances: {e}"))?;
                args.capacities = (1..=n as u32).map(|i| 50 * i).collect();
            }
            "--clients" => args.clients = value()?.parse().map_err(|e| format!("--clients: {e}"))?,
            "--after" => args.after = value()?.parse().map_err(|e| format!("--after: {e}"))?,
            "--rate" => args.rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--registry" => args.registry = Some(value()?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if args.capacities.len() < 3 {
        return Err("the demo crashes one instance and drains another: give at least 3".into());
    }
    if args.rate <= 0.0 {
        return Err("--rate must be positive".into());
    }
    Ok(args)
}

/// What the client tasks count, shared with the progress line.
#[derive(Default)]
struct Counters {
    started: AtomicU64,
    connected: AtomicU64,
    failed: AtomicU64,
    lost: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    support::init_tracing("warn");
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let timing = Timing {
        member_ttl: Duration::from_secs(2),
        heartbeat_interval: Duration::from_millis(250),
        ..Timing::FAST
    };
    let cluster =
        Arc::new(Mutex::new(LocalCluster::start(&args.capacities, args.registry.as_deref(), timing).await?));
    let (stop_clients, clients_stop) = watch::channel(false);
    let outcome = tokio::select! {
        outcome = run(&args, cluster.clone(), clients_stop) => outcome,
        _ = tokio::signal::ctrl_c() => {
            println!("\ninterrupted; shutting down");
            Ok(())
        }
    };
    let _ = stop_clients.send(true);
    let cluster = Arc::try_unwrap(cluster).ok().expect("the scenario has ended").into_inner();
    cluster.shutdown().await;
    outcome
}

async fn run(
    args: &Args,
    cluster: Arc<Mutex<LocalCluster>>,
    stop: watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (config, url) = {
        let c = cluster.lock().await;
        c.wait_registered().await?;
        (c.client_config(), c.registry_url.clone())
    };
    println!("aos-cluster: {} instances on 127.0.0.1, registry {url}", args.capacities.len());
    for (i, (endpoint, cap)) in config.seeds.iter().zip(&args.capacities).enumerate() {
        println!("  #{} {endpoint} max_sessions {cap}", i + 1);
    }

    let counters = Arc::new(Counters::default());
    let placed = Arc::new(std::sync::Mutex::new(Vec::<Option<InstanceId>>::new()));
    println!("\n{} clients arriving at {}/s:", args.clients, args.rate);
    let wave = stream_clients(args, &config, 0, &counters, &placed, &stop);
    progress_until(wave, &cluster, &counters, args.clients).await;
    let before = cluster.lock().await.stats().await;
    print_table(&before, &args.capacities);

    let (crashed, drained) = (1usize, 2usize);
    let timing = {
        let mut c = cluster.lock().await;
        println!("\ncrashing #{} and draining #{} ...", crashed + 1, drained + 1);
        c.crash(crashed).await;
        c.server(drained).set_accepting(false);
        c.timing
    };
    println!("waiting until #{}'s heartbeat is older than member_ttl ({:?})", crashed + 1, timing.member_ttl);
    cluster.lock().await.wait_until_stale(InstanceId(crashed as u32 + 1)).await?;
    println!("{} sessions on #{} were lost with it", counters.lost.load(Ordering::Relaxed), crashed + 1);

    let already = placed.lock().expect("not poisoned").len();
    println!("\n{} new clients:", args.after);
    let wave = stream_clients(args, &config, args.clients as u64, &counters, &placed, &stop);
    progress_until(wave, &cluster, &counters, args.clients + args.after).await;
    let after = cluster.lock().await.stats().await;
    let new: Vec<Option<InstanceId>> = placed.lock().expect("not poisoned")[already..].to_vec();
    println!("\nwhere the {} new clients went:", new.len());
    println!("{:<9} {:<9} {:>12} {:>15}", "instance", "state", "new sessions", "connected/max");
    for (i, cap) in args.capacities.iter().enumerate() {
        let id = InstanceId(i as u32 + 1);
        let state = match i {
            _ if i == crashed => "crashed",
            _ if i == drained => "draining",
            _ => "serving",
        };
        let connected = after[i].map_or("-".to_owned(), |s| format!("{}/{cap}", s.workload.connected));
        let count = new.iter().filter(|&&n| n == Some(id)).count();
        println!("{:<9} {:<9} {:>12} {:>15}", id.to_string(), state, count, connected);
    }
    let misplaced = new
        .iter()
        .filter(|&&n| n == Some(InstanceId(crashed as u32 + 1)) || n == Some(InstanceId(drained as u32 + 1)));
    println!("sent to the crashed or draining instance: {}", misplaced.count());
    Ok(())
}

/// Starts `args.clients` (or `args.after`) clients at `args.rate` per second;
/// each keeps its session until `stop`. Returns when all have an outcome.
fn stream_clients(
    args: &Args,
    config: &aos_cluster::ClientConfig,
    first_seed: u64,
    counters: &Arc<Counters>,
    placed: &Arc<std::sync::Mutex<Vec<Option<InstanceId>>>>,
    stop: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let count = if first_seed == 0 { args.clients } else { args.after };
    let gap = Duration::from_secs_f64(1.0 / args.rate);
    let (config, counters, placed, stop) = (config.clone(), counters.clone(), placed.clone(), stop.clone());
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(gap);
        let mut outcomes = tokio::task::JoinSet::new();
        for n in 0..count as u64 {
            ticker.tick().await;
            counters.started.fetch_add(1, Ordering::Relaxed);
            let (config, counters, placed, mut stop) =
                (config.clone(), counters.clone(), placed.clone(), stop.clone());
            let (done_tx, done) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                match support::client::connect(config, first_seed + n).await {
                    Ok(mut session) => {
                        counters.connected.fetch_add(1, Ordering::Relaxed);
                        placed.lock().expect("not poisoned").push(session.instance);
                        let _ = done_tx.send(());
                        tokio::select! {
                            _ = session.closed() => { counters.lost.fetch_add(1, Ordering::Relaxed); }
                            _ = stop.changed() => {}
                        }
                    }
                    Err(e) => {
                        info!(error = %e, "client failed");
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        let _ = done_tx.send(());
                    }
                }
            });
            outcomes.spawn(done);
        }
        while outcomes.join_next().await.is_some() {}
    })
}

/// Redraws one progress line every 100 ms until `wave` ends.
async fn progress_until(
    mut wave: tokio::task::JoinHandle<()>,
    cluster: &Arc<Mutex<LocalCluster>>,
    counters: &Counters,
    total: usize,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        let finished = tokio::select! {
            _ = &mut wave => true,
            _ = tick.tick() => false,
        };
        let stats = cluster.lock().await.stats().await;
        let per_instance: Vec<String> = stats
            .iter()
            .map(|s| {
                s.map_or("down".to_owned(), |s| {
                    format!("{}/{}", s.workload.connected, s.workload.max_sessions)
                })
            })
            .enumerate()
            .map(|(i, s)| format!("#{} {s}", i + 1))
            .collect();
        print!(
            "\r  [{:>5}/{total} started] connected {:>5}  failed {:>3}  | {}   ",
            counters.started.load(Ordering::Relaxed),
            counters.connected.load(Ordering::Relaxed),
            counters.failed.load(Ordering::Relaxed),
            per_instance.join("  ")
        );
        let _ = std::io::stdout().flush();
        if finished {
            println!();
            return;
        }
    }
}

fn print_table(stats: &[Option<Stats>], capacities: &[u32]) {
    let total: u32 = stats.iter().flatten().map(|s| s.workload.connected).sum();
    let capacity: u32 = capacities.iter().sum();
    println!(
        "\n{:<9} {:>15} {:>8} {:>15} {:>7}",
        "instance", "connected/max", "share", "capacity share", "ratio"
    );
    for (i, s) in stats.iter().enumerate() {
        let Some(s) = s else { continue };
        let w = s.workload;
        println!(
            "{:<9} {:>15} {:>7.1}% {:>14.1}% {:>7.3}",
            format!("#{}", i + 1),
            format!("{}/{}", w.connected, w.max_sessions),
            100.0 * f64::from(w.connected) / f64::from(total.max(1)),
            100.0 * f64::from(w.max_sessions) / f64::from(capacity),
            f64::from(w.connected) / f64::from(w.max_sessions),
        );
    }
}
