//! Out of file descriptors is a transient registry error, never a deleted
//! file: alone in its own test binary, since it takes every descriptor the
//! process may open.

#![cfg(feature = "sqlite")]

use aos_cluster_tokio::registry::MemberTiming;
use std::time::Duration;

use aos_cluster::registry::Heartbeat;
use aos_cluster::{Endpoint, InstanceId, Role, Workload};
use aos_cluster_tokio::registry::{self, Incarnation, RegistryError};

const TTL: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "current_thread")]
async fn sqlite_out_of_descriptors_is_transient_and_recovers() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("registry.db");
    let registry = registry::open(&format!("sqlite://{}", path.display())).await.expect("open");
    let heartbeat = Heartbeat {
        id: InstanceId(1),
        endpoint: "AOS01@h:2712".parse::<Endpoint>().expect("endpoint"),
        cluster: Some("c".to_owned()),
        role: Role::Serving,
        accepting: true,
        workload: Workload::new(0, 10),
    };
    let me = Incarnation(1);
    registry.register(&heartbeat, me, TTL).await.expect("register");

    // Take every descriptor left (bounded: the hard limit here is tens of
    // thousands at most).
    let mut hoard = Vec::new();
    let exhausted = loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => hoard.push(file),
            Err(e) => break e,
        }
        assert!(hoard.len() < 1_000_000, "no descriptor limit to reach");
    };
    assert_eq!(exhausted.raw_os_error(), Some(24), "EMFILE: {exhausted}");

    let mut failed = 0;
    for _ in 0..3 {
        let result = registry
            .heartbeat(&heartbeat, me)
            .await
            .and(registry.snapshot(Some("c"), MemberTiming::with_ttl(TTL)).await.map(drop));
        match result {
            Ok(()) => {} // the call needed no new descriptor
            Err(RegistryError::Backend { message, .. }) => {
                failed += 1;
                assert!(!message.contains("DELETED"), "out of descriptors is not a deleted file: {message}");
                assert!(!message.contains("REPLACED") && !message.contains("EMPTIED"), "{message}");
            }
            Err(other) => panic!("expected a transient backend error, got {other:?}"),
        }
    }

    // Each call checks its file through a new descriptor: each fails.
    assert_eq!(failed, 3, "the calls could not open anything");

    drop(hoard);
    registry.heartbeat(&heartbeat, me).await.expect("the same file, the same row: heartbeats again");
    let read = registry.snapshot(Some("c"), MemberTiming::with_ttl(TTL)).await.expect("snapshot");
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].id, InstanceId(1));
}
