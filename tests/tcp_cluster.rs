//! The drivers over real TCP on 127.0.0.1 (ephemeral ports), with the SQLite
//! registry in a temp dir. Assertions are on outcomes (where sessions went,
//! what was refused, what stayed open), never on how long things took; the
//! only waits are bounded polls for a condition.

#[path = "../examples/support/mod.rs"]
mod support;

use std::future::Future;
use std::time::Duration;

use aos_cluster::wire::{self, Message, RejectReason, SessionOutcome, SessionReply, SessionRequest};
use aos_cluster::{ClientConfig, Endpoint, InstanceId};
use support::client::Session;
use support::cluster::{LocalCluster, Timing};
use support::frames::FrameReader;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A hang is a failure, not a stuck CI job.
async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), test).await.expect("test did not finish within 60 s")
}

async fn start(capacities: &[u32]) -> LocalCluster {
    let cluster = LocalCluster::start(capacities, None, Timing::FAST).await.expect("cluster starts");
    cluster.wait_registered().await.expect("registry reachable");
    cluster
}

/// Connects `n` clients, at most `parallel` at a time; every one must succeed.
async fn connect_all(config: &ClientConfig, n: u64, parallel: usize, salt: u64) -> Vec<Session> {
    let mut sessions = Vec::new();
    let ids: Vec<u64> = (0..n).collect();
    for chunk in ids.chunks(parallel) {
        let mut wave = tokio::task::JoinSet::new();
        for &i in chunk {
            wave.spawn(support::client::connect(config.clone(), salt + i));
        }
        while let Some(joined) = wave.join_next().await {
            sessions.push(joined.expect("client task").expect("client connects"));
        }
    }
    sessions
}

fn count_on(sessions: &[Session], id: InstanceId) -> usize {
    sessions.iter().filter(|s| s.instance == Some(id)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_proportional_to_capacity() {
    bounded(async {
        let capacities = [20, 40, 60];
        let cluster = start(&capacities).await;
        let sessions = connect_all(&cluster.client_config(), 60, 6, 0).await;
        let stats = cluster.stats().await;
        // Ideal: half of each capacity, 10 / 20 / 30. Every handshake lands on
        // seed #1, which counts a reservation for each list it hands out, so
        // each client is ranked on predicted load that includes the clients
        // still in flight: greedy least-ratio placement, within one session of
        // the proportional share. One more for a peer report, taken before an
        // admission it should show, that replaces that admission's
        // reservation while six clients are in flight. (Measured: exact.)
        for (i, &cap) in capacities.iter().enumerate() {
            let id = InstanceId(i as u32 + 1);
            let ideal = cap as i64 / 2;
            let got = count_on(&sessions, id) as i64;
            assert!((got - ideal).abs() <= 2, "{id}: {got} sessions, ideal {ideal}");
            let live = stats[i].expect("running").workload;
            assert_eq!(i64::from(live.connected), got, "{id}: the instance counts the sessions clients hold");
        }
        drop(sessions);
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_first_seed_is_skipped_for_the_next() {
    bounded(async {
        let cluster = start(&[10, 10]).await;
        // A port bound but never listened on: connecting is refused, and no
        // other test can take the port while `reserved` lives.
        let reserved = tokio::net::TcpSocket::new_v4().expect("socket");
        reserved.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let closed = reserved.local_addr().expect("addr").port();
        let dead = Endpoint::new("127.0.0.1", closed).expect("valid");
        let mut seeds = vec![dead.clone()];
        seeds.extend(cluster.endpoints.iter().cloned());
        let config = support::cluster::client_config(seeds);
        let sessions = connect_all(&config, 8, 4, 0).await;
        for s in &sessions {
            assert_eq!(s.handshake_attempts, vec![dead.clone(), cluster.endpoints[0].clone()]);
            assert!(!s.session_attempts.contains(&dead));
        }
        let stats = cluster.stats().await;
        assert_eq!(stats[0].expect("running").handshakes, 8, "the second seed ranked every client");
        assert_eq!(stats[1].expect("running").handshakes, 0);
        drop(sessions);
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_instance_gets_no_new_client_once_stale() {
    bounded(async {
        let mut cluster = start(&[10, 10, 10]).await;
        let config = cluster.client_config();
        let early = connect_all(&config, 6, 3, 0).await;
        assert!(count_on(&early, InstanceId(2)) > 0, "the victim took sessions before the crash");
        let dead = cluster.endpoints[1].clone();
        cluster.crash(1).await;
        cluster.wait_until_stale(InstanceId(2)).await.expect("registry reachable");
        let late = connect_all(&config, 12, 4, 100).await;
        for s in &late {
            assert!(!s.session_attempts.contains(&dead), "a client was sent to the dead instance: {s:?}");
        }
        assert_eq!(count_on(&late, InstanceId(1)) + count_on(&late, InstanceId(3)), 12);
        drop((early, late));
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_instance_admits_no_new_session() {
    bounded(async {
        let cluster = start(&[10, 10, 10]).await;
        let config = cluster.client_config();
        let early = connect_all(&config, 6, 3, 0).await;
        let draining = cluster.server(1);
        draining.set_accepting(false);
        let admitted_before = draining.stats().await.expect("running").admitted;

        // Admission itself refuses, whatever a ranking said.
        let mut direct = TcpStream::connect(draining.addr).await.expect("connect");
        let request = Message::SessionRequest(SessionRequest { request_id: 7 });
        let mut bytes = Vec::new();
        wire::encode(&request, &mut bytes).expect("encodes");
        direct.write_all(&bytes).await.expect("write");
        let reply = FrameReader::new(&mut direct).next().await.expect("a reply");
        assert_eq!(
            reply,
            Message::SessionReply(SessionReply {
                request_id: 7,
                outcome: SessionOutcome::Rejected(RejectReason::Draining)
            })
        );

        let late = connect_all(&config, 12, 4, 100).await;
        assert_eq!(count_on(&late, InstanceId(2)), 0);
        let stats = draining.stats().await.expect("running");
        assert_eq!(stats.admitted, admitted_before, "no session admitted while draining");
        assert_eq!(stats.workload.connected as usize, count_on(&early, InstanceId(2)), "old sessions stay");
        drop((early, late));
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_closes_only_its_connection() {
    bounded(async {
        let cluster = start(&[10]).await;
        let config = cluster.client_config();
        let mut before = connect_all(&config, 2, 2, 0).await;

        let mut bad = TcpStream::connect(cluster.endpoints[0].socket_addr_string()).await.expect("connect");
        bad.write_all(&[0xFF; 64]).await.expect("write");
        match FrameReader::new(&mut bad).next().await {
            Err(support::frames::ReadError::Closed) | Err(support::frames::ReadError::Io(_)) => {}
            other => panic!("expected the connection closed with nothing sent, got {other:?}"),
        }
        let stats = cluster.stats().await[0].expect("running");
        assert_eq!(stats.malformed, 1);
        assert_eq!(stats.workload.connected, 2, "the other sessions are untouched");

        let after = connect_all(&config, 3, 3, 10).await;
        assert_eq!(after.len(), 3, "the instance keeps serving");
        // The earlier sessions are still open: closing waits, it does not return.
        let still_open = tokio::time::timeout(Duration::from_millis(50), before[0].closed()).await.is_err();
        assert!(still_open, "an unrelated session was closed");
        assert_eq!(cluster.stats().await[0].expect("running").workload.connected, 5);
        drop((before, after));
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_removes_the_row_and_a_crash_leaves_it() {
    bounded(async {
        let mut cluster = start(&[10, 10, 10]).await;
        let ids = |members: Vec<aos_cluster::registry::MemberRecord>| -> Vec<InstanceId> {
            members.iter().map(|m| m.id).collect()
        };
        cluster.crash(1).await;
        let graceful = cluster.servers[2].take().expect("running");
        graceful.shutdown().await;
        let rows =
            cluster.registry.snapshot(Some(support::cluster::CLUSTER)).await.expect("registry").members;
        assert_eq!(ids(rows), vec![InstanceId(1), InstanceId(2)]);
        cluster.shutdown().await;
    })
    .await;
}
