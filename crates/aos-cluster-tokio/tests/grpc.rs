//! The `grpc` example's parts, checked: tonic channels over balanced
//! sessions spread over the capacities, and the channels on an instance
//! that dies reconnect, through the protocol, to live ones. Every wait is
//! bounded.

#[path = "../examples/grpc.rs"]
#[allow(dead_code)]
mod example;

use std::future::Future;
use std::time::Duration;

use aos_cluster_tokio::tower::BalancedConnector;
use aos_cluster_tokio::Client;
use example::{channel, check, Cluster};
use tonic_health::pb::health_check_response::ServingStatus;

/// A hang is a failure, not a stuck CI job.
async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), test).await.expect("test did not finish within 60 s")
}

async fn connected(cluster: &Cluster, n: usize) -> Vec<u32> {
    let mut connected = Vec::new();
    for i in 0..n {
        connected.push(cluster.connected(i).await);
    }
    connected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_channels_spread_over_the_capacities_and_reconnect_past_a_dead_instance() {
    bounded(async {
        let capacities = [10, 20, 30];
        let cluster = Cluster::start(&capacities).await.expect("cluster starts");
        let connector = BalancedConnector::new(Client::new(cluster.client_config())).expect("connector");
        let mut channels = Vec::new();
        for _ in 0..30 {
            channels.push(channel(&connector).await.expect("channel"));
        }
        let before = connected(&cluster, 3).await;
        for (i, (&got, &cap)) in before.iter().zip(&capacities).enumerate() {
            assert!(got.abs_diff(cap / 2) <= 1, "instance {}: {got} sessions: {before:?}", i + 1);
        }
        assert_eq!(before.iter().sum::<u32>(), 30, "one session per channel: {before:?}");
        for c in &channels {
            assert_eq!(check(c).await.expect("health check"), ServingStatus::Serving);
        }
        assert_eq!(connected(&cluster, 3).await, before, "calls reuse each channel's session");

        // Instance 1, the first seed, dies with its sessions.
        cluster.handles[0].crash().await;
        for c in &channels {
            assert_eq!(check(c).await.expect("health check after the crash"), ServingStatus::Serving);
        }
        let after = [cluster.connected(1).await, cluster.connected(2).await];
        assert_eq!(
            after.iter().sum::<u32>(),
            30,
            "every channel has a session on a live instance: {after:?}"
        );
        assert!(
            after[0] >= before[1] && after[1] >= before[2],
            "live sessions kept: {before:?} -> {after:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_serves_until_the_server_stops() {
    bounded(async {
        let cluster = Cluster::start(&[5]).await.expect("cluster starts");
        let connector = BalancedConnector::new(Client::new(cluster.client_config())).expect("connector");
        let c = channel(&connector).await.expect("channel");
        assert_eq!(check(&c).await.expect("health check"), ServingStatus::Serving);
        cluster.handles[0].shutdown().await;
        // The incoming stream ended with the server: nothing admits the redial.
        check(&c).await.expect_err("no instance left");
        let error = channel(&connector).await.expect_err("a new channel finds no instance");
        let source = std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default();
        assert!(
            source.contains("connect to 127.0.0.1"),
            "the connector's error, with its attempts: {source}"
        );
    })
    .await;
}
