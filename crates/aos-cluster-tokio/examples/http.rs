//! HTTP over balanced sessions: a hyper server on every instance of an
//! in-process cluster (a memory registry, loopback), and hyper-util's pooled
//! `Client` whose every connection is a balanced session.
//!
//! ```sh
//! cargo run -p aos-cluster-tokio --features tower --example http
//! ```
//!
//! It opens 30 connections (each held busy by a request that waits, so the
//! pool must dial the next), shows where they landed (capacities 10/20/30:
//! 5/10/15), crashes instance 1, and shows the pool carrying on: new dials
//! walk past the dead seed and land on the live instances.
//!
//! `tests/http.rs` runs this program's parts and checks what it shows.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use aos_cluster_tokio::registry::MemoryRegistry;
use aos_cluster_tokio::tower::BalancedConnector;
use aos_cluster_tokio::{
    Client, ClientConfig, Endpoint, InstanceConfig, InstanceId, RetryPolicy, Server, ServerConfig,
    ServerHandle, SessionInfo,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client as PooledClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;

/// The cluster's name, in every instance's and the client's configuration.
pub const CLUSTER: &str = "http-demo";

/// One `Uri` for the whole cluster: the instance is the cluster's choice,
/// this is only the request's `Host` and the pool's key.
pub const URI: &str = "http://aos-cluster/";

/// The pooled hyper client over balanced sessions.
pub type HttpClient = PooledClient<BalancedConnector, Empty<Bytes>>;

/// What the instances' application shares in this process: requests to
/// `/wait` are answered once `release` is true; `arrived` counts them.
pub struct Gate {
    /// Opens (true) and closes the gate.
    pub release: watch::Sender<bool>,
    /// `/wait` requests that reached an instance.
    pub arrived: watch::Sender<usize>,
}

/// Instances on 127.0.0.1, one per capacity (ids from 1), each serving HTTP/1.
pub struct Cluster {
    /// Each instance's handle, in id order.
    pub handles: Vec<ServerHandle>,
    /// Each instance's endpoint, in id order.
    pub seeds: Vec<Endpoint>,
    /// The application's gate.
    pub gate: Arc<Gate>,
}

impl Cluster {
    /// Starts one instance per capacity, sharing a memory registry.
    pub async fn start(capacities: &[u32]) -> Result<Cluster, Box<dyn std::error::Error>> {
        let registry = Arc::new(MemoryRegistry::new());
        let gate = Arc::new(Gate { release: watch::Sender::new(false), arrived: watch::Sender::new(0) });
        let (mut handles, mut seeds) = (Vec::new(), Vec::new());
        for (i, &max_sessions) in capacities.iter().enumerate() {
            let id = InstanceId(i as u32 + 1);
            let instance = InstanceConfig {
                cluster: Some(CLUSTER.into()),
                heartbeat_interval: Duration::from_millis(100),
                snapshot_ttl: Duration::from_millis(100),
                ..InstanceConfig::new(id, Endpoint::new("127.0.0.1", 1)?, max_sessions)
            };
            // Port 0: the system picks one, and the endpoint says which.
            let server =
                Server::bind(ServerConfig::new("127.0.0.1:0".parse()?, instance), registry.clone()).await?;
            handles.push(server.handle());
            seeds.push(server.endpoint().clone());
            tokio::spawn(serve_http(server, id, gate.clone()));
        }
        Ok(Cluster { handles, seeds, gate })
    }

    /// A client configuration: every instance a seed, in order.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            cluster: Some(CLUSTER.into()),
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(1),
            retry: RetryPolicy {
                base: Duration::from_millis(20),
                cap: Duration::from_millis(200),
                max_rounds: 5,
            },
            ..ClientConfig::with_seeds(self.seeds.clone())
        }
    }

    /// Sessions open on instance `index` (from 0).
    pub async fn connected(&self, index: usize) -> u32 {
        self.handles[index].stats().await.map_or(0, |s| s.workload.connected)
    }
}

/// Each admitted session is one HTTP/1 connection.
async fn serve_http(mut server: Server, id: InstanceId, gate: Arc<Gate>) {
    while let Some(accepted) = server.accept().await {
        let gate = gate.clone();
        let service = service_fn(move |request| answer(request, id, gate.clone()));
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(accepted.stream), service));
    }
}

/// `GET /` answers the instance's id at once; `GET /wait` once the gate opens.
async fn answer(
    request: Request<hyper::body::Incoming>,
    id: InstanceId,
    gate: Arc<Gate>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == "/wait" {
        let mut release = gate.release.subscribe();
        gate.arrived.send_modify(|n| *n += 1);
        let _ = release.wait_for(|open| *open).await;
    }
    Ok(Response::new(Full::new(Bytes::from(id.0.to_string()))))
}

/// The pooled client: hyper-util's `Client` with the balanced connector.
pub fn http_client(config: ClientConfig) -> Result<HttpClient, Box<dyn std::error::Error>> {
    Ok(PooledClient::builder(TokioExecutor::new()).build(BalancedConnector::new(Client::new(config))?))
}

/// One `GET`: the instance that answered (its body) and the session's
/// details (in the response's extensions, put there by the connector).
pub async fn get(
    client: &HttpClient,
    path: &str,
) -> Result<(InstanceId, Arc<SessionInfo>), Box<dyn std::error::Error + Send + Sync>> {
    let uri: hyper::Uri = format!("{}{}", URI.trim_end_matches('/'), path).parse()?;
    let response = client.get(uri).await?;
    let info = response.extensions().get::<Arc<SessionInfo>>().cloned().ok_or("no session info")?;
    let body = response.into_body().collect().await?.to_bytes();
    let id = InstanceId(std::str::from_utf8(&body)?.parse()?);
    Ok((id, info))
}

/// Keeps `n` pool connections busy with `/wait` requests, sent one after
/// another: each is sent once the previous one has reached its instance, so
/// the pool dials one session at a time. Returns the requests' tasks; they
/// finish when the gate opens. A request whose connection died before it
/// arrived is sent again (at most 3 times).
pub async fn hold(
    cluster: &Cluster,
    client: &HttpClient,
    n: usize,
    patience: Duration,
) -> Result<Vec<tokio::task::JoinHandle<Option<InstanceId>>>, String> {
    let mut arrived = cluster.gate.arrived.subscribe();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let target = *arrived.borrow() + 1;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let client = client.clone();
            let mut task = tokio::spawn(async move { get(&client, "/wait").await.ok().map(|(id, _)| id) });
            tokio::select! {
                _ = arrived.wait_for(|&count| count >= target) => {
                    tasks.push(task);
                    break;
                }
                // Answered before the gate opened: the request failed.
                _ = &mut task, if attempts < 3 => continue,
                () = tokio::time::sleep(patience) => {
                    return Err(format!("request {target} did not reach an instance within {patience:?}"));
                }
            }
        }
    }
    Ok(tasks)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let capacities = [10, 20, 30];
    let cluster = Cluster::start(&capacities).await?;
    let client = http_client(cluster.client_config())?;
    let patience = Duration::from_secs(5);

    let (id, info) = get(&client, "/").await.map_err(|e| e.to_string())?;
    println!("GET {URI} answered by {id}, session {} at {}", info.session_id(), info.endpoint());

    let held = hold(&cluster, &client, 30, patience).await?;
    for (i, cap) in capacities.iter().enumerate() {
        println!("instance {}: {} of {cap} sessions", i + 1, cluster.connected(i).await);
    }
    cluster.gate.release.send_replace(true);
    for task in held {
        task.await?;
    }

    cluster.handles[0].crash().await;
    println!("instance 1 crashed");
    cluster.gate.release.send_replace(false);
    let held = hold(&cluster, &client, 40, patience).await?;
    cluster.gate.release.send_replace(true);
    let mut by_instance = std::collections::BTreeMap::new();
    for task in held {
        if let Some(id) = task.await? {
            *by_instance.entry(id).or_insert(0) += 1;
        }
    }
    for (id, n) in by_instance {
        println!("after the crash: {n} requests answered by {id}");
    }
    for handle in &cluster.handles {
        handle.shutdown().await;
    }
    Ok(())
}
