//! The `http` example's parts, checked: hyper-util's pooled client over
//! balanced sessions spreads its connections over the capacities, and
//! carries on when an instance dies (the pool's next dials run the protocol
//! again). Every wait is bounded.

#[path = "../examples/http.rs"]
#[allow(dead_code)]
mod example;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use aos_cluster_tokio::{InstanceId, Phase};
use example::{get, hold, http_client, Cluster};

const PATIENCE: Duration = Duration::from_secs(5);

/// A hang is a failure, not a stuck CI job.
async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), test).await.expect("test did not finish within 60 s")
}

async fn answers(held: Vec<tokio::task::JoinHandle<Option<InstanceId>>>) -> BTreeMap<u32, usize> {
    let mut by_instance = BTreeMap::new();
    for task in held {
        let id = tokio::time::timeout(PATIENCE, task)
            .await
            .expect("answered once released")
            .expect("request task")
            .expect("a held request that reached its instance is answered");
        *by_instance.entry(id.0).or_insert(0) += 1;
    }
    by_instance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_hyper_client_spreads_its_connections_over_the_capacities() {
    bounded(async {
        let capacities = [10, 20, 30];
        let cluster = Cluster::start(&capacities).await.expect("cluster starts");
        let client = http_client(cluster.client_config()).expect("client");

        let held = hold(&cluster, &client, 30, PATIENCE).await.expect("30 busy connections");
        let mut connected = Vec::new();
        for i in 0..capacities.len() {
            connected.push(cluster.connected(i).await);
        }
        // Each connection is one session, placed on the least loaded instance.
        for (i, (&got, &cap)) in connected.iter().zip(&capacities).enumerate() {
            let ideal = cap / 2;
            assert!(
                got.abs_diff(ideal) <= 1,
                "instance {}: {got} sessions, ideal {ideal}: {connected:?}",
                i + 1
            );
        }
        assert_eq!(connected.iter().sum::<u32>(), 30, "one session per pool connection: {connected:?}");

        cluster.gate.release.send_replace(true);
        let by_instance = answers(held).await;
        // Each request was answered by the instance its connection's session is on.
        let answered: Vec<u32> =
            (1..=3).map(|id| by_instance.get(&id).copied().unwrap_or(0) as u32).collect();
        assert_eq!(answered, connected, "requests answered where their sessions are");

        // A request on an idle pooled connection reuses it: no new session.
        let (_, info) = get(&client, "/").await.expect("GET /");
        assert!(info.instance().is_some(), "the session names its instance: {info:?}");
        let mut total = 0;
        for i in 0..capacities.len() {
            total += cluster.connected(i).await;
        }
        assert_eq!(total, 30, "the pool reused a connection");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_carries_on_when_an_instance_dies() {
    bounded(async {
        let capacities = [10, 20, 30];
        let cluster = Cluster::start(&capacities).await.expect("cluster starts");
        let client = http_client(cluster.client_config()).expect("client");
        let held = hold(&cluster, &client, 30, PATIENCE).await.expect("30 busy connections");
        cluster.gate.release.send_replace(true);
        let before = answers(held).await;
        assert!(before.get(&1).copied().unwrap_or(0) >= 4, "the victim had connections: {before:?}");

        // Instance 1, the first seed, dies with its sessions.
        cluster.handles[0].crash().await;
        cluster.gate.release.send_replace(false);
        // 40 busy connections: the 25 live ones in the pool and 15 new dials.
        let held = hold(&cluster, &client, 40, PATIENCE).await.expect("40 busy connections after the crash");
        let (two, three) = (cluster.connected(1).await, cluster.connected(2).await);
        assert_eq!(two + three, 40, "every busy connection is a session on a live instance");
        assert!(two <= 20 && three <= 30, "within capacity: {two} and {three}");
        cluster.gate.release.send_replace(true);
        let after = answers(held).await;
        assert!(!after.contains_key(&1), "a request answered by the dead instance: {after:?}");
        assert_eq!(after.values().sum::<usize>(), 40);

        // A new client's first session walks past the dead seed.
        let fresh = http_client(cluster.client_config()).expect("client");
        let (id, info) = get(&fresh, "/").await.expect("GET / after the crash");
        assert_ne!(id, InstanceId(1));
        let handshakes: Vec<_> = info.attempts().iter().filter(|a| a.phase == Phase::Handshake).collect();
        assert_eq!(handshakes.first().map(|a| &a.endpoint), Some(&cluster.seeds[0]), "{info:?}");
        assert!(handshakes.len() >= 2, "the dead seed was tried, then the next: {info:?}");
    })
    .await;
}
