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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_proportional_to_capacity() {
    bounded(async {
        let capacities = [20, 40, 60];
        let cluster = LocalCluster::start(&capacities).await;
        let sessions = connect_all(&cluster.config(), 60, 6, 0).await;
        // Ideal: half of each capacity, 10 / 20 / 30. Herd control ranks each
        // client on predicted load including the clients still in flight
        // (greedy least-ratio placement, within one session of the share);
        // one more for a peer report that replaces an admission's
        // reservation while six clients are in flight.
        for (i, &cap) in capacities.iter().enumerate() {
            let id = InstanceId(i as u32 + 1);
            let ideal = i64::from(cap) / 2;
            let got = count_on(&sessions, id) as i64;
            assert!((got - ideal).abs() <= 2, "{id}: {got} sessions, ideal {ideal}");
            let live = i64::from(cluster.connected(i).await);
            assert_eq!(live, got, "{id}: the instance counts the sessions clients hold");
        }
        drop(sessions);
        eventually("every session ended", || async {
            let mut total = 0;
            for i in 0..capacities.len() {
                total += cluster.connected(i).await;
            }
            total == 0
        })
        .await;
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_first_seed_is_skipped_for_the_next() {
    bounded(async {
        let cluster = LocalCluster::start(&[10, 10]).await;
        // A port bound but never listened on: connecting is refused, and no
        // other test can take the port while `reserved` lives.
        let reserved = tokio::net::TcpSocket::new_v4().expect("socket");
        reserved.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
        let dead = Endpoint::new("127.0.0.1", reserved.local_addr().unwrap().port()).unwrap();
        let mut seeds = vec![dead.clone()];
        seeds.extend(cluster.endpoints.iter().cloned());
        let sessions = connect_all(&cluster.client_config(seeds), 8, 4, 0).await;
        for s in &sessions {
            assert_eq!(endpoints_of(s, Phase::Handshake), vec![dead.clone(), cluster.endpoints[0].clone()]);
            assert!(!endpoints_of(s, Phase::Session).contains(&dead));
        }
        let first = cluster.handles[0].stats().await.unwrap().instance.round.handshakes;
        let second = cluster.handles[1].stats().await.unwrap().instance.round.handshakes;
        assert_eq!((first, second), (8, 0), "the second seed ranked every client");
        drop(sessions);
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_instance_gets_no_new_client_once_stale() {
    bounded(async {
        let cluster = LocalCluster::start(&[10, 10, 10]).await;
        let config = cluster.config();
        let mut early = connect_all(&config, 6, 3, 0).await;
        assert!(count_on(&early, InstanceId(2)) > 0, "the victim took sessions before the crash");
        let dead = cluster.endpoints[1].clone();
        cluster.handles[1].crash().await;
        // Its sessions end with it.
        for s in early.iter_mut().filter(|s| s.instance() == Some(InstanceId(2))) {
            let mut buf = [0u8; 8];
            let read = tokio::time::timeout(PATIENCE, s.read(&mut buf)).await.expect("ended in time");
            assert!(matches!(read, Ok(0) | Err(_)), "a session on the crashed instance lives on: {read:?}");
        }
        cluster.wait_until_stale(InstanceId(2)).await;
        let late = connect_all(&config, 12, 4, 100).await;
        for s in &late {
            assert!(
                !endpoints_of(s, Phase::Session).contains(&dead),
                "a client was sent to the dead instance: {:?}",
                s.attempts()
            );
        }
        assert_eq!(count_on(&late, InstanceId(1)) + count_on(&late, InstanceId(3)), 12);
        drop((early, late));
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_instance_gets_no_new_session_and_keeps_its_old_ones() {
    bounded(async {
        let cluster = LocalCluster::start(&[10, 10, 10]).await;
        let config = cluster.config();
        let mut early = connect_all(&config, 6, 3, 0).await;
        let on_two = count_on(&early, InstanceId(2));
        assert!(on_two > 0, "the drained instance took sessions before");
        let draining = &cluster.handles[1];
        draining.set_accepting(false).await.expect("running");
        let accepted_before = draining.stats().await.unwrap().instance.admission.sessions_accepted;

        let late = connect_all(&config, 12, 4, 100).await;
        assert_eq!(count_on(&late, InstanceId(2)), 0);
        let stats = draining.stats().await.unwrap();
        assert_eq!(
            stats.instance.admission.sessions_accepted, accepted_before,
            "no session admitted while draining"
        );
        assert_eq!(stats.workload.connected as usize, on_two, "old sessions stay");
        for s in early.iter_mut().filter(|s| s.instance() == Some(InstanceId(2))) {
            round_trip(s, "still served while draining").await;
        }
        drop((early, late));
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_closes_only_its_connection() {
    bounded(async {
        let cluster = LocalCluster::start(&[10]).await;
        let config = cluster.config();
        let mut before = connect_all(&config, 2, 2, 0).await;

        let mut bad = TcpStream::connect(cluster.endpoints[0].socket_addr_string()).await.expect("connect");
        bad.write_all(&[0xFF; 64]).await.expect("write");
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(PATIENCE, bad.read(&mut buf)).await.expect("closed in time");
        assert!(matches!(read, Ok(0) | Err(_)), "expected the connection closed with nothing sent: {read:?}");
        let stats = cluster.handles[0].stats().await.unwrap();
        assert_eq!(stats.connections.malformed_frames, 1);
        assert_eq!(stats.workload.connected, 2, "the other sessions are untouched");

        let after = connect_all(&config, 3, 3, 10).await;
        assert_eq!(after.len(), 3, "the instance keeps serving");
        for (i, s) in before.iter_mut().enumerate() {
            round_trip(s, &format!("earlier session {i} still works")).await;
        }
        assert_eq!(cluster.connected(0).await, 5);
        drop((before, after));
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_graceful_stop_removes_the_row_and_a_crash_leaves_it() {
    bounded(async {
        let cluster = LocalCluster::start(&[10, 10, 10]).await;
        let ids = |members: Vec<aos_cluster::registry::MemberRecord>| -> Vec<InstanceId> {
            members.iter().map(|m| m.id).collect()
        };
        cluster.handles[1].crash().await;
        cluster.handles[2].shutdown().await;
        let rows = cluster
            .registry
            .snapshot(Some(CLUSTER), MemberTiming::with_ttl(MEMBER_TTL))
            .await
            .expect("registry");
        assert_eq!(ids(rows), vec![InstanceId(1), InstanceId(2)]);
        cluster.shutdown().await;
        let rows = cluster_rows(&cluster.registry).await;
        assert_eq!(rows, vec![InstanceId(2)], "only the crashed instance's row is left");
    })
    .await;
}

/// On etcd: sessions end proportional to capacity; a graceful stop deletes
/// the instance's key at once; a crash leaves it until its lease expires
/// (`member_ttl` 1 s: etcd's shortest lease, some 2 s), then it goes by
/// itself, with no purge.
#[cfg(all(feature = "etcd", aos_etcd))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_etcd_sessions_balance_a_stop_removes_the_key_and_a_crash_lets_it_expire() {
    let Ok(base) = std::env::var("AOS_TEST_ETCD_URL") else {
        eprintln!("etcd cluster test did not run: AOS_TEST_ETCD_URL is not set");
        return;
    };
    bounded(async {
        let url = format!("{}/cluster-{}", base.trim_end_matches('/'), registry::Incarnation::random());
        let capacities = [20, 40, 60];
        let cluster = LocalCluster::start_on(&url, tempfile::tempdir().expect("temp dir"), &capacities).await;
        let sessions = connect_all(&cluster.config(), 60, 6, 0).await;
        for (i, &cap) in capacities.iter().enumerate() {
            let id = InstanceId(i as u32 + 1);
            let (ideal, got) = (i64::from(cap) / 2, count_on(&sessions, id) as i64);
            assert!((got - ideal).abs() <= 2, "{id}: {got} sessions, ideal {ideal}");
        }
        drop(sessions);

        cluster.handles[1].crash().await;
        cluster.handles[2].shutdown().await;
        eventually("the stopped instance's key is gone", || async {
            cluster_rows(&cluster.registry).await == [InstanceId(1), InstanceId(2)]
        })
        .await;
        eventually("the crashed instance's lease expires", || async {
            cluster_rows(&cluster.registry).await == [InstanceId(1)]
        })
        .await;
        assert_eq!(cluster.registry.purge(Some(CLUSTER), Duration::ZERO).await.expect("purge"), 0);
        cluster.shutdown().await;
        eventually("the last key is gone", || async { cluster_rows(&cluster.registry).await.is_empty() })
            .await;
    })
    .await;
}

async fn cluster_rows(registry: &Arc<dyn Registry>) -> Vec<InstanceId> {
    let rows = registry.snapshot(Some(CLUSTER), MemberTiming::with_ttl(MEMBER_TTL)).await.expect("registry");
    rows.iter().map(|m| m.id).collect()
}

/// Set in the child process of the test below: the parent's registry URL.
const CHILD_URL_VAR: &str = "AOS_TEST_CLUSTER_CHILD_URL";

/// Kills the child process if the test fails before it has ended.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Two real processes on one SQLite file (SQLite locks are per process, so
/// two handles in one process are not the whole story): the test binary runs
/// this same test again as a child, which serves instance 2 until its stdin
/// closes. The parent's instance ranks it, a client's session lands on it
/// and carries bytes, and the child's graceful stop removes its row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_in_two_processes_share_one_sqlite_file() {
    use std::io::{BufRead, Read};
    if let Ok(url) = std::env::var(CHILD_URL_VAR) {
        let instance = InstanceConfig {
            cluster: Some(CLUSTER.to_owned()),
            member_ttl: MEMBER_TTL,
            heartbeat_interval: Duration::from_millis(100),
            snapshot_ttl: Duration::from_millis(100),
            ..InstanceConfig::new(InstanceId(2), Endpoint::new("127.0.0.1", 1).unwrap(), 10)
        };
        let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), instance);
        let server =
            Server::bind(config, registry::open(&url).await.expect("child opens")).await.expect("binds");
        let handle = server.handle();
        println!("CHILD_ENDPOINT {}", server.endpoint());
        serve_upper(server);
        tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await.unwrap().unwrap();
        handle.shutdown().await;
        return;
    }
    bounded(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("registry.db").display());
        let registry = registry::open(&url).await.expect("registry opens");
        let instance = InstanceConfig {
            cluster: Some(CLUSTER.to_owned()),
            member_ttl: MEMBER_TTL,
            heartbeat_interval: Duration::from_millis(100),
            snapshot_ttl: Duration::from_millis(100),
            ..InstanceConfig::new(InstanceId(1), Endpoint::new("127.0.0.1", 1).unwrap(), 1)
        };
        let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), instance);
        let server = Server::bind(config, registry.clone()).await.expect("parent binds");
        let (parent_endpoint, parent) = (server.endpoint().clone(), server.handle());
        serve_upper(server);

        let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "instances_in_two_processes_share_one_sqlite_file", "--nocapture"])
            .env(CHILD_URL_VAR, &url)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run the child");
        let mut child = ChildGuard(child);
        let stdout = child.0.stdout.take().unwrap();
        let (child_endpoint, stdout) = tokio::task::spawn_blocking(move || {
            let mut lines = std::io::BufReader::new(stdout);
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(endpoint) = line.trim().strip_prefix("CHILD_ENDPOINT ") {
                    return (Some(endpoint.parse::<Endpoint>().expect("an endpoint")), lines);
                }
                line.clear();
            }
            (None, lines)
        })
        .await
        .unwrap();
        let child_endpoint = child_endpoint.expect("the child printed its endpoint");
        assert_eq!(
            cluster_rows(&registry).await,
            vec![InstanceId(1), InstanceId(2)],
            "both rows in one file"
        );

        // The parent is the only seed; it ranks the child (more free sessions) first.
        let cluster = ClientConfig {
            cluster: Some(CLUSTER.to_owned()),
            ..ClientConfig::with_seeds(vec![parent_endpoint.clone()])
        };
        let mut session = seeded(&cluster, 1).connect().await.expect("a session");
        assert_eq!((session.instance(), session.endpoint()), (Some(InstanceId(2)), &child_endpoint));
        round_trip(&mut session, "across processes").await;
        drop(session);
        assert!(parent.stats().await.unwrap().instance.round.peer_reports >= 1, "the parent asked the child");

        // Closing its stdin stops the child gracefully: its row goes.
        drop(child.0.stdin.take());
        let status = tokio::task::spawn_blocking(move || child.0.wait()).await.unwrap().expect("child ends");
        let mut rest = String::new();
        let mut stdout = stdout;
        let _ = stdout.read_to_string(&mut rest);
        assert!(status.success(), "the child failed: {rest}");
        assert!(rest.contains("1 passed"), "the child ran the test: {rest}");
        assert_eq!(cluster_rows(&registry).await, vec![InstanceId(1)]);
        parent.shutdown().await;
        assert!(cluster_rows(&registry).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_registry_file_that_is_not_a_database_refuses_the_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("registry.db");
    std::fs::write(&path, b"this is not an SQLite file, it is long enough to have a header").unwrap();
    match registry::open(&format!("sqlite://{}", path.display())).await {
        Err(e) => assert!(e.to_string().contains("not a database"), "{e}"),
        Ok(_) => panic!("a file that is not a database opened as the registry"),
    }
}

/// A client whose connects are seeded with `seed` (reproducible attempts).
fn seeded(config: &ClientConfig, seed: u64) -> aos_cluster_tokio::Client {
    aos_cluster_tokio::Client::with_options(
        config.clone(),
        aos_cluster_tokio::ClientOptions::new().with_rng_seed(seed),
    )
}
