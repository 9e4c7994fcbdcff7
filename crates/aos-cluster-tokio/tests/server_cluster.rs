//! Servers in a cluster: peer links follow the registry, a registry outage
//! ranks from the last snapshot.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use aos_cluster::InstanceId;
use aos_cluster_tokio::registry::RegistryError;
use aos_cluster_tokio::server::{Server, ServerError};
use common::*;

#[tokio::test]
async fn an_instance_restarted_at_a_new_port_is_redialled_by_its_peers() {
    let registry = MemRegistry::new();
    let first = bind(server_config(1, 10), &registry).await;
    let peer = bind(server_config(2, 10), &registry).await;
    let (peer_addr, peer_handle) = (peer.local_addr(), peer.handle());
    let old_endpoint = first.endpoint().clone();
    eventually("the peer ranks instance 1 at its first port", || async {
        ranking_at(peer_addr, 1)
            .await
            .entries
            .iter()
            .any(|e| e.id == InstanceId(1) && e.endpoint == old_endpoint)
    })
    .await;
    let dials_before = stats(&peer_handle).await.peers.dials;

    // A crash leaves the row; the id can be taken again once it is stale.
    first.handle().crash().await;
    drop(first);
    let mut restarted = None;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while restarted.is_none() {
        let registry_dyn: std::sync::Arc<dyn aos_cluster_tokio::registry::Registry> = registry.clone();
        match Server::bind(server_config(1, 10), registry_dyn).await {
            Ok(server) => restarted = Some(server),
            Err(ServerError::Registry(RegistryError::IdInUse { .. })) => {
                assert!(tokio::time::Instant::now() < deadline, "the crashed row never went stale");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let restarted = restarted.unwrap();
    let new_endpoint = restarted.endpoint().clone();
    assert_ne!(new_endpoint, old_endpoint, "the system reused the port; the test proves nothing");

    // Being ranked means the peer asked the new endpoint for its workload and got an answer.
    eventually("the peer ranks instance 1 at its new port", || async {
        ranking_at(peer_addr, 2)
            .await
            .entries
            .iter()
            .any(|e| e.id == InstanceId(1) && e.endpoint == new_endpoint)
    })
    .await;
    let s = stats(&peer_handle).await;
    assert!(s.peers.dials > dials_before, "no new dial: {s:?}");
    assert_eq!(s.peers.links, 1, "the old link was not dropped: {s:?}");
    assert!(restarted.handle().stats().await.unwrap().instance.workload_queries_answered >= 1);
}

#[tokio::test]
async fn a_member_that_leaves_the_registry_loses_its_peer_link() {
    let registry = MemRegistry::new();
    let leaving = bind(server_config(1, 10), &registry).await;
    let peer = bind(server_config(2, 10), &registry).await;
    let (peer_addr, peer_handle) = (peer.local_addr(), peer.handle());
    eventually("linked", || async {
        ranking_at(peer_addr, 1).await.entries.len() == 2 && stats(&peer_handle).await.peers.links == 1
    })
    .await;
    leaving.handle().shutdown().await;
    eventually("the link is dropped", || async {
        let ranked = ranking_at(peer_addr, 2).await;
        ids(&ranked) == vec![2] && stats(&peer_handle).await.peers.links == 0
    })
    .await;
}

#[tokio::test]
async fn a_registry_outage_ranks_from_the_last_snapshot_marked_stale() {
    let registry = MemRegistry::new();
    let _one = bind(server_config(1, 10), &registry).await;
    let two = bind(server_config(2, 10), &registry).await;
    let addr = two.local_addr();
    eventually("both ranked", || async { ranking_at(addr, 1).await.entries.len() == 2 }).await;
    registry.down.store(true, Ordering::Relaxed);
    // Past snapshot_ttl the next round asks the registry, which fails.
    eventually("a stale ranking that still has both", || async {
        let ranked = ranking_at(addr, 2).await;
        ranked.stale && ranked.entries.len() == 2
    })
    .await;
    let handle = two.handle();
    eventually("heartbeats fail too", || async { stats(&handle).await.registry.heartbeat_failures >= 1 })
        .await;
    let s = stats(&handle).await;
    assert!(s.instance.round.registry_failures >= 1, "{s:?}");
    assert!(!s.registry.registration_lost, "an outage is not a takeover");
    registry.down.store(false, Ordering::Relaxed);
    eventually("fresh again", || async { !ranking_at(addr, 3).await.stale }).await;
}
