//! Multi-instance clusters on 127.0.0.1 (ephemeral ports) sharing one SQLite
//! registry file, driven through the crate's public API only: servers with an
//! application on their sessions, the async client, the registry.
//!
//! Ported from the root's old driver tests (`tests/tcp_cluster.rs`) where the
//! crate's own tests did not already cover the case: proportional shares,
//! a closed first seed, a crashed instance after `member_ttl`, draining at
//! cluster level, a malformed frame next to live sessions, and the registry
//! rows after a graceful stop and a crash on a real backend (SQLite, and etcd
//! when `AOS_TEST_ETCD_URL` names one, where a crash's key expires with its
//! lease). Assertions are
//! on outcomes (where sessions went, what was refused, what stayed open),
//! never on how long things took; every wait is a bounded poll.

mod balancing;
mod processes;
mod registry_rows;

use aos_cluster_tokio::registry::MemberTiming;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aos_cluster::client::Phase;
use aos_cluster::{ClientConfig, Endpoint, InstanceConfig, InstanceId, RetryPolicy};
use aos_cluster_tokio::registry::{self, Registry};
use aos_cluster_tokio::{Server, ServerConfig, ServerHandle, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLUSTER: &str = "cluster-test";
const MEMBER_TTL: Duration = Duration::from_secs(1);
/// Every wait gives up after this.
const PATIENCE: Duration = Duration::from_secs(10);

/// A hang is a failure, not a stuck CI job.
async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), test).await.expect("test did not finish within 60 s")
}

/// Polls `check` every 20 ms until it holds; fails the test after PATIENCE.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The application every instance runs: each chunk comes back upper-cased,
/// so a reply cannot be the request.
fn serve_upper(mut server: Server) {
    tokio::spawn(async move {
        while let Some(accepted) = server.accept().await {
            let mut stream = accepted.stream;
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    if stream.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// Instances on loopback sharing one SQLite file in a temp dir.
struct LocalCluster {
    registry: Arc<dyn Registry>,
    handles: Vec<ServerHandle>,
    endpoints: Vec<Endpoint>,
    _dir: tempfile::TempDir,
}

impl LocalCluster {
    /// One instance per entry of `capacities` (ids from 1), each with its
    /// own handle on the registry file, as separate processes would have.
    async fn start(capacities: &[u32]) -> LocalCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("registry.db").display());
        LocalCluster::start_on(&url, dir, capacities).await
    }

    /// The same on the registry at `url`.
    async fn start_on(url: &str, dir: tempfile::TempDir, capacities: &[u32]) -> LocalCluster {
        let registry = registry::open(url).await.expect("registry opens");
        let mut handles = Vec::new();
        let mut endpoints = Vec::new();
        for (i, &max_sessions) in capacities.iter().enumerate() {
            let id = InstanceId(i as u32 + 1);
            let instance = InstanceConfig {
                cluster: Some(CLUSTER.to_owned()),
                member_ttl: MEMBER_TTL,
                heartbeat_interval: Duration::from_millis(100),
                snapshot_ttl: Duration::from_millis(100),
                peer_timeout: Duration::from_millis(500),
                ..InstanceConfig::new(id, Endpoint::new("127.0.0.1", 1).unwrap(), max_sessions)
            };
            let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), instance);
            let own_registry = registry::open(url).await.expect("registry opens");
            let server = Server::bind(config, own_registry).await.expect("server starts");
            endpoints.push(server.endpoint().clone());
            handles.push(server.handle());
            serve_upper(server);
        }
        // `bind` returns once the row is written, so every instance is a
        // member now (a watched replica, etcd's, learns of it a moment
        // later); the first handshake dials the peers.
        eventually("every instance registered", || async {
            let members =
                registry.snapshot(Some(CLUSTER), MemberTiming::with_ttl(MEMBER_TTL)).await.expect("registry");
            members.len() == capacities.len()
        })
        .await;
        LocalCluster { registry, handles, endpoints, _dir: dir }
    }

    fn client_config(&self, seeds: Vec<Endpoint>) -> ClientConfig {
        ClientConfig {
            cluster: Some(CLUSTER.to_owned()),
            handshake_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            retry: RetryPolicy {
                base: Duration::from_millis(50),
                cap: Duration::from_millis(500),
                max_rounds: 5,
            },
            ..ClientConfig::with_seeds(seeds)
        }
    }

    /// The seed list is every instance, in order.
    fn config(&self) -> ClientConfig {
        self.client_config(self.endpoints.clone())
    }

    async fn connected(&self, index: usize) -> u32 {
        self.handles[index].stats().await.expect("running").workload.connected
    }

    /// Waits until the registry row of `id` is older than `member_ttl`.
    async fn wait_until_stale(&self, id: InstanceId) {
        eventually("the crashed row is stale", || async {
            let members = self
                .registry
                .snapshot(Some(CLUSTER), MemberTiming::with_ttl(MEMBER_TTL))
                .await
                .expect("registry");
            members.iter().find(|m| m.id == id).is_some_and(|m| m.heartbeat_age > MEMBER_TTL)
        })
        .await;
    }

    async fn shutdown(&self) {
        for handle in &self.handles {
            handle.shutdown().await;
        }
    }
}

/// One exchange through the application: proves the session carries bytes.
async fn round_trip(session: &mut Session, text: &str) {
    session.write_all(text.as_bytes()).await.expect("write");
    let mut reply = vec![0u8; text.len()];
    tokio::time::timeout(PATIENCE, session.read_exact(&mut reply)).await.expect("in time").expect("read");
    assert_eq!(reply, text.to_ascii_uppercase().as_bytes());
}

/// Connects `n` clients, at most `parallel` at a time; every one must
/// succeed and exchange bytes with its instance.
async fn connect_all(config: &ClientConfig, n: u64, parallel: usize, salt: u64) -> Vec<Session> {
    let mut sessions = Vec::new();
    let ids: Vec<u64> = (0..n).collect();
    for chunk in ids.chunks(parallel) {
        let mut wave = tokio::task::JoinSet::new();
        for &i in chunk {
            let config = config.clone();
            wave.spawn(async move {
                let mut session = seeded(&config, salt + i).connect().await.expect("client connects");
                round_trip(&mut session, &format!("client {i}")).await;
                session
            });
        }
        while let Some(joined) = wave.join_next().await {
            sessions.push(joined.expect("client task"));
        }
    }
    sessions
}

fn count_on(sessions: &[Session], id: InstanceId) -> usize {
    sessions.iter().filter(|s| s.instance() == Some(id)).count()
}

fn endpoints_of(session: &Session, phase: Phase) -> Vec<Endpoint> {
    session.attempts().iter().filter(|a| a.phase == phase).map(|a| a.endpoint.clone()).collect()
}

async fn cluster_rows(registry: &Arc<dyn Registry>) -> Vec<InstanceId> {
    let rows = registry.snapshot(Some(CLUSTER), MemberTiming::with_ttl(MEMBER_TTL)).await.expect("registry");
    rows.iter().map(|m| m.id).collect()
}

/// A client whose connects are seeded with `seed` (reproducible attempts).
fn seeded(config: &ClientConfig, seed: u64) -> aos_cluster_tokio::Client {
    aos_cluster_tokio::Client::with_options(
        config.clone(),
        aos_cluster_tokio::ClientOptions::new().with_rng_seed(seed),
    )
}
