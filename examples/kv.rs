//! A small real application on balanced sessions: a key-value service.
//!
//! ```text
//! cargo run -p aos-cluster-examples --bin kv -- [--clients 20] [--ops 10]
//! ```
//!
//! One process starts a cluster of 3 instances on 127.0.0.1 (capacities 10,
//! 20 and 30, an in-memory SQLite registry they share) and then `--clients`
//! clients. Each client opens a balanced session with
//! [`aos_cluster_tokio::Client`] and, over it, SETs `--ops` keys of its own,
//! GETs them back, GETs a key another client wrote (through another instance,
//! most likely) and DELetes one. Every reply is checked. The instances share
//! one store, standing for the application's database, so any instance
//! answers for any key. At the end the program prints, per instance, the
//! sessions it holds and the requests it served, and exits 1 if any reply
//! was wrong.
//!
//! # The protocol (one line each way, UTF-8, at most 1 024 bytes a line)
//!
//! | request            | reply                          |
//! | ------------------ | ------------------------------ |
//! | `SET key value...` | `OK`                           |
//! | `GET key`          | `VALUE value...` or `NOT_FOUND` |
//! | `DEL key`          | `DELETED` or `NOT_FOUND`        |
//! | anything else      | `ERR reason` (the session stays) |
//!
//! Keys have no spaces; a value is the rest of the line. The store holds at
//! most 100 000 keys (`ERR full` beyond). A line longer than the limit ends
//! the session: memory per session is bounded whatever a client sends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aos_cluster::{ClientConfig, Endpoint, InstanceConfig, InstanceId};
use aos_cluster_tokio::{registry, Server, ServerConfig, ServerHandle};
use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};

type Error = Box<dyn std::error::Error + Send + Sync>;

const MAX_LINE: u64 = 1024;
const MAX_KEYS: usize = 100_000;
const CLUSTER: &str = "kv";

/// A key-value service on a 3-instance cluster, and its clients.
#[derive(Parser)]
#[command(name = "kv")]
struct Args {
    /// Clients, each with one balanced session.
    #[arg(long, default_value_t = 20)]
    clients: u32,
    /// Keys each client SETs and GETs back.
    #[arg(long, default_value_t = 10)]
    ops: u32,
}

/// The store every instance serves (the application's shared database).
type Store = Arc<Mutex<BTreeMap<String, String>>>;

/// Answers one request line (without its newline).
fn answer(store: &Store, request: &str) -> String {
    let mut store = store.lock().expect("not poisoned");
    let (command, rest) = request.split_once(' ').unwrap_or((request, ""));
    match command {
        "SET" => match rest.split_once(' ') {
            Some((key, value)) if !key.is_empty() => {
                if store.len() >= MAX_KEYS && !store.contains_key(key) {
                    return "ERR full".to_owned();
                }
                store.insert(key.to_owned(), value.to_owned());
                "OK".to_owned()
            }
            _ => "ERR usage: SET key value".to_owned(),
        },
        "GET" if !rest.is_empty() && !rest.contains(' ') => match store.get(rest) {
            Some(value) => format!("VALUE {value}"),
            None => "NOT_FOUND".to_owned(),
        },
        "DEL" if !rest.is_empty() && !rest.contains(' ') => match store.remove(rest) {
            Some(_) => "DELETED".to_owned(),
            None => "NOT_FOUND".to_owned(),
        },
        _ => "ERR unknown request (SET key value | GET key | DEL key)".to_owned(),
    }
}

/// Reads one line of at most MAX_LINE bytes: `None` at the end of the
/// stream, on an error, or for a line that is too long or cut off.
async fn read_line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Option<String> {
    let mut line = String::new();
    match reader.take(MAX_LINE).read_line(&mut line).await {
        Ok(n) if n > 0 && line.ends_with('\n') => {
            line.pop();
            Some(line)
        }
        _ => None,
    }
}

/// The instance's application: a request/reply loop on each admitted session.
async fn serve(mut server: Server, store: Store, requests: Arc<AtomicU64>) {
    while let Some(accepted) = server.accept().await {
        let (store, requests) = (store.clone(), requests.clone());
        tokio::spawn(async move {
            let (read, mut write) = tokio::io::split(accepted.stream);
            let mut read = BufReader::new(read);
            while let Some(request) = read_line(&mut read).await {
                let reply = answer(&store, &request) + "\n";
                if write.write_all(reply.as_bytes()).await.is_err() {
                    break;
                }
                requests.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// A client's session and its request/reply helper.
struct KvClient {
    session: BufReader<aos_cluster_tokio::Session>,
}

impl KvClient {
    async fn call(&mut self, request: &str) -> Result<String, Error> {
        self.session.get_mut().write_all(format!("{request}\n").as_bytes()).await?;
        let reply = tokio::time::timeout(Duration::from_secs(5), read_line(&mut self.session)).await;
        Ok(reply.map_err(|_| "no reply in 5 s")?.ok_or("the instance ended the session")?)
    }

    async fn expect(&mut self, request: &str, want: &str) -> Result<(), Error> {
        let got = self.call(request).await?;
        if got != want {
            return Err(format!("{request:?}: got {got:?}, want {want:?}").into());
        }
        Ok(())
    }
}

/// One client's script; returns its session, kept open until the end so
/// the instances' counts show it.
async fn client(config: ClientConfig, n: u32, clients: u32, ops: u32) -> Result<KvClient, Error> {
    let session = aos_cluster_tokio::Client::new(config.clone()).connect().await?;
    let mut kv = KvClient { session: BufReader::new(session) };
    for k in 0..ops {
        kv.expect(&format!("SET client{n}/key{k} value {k} of client {n}"), "OK").await?;
    }
    for k in 0..ops {
        kv.expect(&format!("GET client{n}/key{k}"), &format!("VALUE value {k} of client {n}")).await?;
    }
    // Another client's first key: written over another session, perhaps not yet.
    let other = (n + 1) % clients;
    let got = kv.call(&format!("GET client{other}/key0")).await?;
    if got != "NOT_FOUND" && got != format!("VALUE value 0 of client {other}") {
        return Err(format!("GET client{other}/key0: got {got:?}").into());
    }
    if ops > 0 {
        kv.expect(&format!("DEL client{n}/key0"), "DELETED").await?;
        kv.expect(&format!("GET client{n}/key0"), "NOT_FOUND").await?;
    }
    kv.expect("FLY me to the moon", "ERR unknown request (SET key value | GET key | DEL key)").await?;
    Ok(kv)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let args = Args::parse();
    let registry = registry::open("sqlite::memory:").await?;
    let store = Store::default();
    let mut nodes: Vec<(ServerHandle, Arc<AtomicU64>)> = Vec::new();
    let mut seeds = Vec::new();
    for (i, max_sessions) in [10, 20, 30].into_iter().enumerate() {
        let id = InstanceId(i as u32 + 1);
        let instance = InstanceConfig {
            cluster: Some(CLUSTER.to_owned()),
            ..InstanceConfig::new(
                id,
                Endpoint::with_instance(Some(&format!("KV{}", id.0)), "127.0.0.1", 1)?,
                max_sessions,
            )
        };
        let server =
            Server::bind(ServerConfig::new("127.0.0.1:0".parse()?, instance), registry.clone()).await?;
        seeds.push(server.endpoint().clone());
        let requests = Arc::new(AtomicU64::new(0));
        nodes.push((server.handle(), requests.clone()));
        tokio::spawn(serve(server, store.clone(), requests));
    }
    println!("3 kv instances: {}", seeds.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
    let config = ClientConfig { cluster: Some(CLUSTER.to_owned()), ..ClientConfig::with_seeds(seeds) };

    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..args.clients {
        tasks.spawn(client(config.clone(), n, args.clients.max(1), args.ops));
    }
    let (mut sessions, mut failures) = (Vec::new(), 0);
    while let Some(joined) = tasks.join_next().await {
        match joined? {
            Ok(kv) => sessions.push(kv),
            Err(e) => {
                failures += 1;
                eprintln!("client failed: {e}");
            }
        }
    }
    println!(
        "{} clients done, {failures} failed; {} keys stored",
        sessions.len(),
        store.lock().expect("not poisoned").len()
    );
    println!("{:<12} {:>15} {:>9}", "instance", "sessions/max", "requests");
    for (handle, requests) in &nodes {
        let s = handle.stats().await?;
        println!(
            "{:<12} {:>15} {:>9}",
            handle.endpoint().instance().unwrap_or("?"),
            format!("{}/{}", s.workload.connected, s.workload.max_sessions),
            requests.load(Ordering::Relaxed)
        );
    }
    drop(sessions);
    for (handle, _) in &nodes {
        handle.shutdown().await;
    }
    if failures > 0 {
        std::process::exit(1);
    }
    Ok(())
}
