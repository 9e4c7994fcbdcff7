//! The main job: a cluster of instances on 127.0.0.1 sharing one registry
//! (SQLite in a temp directory unless `--registry` names another), and a
//! stream of clients. Every instance serves a small line-echo application on
//! the sessions it admits; every client exchanges `--requests` request/reply
//! pairs over its balanced session and then keeps it. The demo shows where the
//! sessions went and the traffic each instance carried, then crashes one
//! instance, drains another, waits until the crashed one's heartbeat is older
//! than `member_ttl`, and shows that new clients go to neither.
//!
//! ```text
//! cargo run --release -p aos-cluster-examples --bin cluster -- [--capacities 50,100,150,200 | --instances N]
//!     [--clients 300] [--after 80] [--rate 500] [--requests 5] [--registry URL]
//! ```
//! `--instances N` gives instance `i` (from 1) `50 * i` sessions.
//! `--registry postgres://user:pass@host/db` uses PostgreSQL instead of SQLite.
//! The run ends on its own (in about 5 s with the defaults); Ctrl-C stops it
//! cleanly at any point. The progress line is redrawn in place on a terminal
//! and printed as plain lines otherwise.
//!
//! The application protocol: the client sends `PING <client> <n>\n`, the
//! instance answers `PONG <client> <n> from <instance id>\n`.

mod clients;
mod report;

use aos_cluster_tokio::registry::MemberTiming;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aos_cluster::{ClientConfig, Endpoint, InstanceConfig, InstanceId, RetryPolicy};
use aos_cluster_tokio::registry::{self, Registry};
use aos_cluster_tokio::tls::dev_certs::DevPki;
use aos_cluster_tokio::{ClientOptions, Server, ServerConfig, ServerHandle, ServerOptions, Session};
use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;
use tokio::task::JoinSet;

use clients::{client_config, stream_clients};
use report::{print_table, progress_until};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The cluster name every local instance uses.
const CLUSTER: &str = "local";
/// Timers short enough for the demo to see a crashed member go stale quickly.
const MEMBER_TTL: Duration = Duration::from_secs(2);
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(250);
/// The longest application line either side accepts: a client cannot make an
/// instance buffer more than this.
const MAX_LINE: u64 = 256;

/// A loopback cluster, a stream of clients, a crash and a drain.
#[derive(Parser)]
#[command(name = "cluster")]
struct Args {
    /// Each instance's max_sessions, comma separated (at least 3 instances).
    #[arg(long, value_delimiter = ',', default_value = "50,100,150,200")]
    capacities: Vec<u32>,
    /// N instances, instance i (from 1) with 50 * i sessions (instead of --capacities).
    #[arg(long, conflicts_with = "capacities")]
    instances: Option<u32>,
    /// Clients in the first wave.
    #[arg(long, default_value_t = 300)]
    clients: usize,
    /// Clients after the crash and the drain.
    #[arg(long, default_value_t = 80)]
    after: usize,
    /// Client arrivals per second.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Request/reply exchanges each client makes over its session.
    #[arg(long, default_value_t = 5)]
    requests: u32,
    /// The registry URL (sqlite://PATH, postgres://...); default: SQLite in a temp dir.
    #[arg(long)]
    registry: Option<String>,
    /// Everything over TLS with a throwaway CA generated now: clients verify every instance,
    /// instances query each other with mutual TLS. A postgres:// registry uses TLS as its URL
    /// says (`sslmode=verify-full&sslrootcert=...`).
    #[arg(long)]
    tls: bool,
}

/// The application traffic one instance served.
#[derive(Default)]
struct Traffic {
    requests: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// One instance of the demo: its control handle and its traffic.
struct Node {
    handle: ServerHandle,
    capacity: u32,
    traffic: Arc<Traffic>,
    state: &'static str,
}

/// What the client tasks count, shared with the progress line.
#[derive(Default)]
struct Counters {
    started: AtomicU64,
    connected: AtomicU64,
    failed: AtomicU64,
    exchanges: AtomicU64,
    app_errors: AtomicU64,
    lost: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let mut args = Args::parse();
    if let Some(n) = args.instances {
        args.capacities = (1..=n).map(|i| 50 * i).collect();
    }
    if args.capacities.len() < 3 {
        return Err("the demo crashes one instance and drains another: give at least 3".into());
    }
    if !args.rate.is_finite() || args.rate <= 0.0 {
        return Err("--rate must be positive".into());
    }

    let dir = tempfile_dir()?;
    let url = match &args.registry {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", dir.join("registry.db").display()),
    };
    let registry = registry::open(&url).await?;
    // Kept alive for the whole run: its temporary directory holds the certificates.
    let pki = if args.tls { Some(DevPki::new()?) } else { None };
    let client_options = match &pki {
        Some(pki) => ClientOptions::new().with_tls(pki.client_tls()?),
        None => ClientOptions::new(),
    };
    let mut nodes = Vec::new();
    let mut seeds = Vec::new();
    for (i, &capacity) in args.capacities.iter().enumerate() {
        let id = InstanceId(i as u32 + 1);
        let options = match &pki {
            Some(pki) => ServerOptions::new().with_tls(pki.server_tls(&["127.0.0.1"])?),
            None => ServerOptions::new(),
        };
        let server = Server::bind_with(server_config(id, capacity)?, registry.clone(), options).await?;
        seeds.push(server.endpoint().clone());
        let traffic = Arc::new(Traffic::default());
        nodes.push(Node { handle: server.handle(), capacity, traffic: traffic.clone(), state: "serving" });
        tokio::spawn(serve_pong(server, id, traffic));
    }

    let (stop_clients, clients_stop) = watch::channel(false);
    let outcome = tokio::select! {
        outcome = run(&args, &url, &*registry, &mut nodes, seeds, clients_stop, &client_options) => outcome,
        _ = tokio::signal::ctrl_c() => {
            println!("\ninterrupted; shutting down");
            Ok(())
        }
    };
    let _ = stop_clients.send(true);
    for node in &nodes {
        node.handle.shutdown().await;
    }
    drop(registry);
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// A fresh directory for the default SQLite registry.
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("aos-cluster-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn server_config(id: InstanceId, max_sessions: u32) -> Result<ServerConfig, Error> {
    // Port 0: the system picks a free port and the advertised endpoint takes it.
    let endpoint = Endpoint::with_instance(Some(&format!("AOS{:02}", id.0)), "127.0.0.1", 1)?;
    let instance = InstanceConfig {
        cluster: Some(CLUSTER.to_owned()),
        member_ttl: MEMBER_TTL,
        heartbeat_interval: HEARTBEAT_INTERVAL,
        snapshot_ttl: Duration::from_millis(200),
        peer_timeout: Duration::from_millis(500),
        ..InstanceConfig::new(id, endpoint, max_sessions)
    };
    Ok(ServerConfig::new("127.0.0.1:0".parse()?, instance))
}

/// The instance's application: answers every `PING` line with a `PONG` line
/// until the client leaves (or the server stops, which ends the stream).
async fn serve_pong(mut server: Server, id: InstanceId, traffic: Arc<Traffic>) {
    while let Some(accepted) = server.accept().await {
        let traffic = traffic.clone();
        tokio::spawn(async move {
            let (read, mut write) = tokio::io::split(accepted.stream);
            let mut read = BufReader::new(read);
            let mut line = String::new();
            loop {
                line.clear();
                match (&mut read).take(MAX_LINE).read_line(&mut line).await {
                    Ok(n) if n > 0 && line.ends_with('\n') => {}
                    // End of stream, an error, or a line too long or cut: the session ends.
                    _ => break,
                }
                let Some(rest) = line.strip_prefix("PING ") else { break };
                let reply = format!("PONG {} from {id}\n", rest.trim_end());
                if write.write_all(reply.as_bytes()).await.is_err() {
                    break;
                }
                traffic.requests.fetch_add(1, Ordering::Relaxed);
                traffic.bytes_in.fetch_add(line.len() as u64, Ordering::Relaxed);
                traffic.bytes_out.fetch_add(reply.len() as u64, Ordering::Relaxed);
            }
        });
    }
}

async fn run(
    args: &Args,
    url: &str,
    registry: &dyn Registry,
    nodes: &mut [Node],
    seeds: Vec<Endpoint>,
    stop: watch::Receiver<bool>,
    options: &ClientOptions,
) -> Result<(), Error> {
    wait_registered(registry, nodes.len()).await?;
    println!(
        "aos-cluster: {} instances on 127.0.0.1{}, registry {}",
        nodes.len(),
        if args.tls { " over TLS (peers with mutual TLS)" } else { "" },
        registry::redact_password(url)
    );
    for (endpoint, node) in seeds.iter().zip(nodes.iter()) {
        println!("  {endpoint} max_sessions {}", node.capacity);
    }
    let config = client_config(seeds);
    let counters = Arc::new(Counters::default());
    let placed = Arc::new(Mutex::new(Vec::<Option<InstanceId>>::new()));

    println!(
        "\n{} clients arriving at {}/s, each making {} request/reply exchanges:",
        args.clients, args.rate, args.requests
    );
    let wave = stream_clients(args, &config, options, 0, args.clients, &counters, &placed, &stop);
    progress_until(wave, nodes, &counters, args.clients).await;
    print_table(nodes).await;

    let (crashed, drained) = (1usize, 2usize);
    println!("\ncrashing #{} and draining #{} ...", crashed + 1, drained + 1);
    nodes[crashed].handle.crash().await;
    nodes[crashed].state = "crashed";
    nodes[drained].handle.set_accepting(false).await?;
    nodes[drained].state = "draining";
    println!("waiting until #{}'s heartbeat is older than member_ttl ({MEMBER_TTL:?})", crashed + 1);
    wait_until_stale(registry, InstanceId(crashed as u32 + 1)).await?;
    // The crashed instance's sessions saw their stream end; give their tasks a moment to count it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    println!("{} sessions on #{} were lost with it", counters.lost.load(Ordering::Relaxed), crashed + 1);

    let already = placed.lock().expect("not poisoned").len();
    println!("\n{} new clients:", args.after);
    let wave =
        stream_clients(args, &config, options, args.clients as u64, args.after, &counters, &placed, &stop);
    progress_until(wave, nodes, &counters, args.clients + args.after).await;
    let new: Vec<Option<InstanceId>> = placed.lock().expect("not poisoned")[already..].to_vec();
    println!("\nwhere the {} new clients went:", new.len());
    println!("{:<9} {:<9} {:>12} {:>15}", "instance", "state", "new sessions", "connected/max");
    for (i, node) in nodes.iter().enumerate() {
        let id = InstanceId(i as u32 + 1);
        let connected = match node.handle.stats().await {
            Ok(s) => format!("{}/{}", s.workload.connected, s.workload.max_sessions),
            Err(_) => "-".to_owned(),
        };
        let count = new.iter().filter(|&&n| n == Some(id)).count();
        println!("{:<9} {:<9} {:>12} {:>15}", format!("#{}", id.0), node.state, count, connected);
    }
    let misplaced = new
        .iter()
        .filter(|&&n| n == Some(InstanceId(crashed as u32 + 1)) || n == Some(InstanceId(drained as u32 + 1)));
    println!("sent to the crashed or draining instance: {}", misplaced.count());
    println!(
        "application: {} exchanges completed, {} failed",
        counters.exchanges.load(Ordering::Relaxed),
        counters.app_errors.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Waits until all `n` instances have a registry row.
async fn wait_registered(registry: &dyn Registry, n: usize) -> Result<(), Error> {
    loop {
        if registry.snapshot(Some(CLUSTER), MemberTiming::with_ttl(MEMBER_TTL)).await?.len() >= n {
            return Ok(());
        }
        tokio::time::sleep(HEARTBEAT_INTERVAL / 4).await;
    }
}

/// Waits (reading the registry) until member `id`'s row is older than
/// `member_ttl`: from then on no instance counts it as active.
async fn wait_until_stale(registry: &dyn Registry, id: InstanceId) -> Result<(), Error> {
    loop {
        let members = registry.snapshot(Some(CLUSTER), MemberTiming::with_ttl(MEMBER_TTL)).await?;
        match members.iter().find(|m| m.id == id) {
            Some(m) if m.heartbeat_age <= MEMBER_TTL => {
                tokio::time::sleep(MEMBER_TTL - m.heartbeat_age + Duration::from_millis(10)).await
            }
            _ => return Ok(()),
        }
    }
}
