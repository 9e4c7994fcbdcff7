//! Signals and restarts: SIGTERM drains, a restart after `kill -9` takes its
//! row over at once.

use super::*;

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_a_second_sigterm_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cluster.db").display());
    let path = write_config(dir.path(), 1, &db);
    let text =
        std::fs::read_to_string(&path).unwrap().replace("shutdown_grace = \"2s\"", "shutdown_grace = \"1h\"");
    std::fs::write(&path, text).unwrap();
    let mut one = start(&path);
    let mut session = aos_cluster_tokio::Client::new(client(&[&one])).connect().await.expect("a session");
    let term = |pid: u32| {
        let status = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
        assert!(status.success());
    };

    // The first SIGTERM drains: still running, not admitting, the session still served.
    term(one.child.id());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, stats) = http(one.admin, "GET", "/stats", "").await;
        if stats.contains("\"accepting\":false") {
            break;
        }
        assert!(Instant::now() < deadline, "never drained: {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(one.child.try_wait().unwrap().is_none(), "stopped without draining");
    let (status, body) = http(one.admin, "POST", "/drain", "off").await;
    assert_eq!(status, 409, "re-admitted while stopping: {body}");
    let refused = aos_cluster_tokio::Client::new(ClientConfig {
        retry: aos_cluster::RetryPolicy { max_rounds: 1, ..Default::default() },
        ..client(&[&one])
    })
    .connect()
    .await;
    assert!(refused.is_err(), "a new session was admitted while draining");
    session.write_all(b"still served").await.unwrap();
    let mut back = [0u8; 12];
    timeout(PATIENCE, session.read_exact(&mut back)).await.expect("echoed in time").unwrap();
    assert_eq!(&back, b"still served");

    // The second stops at once (the grace is an hour), row removed, exit 0.
    term(one.child.id());
    let deadline = Instant::now() + PATIENCE;
    let code = loop {
        if let Some(code) = one.child.try_wait().unwrap() {
            break code;
        }
        assert!(Instant::now() < deadline, "the second SIGTERM did not stop it");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code.code(), Some(0));
    let mut buf = [0u8; 1];
    let read = timeout(PATIENCE, session.read(&mut buf)).await.expect("the session was closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let rows = registry::open(&db)
        .await
        .unwrap()
        .snapshot(Some("ci"), MemberTiming::with_ttl(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(rows.is_empty(), "{rows:?}");
}

/// `kill -9`, then the supervisor's immediate restart: the new process finds
/// its id's row live (member_ttl is a minute), asks the row's endpoint, hears
/// nothing, and takes the row over at once. A second copy started beside a
/// live process is still refused.
async fn a_restart_after_kill_takes_the_row_over_at_once(db: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 41, db);
    let text =
        std::fs::read_to_string(&config).unwrap().replace("member_ttl = \"3s\"", "member_ttl = \"60s\"");
    std::fs::write(&config, text).unwrap();
    let mut first = start(&config);

    // Beside the live one: refused (exit 3), naming the live process.
    let duplicate = Command::new(BIN).arg("run").arg(&config).env("RUST_LOG", "error").output().unwrap();
    assert_eq!(duplicate.status.code(), Some(3), "{}", String::from_utf8_lossy(&duplicate.stderr));
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("in use"), "{duplicate:?}");

    first.child.kill().unwrap(); // SIGKILL: no graceful stop, the row stays
    first.child.wait().unwrap();
    #[allow(clippy::disallowed_methods)]
    let restarted_at = std::time::Instant::now();
    let second = start(&config);
    let took = restarted_at.elapsed();
    assert!(took < Duration::from_secs(15), "the restart waited {took:?} (member_ttl is 60 s)");
    let client = client(&[&second]);
    let session = timeout(PATIENCE, aos_cluster_tokio::Client::new(client).connect())
        .await
        .unwrap()
        .expect("a session");
    assert_eq!(session.info().instance(), Some(InstanceId(41)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_restart_after_kill_takes_the_row_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    a_restart_after_kill_takes_the_row_over_at_once(&format!(
        "sqlite://{}/registry.db",
        dir.path().display()
    ))
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_restart_after_kill_takes_the_row_over_at_once() {
    let Ok(url) = std::env::var("AOS_TEST_POSTGRES_URL") else { return };
    a_restart_after_kill_takes_the_row_over_at_once(&url).await;
}

#[cfg(all(feature = "etcd", aos_etcd))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_restart_after_kill_takes_the_row_over_at_once() {
    let Ok(url) = std::env::var("AOS_TEST_ETCD_URL") else { return };
    a_restart_after_kill_takes_the_row_over_at_once(&url).await;
}
