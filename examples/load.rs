//! Load test: 10 000 clients against 4 loopback instances. Reports sessions
//! established per second and the time-to-session percentiles, then has
//! every client make `--exchanges` request/reply exchanges (64 bytes each
//! way) over its balanced session, and the same exchanges over plain TCP
//! connections to a plain tokio echo server running beside the instances,
//! for the ratio.
//!
//! ```text
//! cargo run --release -p aos-cluster-examples --bin load -- [--clients 10000] [--concurrency 256] [--exchanges 10]
//! ```
//!
//! The instances (and the plain echo server) run in a child process (this
//! same binary with `--serve`), as they would in production, and because one
//! process holding both ends of 10 000 sessions would need 20 000
//! descriptors. Every session stays open until the exchanges are done, so the
//! instances really carry 10 000 sessions. Both servers run the same echo code
//! on their connections: the ratio is the cost of the session's stream
//! against a bare `TcpStream`.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_cluster::{ClientConfig, Endpoint, InstanceConfig, InstanceId, RetryPolicy};
use aos_cluster_tokio::{registry, Server, ServerConfig, ServerHandle};
use clap::Parser;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

type Error = Box<dyn std::error::Error + Send + Sync>;

const CAPACITIES: [u32; 4] = [2_000, 2_500, 3_000, 3_500];
const CLUSTER: &str = "load";
/// The size of one request and of its reply.
const MESSAGE: usize = 64;

/// Sessions per second, time to session, exchanges per second.
#[derive(Parser)]
#[command(name = "load")]
struct Args {
    /// Clients, each holding one session.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// At most this many clients connecting at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Request/reply exchanges per client after all are connected.
    #[arg(long, default_value_t = 10)]
    exchanges: u32,
    /// Internal: run the instances (the child process).
    #[arg(long, hide = true)]
    serve: bool,
}

fn now() -> Instant {
    aos_cluster_tokio::now()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let args = Args::parse();
    if args.serve {
        return serve().await;
    }
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let Some(plain) = words.next() else { return Err("the instance process exited before serving".into()) };
    let plain: std::net::SocketAddr = plain.parse()?;
    let seeds: Vec<Endpoint> = words.map(str::parse).collect::<Result<_, _>>()?;
    let config = ClientConfig {
        cluster: Some(CLUSTER.to_owned()),
        handshake_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(500),
            max_rounds: 5,
        },
        ..ClientConfig::with_seeds(seeds)
    };
    println!(
        "{} clients, at most {} connecting at once, against 4 instances {CAPACITIES:?}",
        args.clients, args.concurrency
    );
    tokio::select! {
        result = run(&args, config, plain) => result?,
        _ = tokio::signal::ctrl_c() => println!("interrupted"),
    }
    // Closing the child's stdin asks it to shut down gracefully.
    drop(child.stdin.take());
    child.wait()?;
    Ok(())
}

async fn run(args: &Args, config: ClientConfig, plain: std::net::SocketAddr) -> Result<(), Error> {
    let concurrency = args.concurrency.max(1);
    // Phase 1: sessions.
    let limit = Arc::new(Semaphore::new(concurrency));
    let started = now();
    let mut tasks = JoinSet::new();
    for n in 0..args.clients as u64 {
        let permit = limit.clone().acquire_owned().await?;
        let config = config.clone();
        tasks.spawn(async move {
            let outcome = aos_cluster_tokio::Client::with_options(
                config.clone(),
                aos_cluster_tokio::ClientOptions::new().with_rng_seed(n),
            )
            .connect()
            .await;
            drop(permit);
            outcome
        });
    }
    let mut times = Vec::with_capacity(args.clients);
    let mut sessions = Vec::with_capacity(args.clients);
    let mut failed = 0usize;
    while let Some(joined) = tasks.join_next().await {
        match joined? {
            Ok(session) => {
                times.push(session.time_to_session());
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
    let pct = |p: f64| {
        times.get(((times.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or_default()
    };
    println!("sessions established: {} ({failed} failed) in {elapsed:.2?}", sessions.len());
    println!("  rate:  {:.0} sessions/s", sessions.len() as f64 / elapsed.as_secs_f64());
    println!(
        "  time to session: p50 {:.2?}  p99 {:.2?}  max {:.2?}",
        pct(0.50),
        pct(0.99),
        times.last().copied().unwrap_or_default()
    );
    let mut per_instance = std::collections::BTreeMap::new();
    for s in &sessions {
        *per_instance.entry(s.instance()).or_insert(0u32) += 1;
    }
    for ((id, n), cap) in per_instance.iter().zip(CAPACITIES) {
        let id = id.map_or("unnamed".to_owned(), |id| id.to_string());
        println!("  {id}: {n}/{cap} sessions ({:.3} of capacity)", f64::from(*n) / f64::from(cap));
    }
    if args.exchanges == 0 {
        return Ok(());
    }

    // Phase 2: the same exchanges over the sessions and over plain connections.
    let over_sessions = exchanges_per_second(sessions, args.exchanges).await?;
    let mut plain_streams = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let stream = TcpStream::connect(plain).await?;
        stream.set_nodelay(true)?;
        plain_streams.push(stream);
    }
    let over_plain = exchanges_per_second(plain_streams, args.exchanges).await?;
    println!(
        "{} exchanges of {MESSAGE} bytes each way per connection, all connections at once:",
        args.exchanges
    );
    println!("  over balanced sessions:     {over_sessions:>9.0} exchanges/s");
    println!("  over plain TCP (tokio echo): {over_plain:>8.0} exchanges/s");
    println!("  plain / sessions: {:.2}x", over_plain / over_sessions);
    Ok(())
}

/// Every stream makes `exchanges` request/reply exchanges at once; the
/// streams are closed at the end. Returns exchanges per second.
async fn exchanges_per_second<S>(streams: Vec<S>, exchanges: u32) -> Result<f64, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let count = streams.len();
    let started = now();
    let mut tasks = JoinSet::new();
    for mut stream in streams {
        tasks.spawn(async move {
            let request = [0x5au8; MESSAGE];
            let mut reply = [0u8; MESSAGE];
            for _ in 0..exchanges {
                stream.write_all(&request).await?;
                stream.read_exact(&mut reply).await?;
                if reply != request {
                    return Err(std::io::Error::other("the echo changed the bytes"));
                }
            }
            Ok::<_, std::io::Error>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    Ok((count as u64 * u64::from(exchanges)) as f64 / started.elapsed().as_secs_f64())
}

/// The echo both servers run on every connection.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        if stream.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

/// The child: four instances, a SQLite registry in a temp dir and a plain
/// echo server, until stdin closes. Prints the plain echo's address and the
/// instances' endpoints on one line.
async fn serve() -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("aos-cluster-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let registry = registry::open(&format!("sqlite://{}", dir.join("registry.db").display())).await?;
    let mut handles: Vec<ServerHandle> = Vec::new();
    let mut words = Vec::new();
    let plain = TcpListener::bind("127.0.0.1:0").await?;
    words.push(plain.local_addr()?.to_string());
    tokio::spawn(async move {
        while let Ok((stream, _)) = plain.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(echo(stream));
        }
    });
    for (i, max_sessions) in CAPACITIES.into_iter().enumerate() {
        let endpoint = Endpoint::new("127.0.0.1", 1)?;
        let instance = InstanceConfig {
            cluster: Some(CLUSTER.to_owned()),
            member_ttl: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(1),
            snapshot_ttl: Duration::from_millis(200),
            ..InstanceConfig::new(InstanceId(i as u32 + 1), endpoint, max_sessions)
        };
        // Every client comes from 127.0.0.1: the per-IP cap must not be the limit here.
        let config = ServerConfig {
            max_connections_per_ip: 20_000,
            ..ServerConfig::new("127.0.0.1:0".parse()?, instance)
        };
        let mut server = Server::bind(config, registry.clone()).await?;
        words.push(server.endpoint().to_string());
        handles.push(server.handle());
        tokio::spawn(async move {
            while let Some(accepted) = server.accept().await {
                tokio::spawn(echo(accepted.stream));
            }
        });
    }
    println!("{}", words.join(" "));
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = closed_tx.send(());
    });
    tokio::select! {
        _ = closed => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    for handle in &handles {
        handle.shutdown().await;
    }
    drop(registry);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
