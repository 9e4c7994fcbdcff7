//! etcd: leases, the watched replica, values written by hand, outages.

use std::time::Duration;

use aos_cluster::registry::Heartbeat;
use aos_cluster::InstanceId;
use aos_cluster_tokio::registry::{self, EtcdRegistry, MemberTiming, Registry, RegistryError, CALL_TIMEOUT};
use tokio::time::Instant;

use super::{heartbeat, ids, members, TestDb, A, B, TTL};

async fn open(db: &TestDb) -> EtcdRegistry {
    EtcdRegistry::connect(&db.url()).await.unwrap_or_else(|e| panic!("open {}: {e}", db.url()))
}

/// Calls `check` every 20 ms until it answers `Some`, for at most
/// `within`; panics naming `what` if it never does.
async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(done) = check().await {
            return done;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn live(registry: &EtcdRegistry) {
    eventually(Duration::from_secs(5), "the replica follows etcd", || async {
        registry.replica_is_live().then_some(())
    })
    .await;
}

/// A registry follows etcd from its open and then only while snapshots use
/// its replica: one that only writes (a serving-only instance) stops
/// following 2 s after its open; a balancer's replica brings other
/// handles' writes with no read, stops once no snapshot has used it for the
/// snapshots' `member_ttl`, and the next snapshots start one follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_follows_etcd_only_while_snapshots_use_it() {
    let Some(db) = TestDb::etcd("wanted").await else { return };
    let timing = MemberTiming::with_ttl(Duration::from_secs(2));
    let opened = Instant::now();
    let server = open(&db).await;
    let balancer = std::sync::Arc::new(open(&db).await);
    eventually(Duration::from_secs(5), "both follow from their open", || async {
        (server.replica_is_live() && balancer.replica_is_live()).then_some(())
    })
    .await;
    server.register(&heartbeat(1, "s", 0), A, TTL).await.expect("register");
    for connected in 1..=3 {
        server.heartbeat(&heartbeat(1, "s", connected), A).await.expect("heartbeat");
    }
    let connected = |read: &[aos_cluster::registry::MemberRecord]| read.first().map(|m| m.workload.connected);
    let figures = |expected: u32| {
        let balancer = std::sync::Arc::clone(&balancer);
        async move {
            let asked_at = Instant::now();
            let read = balancer.snapshot(Some("c"), timing).await.expect("snapshot");
            (connected(&read) == Some(expected)).then_some(asked_at)
        }
    };
    eventually(Duration::from_secs(5), "the figures", || figures(3)).await;
    live(&balancer).await;
    let reads = balancer.prefix_reads();

    eventually(Duration::from_secs(15), "the writer stops following", || async {
        balancer.snapshot(Some("c"), timing).await.expect("snapshot");
        (!server.replica_is_live()).then_some(())
    })
    .await;
    assert!(opened.elapsed() >= Duration::from_secs(2), "stopped {:?} after its open", opened.elapsed());
    assert!(balancer.replica_is_live(), "a replica in use follows on");
    server.heartbeat(&heartbeat(1, "s", 4), A).await.expect("heartbeat");
    let last_wanted = eventually(Duration::from_secs(5), "the new figures", || figures(4)).await;
    assert_eq!(balancer.prefix_reads(), reads, "every change came through the watch");

    eventually(Duration::from_secs(5), "the unused replica stops", || async {
        (!balancer.replica_is_live()).then_some(())
    })
    .await;
    assert!(
        last_wanted.elapsed() >= timing.member_ttl,
        "stopped {:?} after its last use",
        last_wanted.elapsed()
    );
    server.heartbeat(&heartbeat(1, "s", 5), A).await.expect("heartbeat");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!balancer.replica_is_live(), "a write does not start it again");
    // Twenty snapshots at once: each reads etcd itself, and they start one
    // follower, which loads the replica once.
    let mut next = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let balancer = std::sync::Arc::clone(&balancer);
        next.spawn(async move { balancer.snapshot(Some("c"), timing).await.expect("a snapshot") });
    }
    while let Some(read) = next.join_next().await {
        assert_eq!(connected(&read.expect("joined")), Some(5), "the latest figures, read from etcd");
    }
    eventually(timing.member_ttl, "the replica follows again", || async {
        balancer.replica_is_live().then_some(())
    })
    .await;
    assert_eq!(balancer.prefix_reads(), reads + 21, "twenty snapshots and one load of the replica");
    db.finish().await;
}

/// A process that stops heartbeating without `remove` (crashed: its
/// registry dropped) leaves the other processes' snapshots when its lease
/// expires, seen through the watch; one that keeps heartbeating stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_heartbeating_disappears_when_its_lease_expires() {
    let Some(db) = TestDb::etcd("lease").await else { return };
    let short = Duration::from_secs(1);
    let watcher = open(&db).await;
    let alive = open(&db).await;
    alive.register(&heartbeat(2, "alive", 0), B, short).await.expect("register");
    {
        let crashed = open(&db).await;
        crashed.register(&heartbeat(1, "crashed", 0), A, short).await.expect("register");
    }
    let crashed_at = Instant::now();
    watcher.sync().await.expect("sync");
    assert_eq!(
        ids(&watcher.snapshot(Some("c"), MemberTiming::with_ttl(short)).await.expect("snapshot")),
        [1, 2]
    );
    let reads = watcher.prefix_reads();

    let gone = eventually(Duration::from_secs(15), "the crashed member's key expires", || async {
        alive.heartbeat(&heartbeat(2, "alive", 1), B).await.expect("the live member heartbeats");
        let read = watcher.snapshot(Some("c"), MemberTiming::with_ttl(short)).await.expect("snapshot");
        (ids(&read) == [2]).then_some(crashed_at.elapsed())
    })
    .await;
    assert!(gone >= short, "gone after {gone:?}: before its lease could expire");
    assert_eq!(watcher.prefix_reads(), reads, "the expiry came through the watch, not a read");
    // Nothing for a purge to do: the lease did it.
    assert_eq!(watcher.purge(Some("c"), Duration::ZERO).await.expect("purge"), 0);
    // The live member's lease was renewed by its heartbeats all along.
    let read = watcher.snapshot(Some("c"), MemberTiming::with_ttl(short)).await.expect("snapshot");
    assert_eq!(read[0].workload.connected, 1);
    db.finish().await;
}

/// Another handle's register, heartbeat and removal reach this handle's
/// snapshots through its watch, with no read of the prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_sees_another_handles_writes_without_reading() {
    let Some(db) = TestDb::etcd("replica").await else { return };
    let reader = open(&db).await;
    let writer = open(&db).await;
    live(&reader).await;
    assert!(members(&reader, Some("c")).await.is_empty());
    let reads = reader.prefix_reads();
    let snapshot = || async { members(&reader, Some("c")).await };

    writer.register(&heartbeat(7, "w", 0), A, TTL).await.expect("register");
    let read = eventually(Duration::from_secs(5), "the new key", || async {
        let read = snapshot().await;
        (!read.is_empty()).then_some(read)
    })
    .await;
    assert_eq!(ids(&read), [7]);
    // etcd keeps no time of a write: a live key reads as old as its figures
    // may be while its member beats on time, however fresh.
    assert_eq!(read[0].heartbeat_age, MemberTiming::with_ttl(TTL).heartbeat_interval);

    writer.heartbeat(&heartbeat(7, "w", 5), A).await.expect("heartbeat");
    eventually(Duration::from_secs(5), "the new figures", || async {
        (snapshot().await.first().map(|m| m.workload.connected) == Some(5)).then_some(())
    })
    .await;

    assert!(writer.remove(InstanceId(7), A).await.expect("remove"));
    eventually(Duration::from_secs(5), "the removal", || async { snapshot().await.is_empty().then_some(()) })
        .await;
    assert_eq!(reader.prefix_reads(), reads, "every change came through the watch");
    db.finish().await;
}

/// Keys and values written by hand under the prefix: each bad one is
/// skipped and counted at every snapshot, never fails it, and holds no id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_written_by_hand_are_skipped_counted_and_hold_no_id() {
    super::logs();
    let Some(db) = TestDb::etcd("by_hand").await else { return };
    let TestDb::Etcd(etcd) = &db else { unreachable!() };
    let registry = open(&db).await;
    registry.register(&heartbeat(3000, "h", 0), A, TTL).await.expect("register");
    let record = |endpoint: &str, accepting: &str, v: u32| {
        format!(
            r#"{{"v":{v},"incarnation":"00000000000000aa","endpoint":"{endpoint}","cluster":"c",
               "role":"serving","accepting":{accepting},"max_sessions":10,"connected":1}}"#
        )
    };
    let mut admin = etcd.admin.clone();
    let key = |suffix: &str| format!("{}/members_v1/{suffix}", etcd.prefix);
    let lease = admin.lease_grant(30, None).await.expect("lease").id();
    let under_lease = Some(etcd_client::PutOptions::new().with_lease(lease));
    for (suffix, value) in [
        ("0000003001", "not json".to_owned()),
        ("0000003002", record("AOS01@h:2712", r#""yes""#, 1)),
        ("0000003003", record("aos2:99999", "true", 1)),
        ("0000003004", record("AOS01@h:2712", "true", 2)),
        ("junk", record("AOS01@h:2712", "true", 1)),
    ] {
        admin.put(key(suffix), value, under_lease.clone()).await.expect("put by hand");
    }
    // Well formed, but without a lease it would never expire.
    admin.put(key("0000003006"), record("AOS06@h:2712", "true", 1), None).await.expect("put");
    // A well-formed record written by hand under a lease counts like any other.
    admin.put(key("0000003005"), record("AOS05@h:2712", "true", 1), under_lease).await.expect("put");

    registry.sync().await.expect("sync");
    let before = registry.malformed_rows();
    for _ in 0..3 {
        let read = registry
            .snapshot(Some("c"), MemberTiming::with_ttl(TTL))
            .await
            .expect("bad values do not fail the snapshot");
        assert_eq!(ids(&read), [3000, 3005]);
    }
    assert_eq!(registry.malformed_rows(), before + 18, "six bad keys, three snapshots");
    for (id, reason) in [
        (3001, "not a member record"),
        (3002, "not a member record"),
        (3003, "aos2:99999"),
        (3004, "version 2"),
        (3006, "no lease"),
    ] {
        let lines = super::logged_lines(&format!("registry row id {id} skipped"));
        assert_eq!(lines.len(), 1, "one warning per bad key, not one per snapshot: {lines:?}");
        assert!(lines[0].contains("WARN") && lines[0].contains(reason), "{}", lines[0]);
    }
    // A value nobody can read holds no id: a starting process claims it.
    registry.register(&heartbeat(3001, "h", 0), B, TTL).await.expect("claims the unreadable key");
    registry.sync().await.expect("sync");
    let read = members(&registry, Some("c")).await;
    assert_eq!(ids(&read), [3000, 3001, 3005]);
    db.finish().await;
}

#[tokio::test]
async fn an_unreachable_etcd_fails_the_open_on_time_without_showing_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("etcd://aos:secret@127.0.0.1:{port}/p");
    let started = Instant::now();
    let result = registry::open(&url).await;
    let took = started.elapsed();
    match result {
        Err(e @ RegistryError::Backend { .. }) => {
            let message = e.to_string();
            let shown = format!("registry etcd://aos:***@127.0.0.1:{port}/p: cannot open");
            assert!(message.starts_with(&shown), "{message}");
            assert!(!message.contains("secret"), "{message}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert!(took < CALL_TIMEOUT + Duration::from_secs(2), "failed after {took:?}");
}

/// A server that accepts connections and never answers: the open fails
/// within its deadline instead of hanging.
#[tokio::test]
async fn a_silent_etcd_fails_the_open_on_time() {
    let took = super::open_fails_against_a_silent_server(|port| format!("etcd://127.0.0.1:{port}/p")).await;
    assert!(took < CALL_TIMEOUT + Duration::from_secs(2), "failed after {took:?}");
}

#[tokio::test]
async fn bad_etcd_urls_are_refused_naming_the_form() {
    for url in ["etcd://", "etcd://host/p", "etcd://host:port/p", "etcd://h:2379/p?x=1"] {
        match registry::open(url).await {
            Err(e @ RegistryError::BadUrl { .. }) => {
                assert!(e.to_string().contains(&format!("`{url}`")), "{e}")
            }
            other => panic!("{url}: {:?}", other.map(|_| ())),
        }
    }
}

/// An etcd server of this test's own, on free loopback ports, stopped
/// when dropped.
struct OwnEtcd {
    child: std::process::Child,
    dir: std::path::PathBuf,
    client_port: u16,
    peer_port: u16,
}

impl OwnEtcd {
    fn start(dir: &std::path::Path, client_port: u16, peer_port: u16) -> OwnEtcd {
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let child = std::process::Command::new("etcd")
            .args(["--name", "own", "--data-dir"])
            .arg(dir)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("own={peer}"), "--unsafe-no-fsync"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start etcd (the etcd binary is on the PATH wherever AOS_TEST_ETCD_URL is set)");
        OwnEtcd { child, dir: dir.to_owned(), client_port, peer_port }
    }

    fn url(&self) -> String {
        format!("etcd://127.0.0.1:{}/own", self.client_port)
    }

    fn stop(&mut self) {
        drop(self.child.kill());
        drop(self.child.wait());
    }
}

impl Drop for OwnEtcd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// etcd stops: every call fails with a backend error within its deadline
/// (once the watch has noticed, snapshots too), none hangs; etcd comes
/// back: the same registry recovers by itself, its lease and key intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_stopped_fails_calls_on_time_and_restarted_recovers_by_itself() {
    if std::env::var(super::ETCD_URL_VAR).is_err() {
        return; // said by the suite's tests
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut server = OwnEtcd::start(&dir.path().join("data"), free_port(), free_port());
    let registry = eventually(Duration::from_secs(20), "etcd starts", || async {
        EtcdRegistry::connect(&server.url()).await.ok()
    })
    .await;
    let hb: Heartbeat = heartbeat(1, "h", 0);
    registry.register(&hb, A, TTL).await.expect("register");
    live(&registry).await;
    assert_eq!(ids(&members(&registry, Some("c")).await), [1]);

    server.stop();
    let started = Instant::now();
    let result = registry.heartbeat(&hb, A).await;
    assert!(matches!(result, Err(RegistryError::Backend { .. })), "{result:?}");
    assert!(started.elapsed() < CALL_TIMEOUT + Duration::from_secs(1), "took {:?}", started.elapsed());
    eventually(Duration::from_secs(30), "snapshots fail once the watch is broken", || async {
        let started = Instant::now();
        let result = registry.snapshot(Some("c"), MemberTiming::with_ttl(TTL)).await;
        assert!(started.elapsed() < CALL_TIMEOUT + Duration::from_secs(1), "took {:?}", started.elapsed());
        match result {
            Err(RegistryError::Backend { .. }) => Some(()),
            Ok(read) => {
                assert_eq!(ids(&read), [1], "the replica's last view until then");
                None
            }
            Err(other) => panic!("{other}"),
        }
    })
    .await;
    assert!(!registry.replica_is_live());

    let _restarted = OwnEtcd::start(&server.dir, server.client_port, server.peer_port);
    eventually(Duration::from_secs(30), "heartbeats work again", || async {
        registry.heartbeat(&hb, A).await.ok()
    })
    .await;
    live(&registry).await;
    assert_eq!(ids(&members(&registry, Some("c")).await), [1]);
    assert!(registry.remove(InstanceId(1), A).await.expect("remove"), "still its own key");
    assert!(B != A);
}
