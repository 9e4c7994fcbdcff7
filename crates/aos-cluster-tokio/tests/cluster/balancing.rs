//! Where sessions go: proportional to capacity, past a closed seed, away
//! from a crashed or draining instance, and a malformed frame closes only its
//! connection.

use super::*;

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
