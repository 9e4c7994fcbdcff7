//! PostgreSQL: the connection, and PgBouncer in transaction mode.

use super::*;

// ---- PostgreSQL: the connection --------------------------------------------------------

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_reconnects_after_losing_its_connection() {
    let Some(db) = TestDb::postgres("reconnects").await else { return };
    let TestDb::Postgres(pg) = &db else { unreachable!() };
    let registry = db.connect().await;
    registry.register(&heartbeat(1, "h", 0), A, TTL).await.expect("register");
    let killed: i64 = pg
        .admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&pg.schema],
        )
        .await
        .expect("terminate backends")
        .get(0);
    assert_eq!(killed, 1);

    // The call that meets the dead connection may fail (with an error, never
    // a panic); the next one reconnects and finds the row still there.
    let mut recovered = None;
    for attempt in 0..20 {
        match registry.snapshot(Some("c"), MemberTiming::with_ttl(TTL)).await {
            Ok(read) => {
                recovered = Some((attempt, read));
                break;
            }
            Err(e) => {
                assert!(matches!(e, RegistryError::Backend { .. }), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let (attempt, read) = recovered.expect("the registry reconnects within a second");
    assert!(attempt <= 1, "one failed call at most, took {attempt}");
    assert_eq!(ids(&read), [1]);
    registry.heartbeat(&heartbeat(1, "h", 0), A).await.expect("heartbeat after reconnecting");
    db.finish().await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn unreachable_postgres_fails_at_start_without_showing_the_password() {
    // A loopback port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("postgres://aos:secret@127.0.0.1:{port}/aos");
    match registry::open(&url).await {
        Err(e @ RegistryError::Backend { .. }) => {
            let message = e.to_string();
            assert!(
                message
                    .starts_with(&format!("registry postgres://aos:***@127.0.0.1:{port}/aos: cannot open")),
                "{message}"
            );
            assert!(!message.contains("secret"), "{message}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// A server at its connection limit (a role limited to none stands in for
/// `max_connections`: the same SQLSTATE, 53300) fails the open with an
/// error that names the way past it.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_at_its_connection_limit_fails_the_open_naming_pgbouncer() {
    let Some(db) = TestDb::postgres("connection_limit").await else { return };
    let TestDb::Postgres(pg) = &db else { unreachable!() };
    let role = "aos_tokio_test_no_connections";
    pg.admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN CONNECTION LIMIT 0;"))
        .await
        .expect("a role that may not connect");
    let config = tokio_postgres::Config::from_str(&pg.base_url).expect("the test server's URL");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        other => panic!("the test server is reached over TCP, not {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let dbname = config.get_dbname().unwrap_or("postgres");
    let url = format!("postgres://{role}@{host}:{port}/{dbname}");
    let opened = registry::open(&url).await;
    pg.admin.batch_execute(&format!("DROP ROLE {role}")).await.expect("drop the role");
    match opened {
        Err(e @ RegistryError::Backend { .. }) => {
            let message = e.to_string();
            assert!(message.contains("cannot open"), "{message}");
            assert!(message.contains("too many connections"), "{message}");
            assert!(message.contains("PgBouncer in `pool_mode = transaction`"), "{message}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    db.finish().await;
}

/// A server that accepts the connection and never answers: opening fails
/// within its deadline instead of hanging.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_silent_postgres_server_fails_the_open_on_time() {
    let took =
        super::open_fails_against_a_silent_server(|port| format!("postgres://aos@127.0.0.1:{port}/aos"))
            .await;
    assert!(Duration::from_secs(4) < took && took < Duration::from_secs(8), "failed after {took:?}");
}

// ---- PostgreSQL behind PgBouncer (transaction mode) -------------------------------------

/// 40 registries (twice PgBouncer's 20 server connections) register,
/// heartbeat, read incrementally, take over, purge and remove at once
/// through PgBouncer in transaction mode, where consecutive statements of
/// one client run on different server connections: nothing may rely on
/// session state or a statement prepared on a connection. Every call must
/// succeed and every reader must see every row.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_through_pgbouncer_in_transaction_mode() {
    const VAR: &str = "AOS_TEST_PGBOUNCER_URL";
    let Ok(url) = std::env::var(VAR) else {
        drop(
            std::io::stderr()
                .lock()
                .write_all(format!("pgbouncer test did not run: {VAR} is not set\n").as_bytes()),
        );
        return;
    };
    const N: u32 = 40;
    let cluster = format!("pgbouncer-{}", std::process::id());
    let hb = |id: u32, connected: u32| Heartbeat {
        cluster: Some(cluster.clone()),
        ..heartbeat(60_000 + id, "pgb", connected)
    };
    let mut handles = Vec::new();
    for _ in 0..N {
        handles.push(registry::open(&url).await.unwrap_or_else(|e| panic!("open {url}: {e}")));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (i, registry) in handles.iter().enumerate() {
        let (registry, id, cluster) = (Arc::clone(registry), i as u32, cluster.clone());
        let (first, later) = (hb(id, 0), hb(id, 5));
        tasks.spawn(async move {
            registry.register(&first, A, TTL).await?;
            for round in 0..5 {
                registry
                    .heartbeat(&Heartbeat { workload: Workload::new(round, 100), ..later.clone() }, A)
                    .await?;
                registry
                    .snapshot(Some(&cluster), aos_cluster_tokio::registry::MemberTiming::with_ttl(TTL))
                    .await?;
                registry.purge(Some(&cluster), PURGE).await?;
            }
            registry.heartbeat(&later, A).await?;
            Ok::<_, RegistryError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task").expect("every call through PgBouncer succeeds");
    }
    for registry in &handles {
        let read = settled_members(&**registry, Some(&cluster)).await;
        assert_eq!(read.len(), N as usize, "every row, every reader");
        assert!(read.iter().all(|m| m.workload == Workload::new(5, 100)), "the last figures");
    }
    // Take over and removal through it too.
    handles[0].take_over(&hb(1, 7), B, A).await.expect("take over");
    for (i, registry) in handles.iter().enumerate().skip(2) {
        assert!(registry.remove(InstanceId(60_000 + i as u32), A).await.expect("remove"));
    }
    let read = settled_members(&*handles[1], Some(&cluster)).await;
    assert_eq!(ids(&read), [60_000, 60_001]);
    assert_eq!(read[1].workload, Workload::new(7, 100));
    assert!(handles[0].remove(InstanceId(60_000), A).await.expect("remove"));
    assert!(handles[0].remove(InstanceId(60_001), B).await.expect("remove"));
}
