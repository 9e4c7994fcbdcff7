//! The registry rows after a graceful stop and a crash, on SQLite and etcd,
//! and a registry file that is not a database.

use super::*;

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
