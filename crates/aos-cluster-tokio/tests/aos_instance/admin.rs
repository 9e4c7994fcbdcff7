//! The admin endpoint: scraped, drained and shut down over HTTP, closed to
//! web pages, and guarded by the bearer token.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_are_scraped_drained_and_shut_down_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cluster.db").display());
    let configs: Vec<_> = (1..=3).map(|id| write_config(dir.path(), id, &db)).collect();
    // One at a time: the first creates the database's table.
    let one = start(&configs[0]);
    let two = start(&configs[1]);
    let mut three = start(&configs[2]);
    let all = [&one, &two, &three];
    let port_of = |id: InstanceId| match id.0 {
        1 => one.listen.port(),
        2 => two.listen.port(),
        3 => three.listen.port(),
        other => panic!("unknown instance {other}"),
    };

    // Sessions spread over all three while all admit (held open, so the load rises).
    let mut held = Vec::new();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + PATIENCE;
    while seen.len() < 3 {
        assert!(Instant::now() < deadline && held.len() < 60, "sessions never reached all three: {seen:?}");
        let session = aos_cluster_tokio::Client::new(client(&all)).connect().await.expect("a session");
        seen.insert(session.info().instance().expect("a ranked session names its instance"));
        held.push(session);
    }

    // Every instance is scraped; the handshakes they ranked were timed.
    let mut ranked = 0.0;
    for instance in all {
        let (status, text) = http(instance.admin, "GET", "/metrics", "").await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(metric(&text, "aos_max_sessions"), 100.0);
        assert_eq!(metric(&text, "aos_accepting"), 1.0);
        assert!(metric(&text, "aos_connected") >= 1.0, "{text}");
        assert_eq!(metric(&text, "aos_handshakes_total"), metric(&text, "aos_time_to_rank_seconds_count"));
        for family in ["aos_sessions_rejected_total{reason=", "aos_connections_refused_total{limit=", "# EOF"]
        {
            assert!(text.contains(family), "{family} missing from\n{text}");
        }
        // One that ranked has read the registry, and recently (-1 is "never").
        let age = metric(&text, "aos_registry_snapshot_age_seconds");
        if metric(&text, "aos_handshakes_total") > 0.0 {
            assert!((0.0..60.0).contains(&age), "snapshot age {age}");
        } else {
            assert!(age == -1.0 || (0.0..60.0).contains(&age), "snapshot age {age}");
        }
        let (count, sum) =
            (metric(&text, "aos_time_to_rank_seconds_count"), metric(&text, "aos_time_to_rank_seconds_sum"));
        if count > 0.0 {
            eprintln!(
                "{}: {count} handshakes, mean time to rank {:.3} ms",
                instance.admin,
                sum / count * 1e3
            );
        }
        ranked += count;
    }
    assert!(ranked >= held.len() as f64, "{ranked} timed rankings for {} sessions", held.len());

    // Drain the third with a POST; its own figures say so at once.
    let (status, body) = http(three.admin, "POST", "/drain", "on").await;
    assert_eq!((status, body.as_str()), (200, "draining: true\n"));
    let (_, stats) = http(three.admin, "GET", "/stats", "").await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["accepting"], false, "{stats}");
    assert_eq!(stats["id"], 3);
    let (_, text) = http(three.admin, "GET", "/metrics", "").await;
    assert_eq!(metric(&text, "aos_accepting"), 0.0);

    // New clients, whichever seed they walk first, never land on it.
    let drained_port = three.listen.port();
    for i in 0..12 {
        let mut seeds = all.to_vec();
        seeds.rotate_left(i % 3);
        let session = aos_cluster_tokio::Client::new(client(&seeds)).connect().await.expect("a session");
        let id = session.info().instance().unwrap();
        assert_ne!(port_of(id), drained_port, "client {i} went to the drained instance");
        held.push(session);
    }

    // Bad admin requests are refused plainly.
    assert_eq!(http(three.admin, "POST", "/drain", "maybe").await.0, 400);
    assert_eq!(http(three.admin, "POST", "/max-sessions", "0").await.0, 400);
    assert_eq!(http(three.admin, "GET", "/nowhere", "").await.0, 404);
    let (status, _) = http(two.admin, "POST", "/max-sessions", "7").await;
    assert_eq!(status, 200);
    let (_, text) = http(two.admin, "GET", "/metrics", "").await;
    assert_eq!(metric(&text, "aos_max_sessions"), 7.0);

    // A graceful shutdown over HTTP: the process exits 0 and its row is gone.
    let (status, _) = http(three.admin, "POST", "/shutdown", "").await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + PATIENCE;
    let code = loop {
        if let Some(code) = three.child.try_wait().unwrap() {
            break code;
        }
        assert!(Instant::now() < deadline, "the instance did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code.code(), Some(0));
    let registry = registry::open(&db).await.unwrap();
    let ids: BTreeSet<InstanceId> = registry
        .snapshot(Some("ci"), MemberTiming::with_ttl(Duration::from_secs(3600)))
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, BTreeSet::from([InstanceId(1), InstanceId(2)]));

    // SIGTERM stops as gracefully as the admin request does.
    #[cfg(unix)]
    {
        let mut two = two;
        let status = Command::new("kill").arg("-TERM").arg(two.child.id().to_string()).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + PATIENCE;
        let code = loop {
            if let Some(code) = two.child.try_wait().unwrap() {
                break code;
            }
            assert!(Instant::now() < deadline, "SIGTERM did not stop the instance");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(code.code(), Some(0));
        let rows =
            registry.snapshot(Some("ci"), MemberTiming::with_ttl(Duration::from_secs(3600))).await.unwrap();
        assert_eq!(rows.iter().map(|m| m.id).collect::<Vec<_>>(), vec![InstanceId(1)]);
    }
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_page_cannot_drive_the_admin_endpoint() {
    // What a page in the operator's browser sends: a simple cross-origin
    // POST (no preflight), or, after DNS rebinding, a request to its own
    // name that resolves to 127.0.0.1.
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cluster.db").display());
    let one = start(&write_config(dir.path(), 1, &db));
    let admin = one.admin;
    let port = admin.port();
    let foreign = [
        format!("Host: {admin}\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\n"),
        format!("Host: {admin}\r\nOrigin: null\r\n"),
        format!("Host: {admin}\r\nOrigin: https://{admin}\r\n"),
        format!("Host: evil.example:{port}\r\n"),
        "Content-Type: text/plain\r\n".to_owned(),
    ];
    for headers in &foreign {
        let (status, body) = http_as(admin, headers, "POST", "/drain", "on").await;
        assert_eq!(status, 403, "{headers:?}: {body}");
        let (status, _) = http_as(admin, headers, "GET", "/stats", "").await;
        assert_eq!(status, 403, "{headers:?}");
    }
    let (_, stats) = http(admin, "GET", "/stats", "").await;
    assert!(stats.contains("\"accepting\":true"), "nothing was drained: {stats}");
    // Its own origin, and `localhost` on loopback, are the endpoint's own.
    let own = [
        format!("Host: {admin}\r\nOrigin: http://{admin}\r\n"),
        format!("Host: localhost:{port}\r\nOrigin: http://localhost:{port}\r\n"),
    ];
    for headers in &own {
        let (status, body) = http_as(admin, headers, "GET", "/stats", "").await;
        assert_eq!(status, 200, "{headers:?}: {body}");
    }
    let (status, _) = http_as(admin, &own[0], "POST", "/drain", "on").await;
    assert_eq!(status, 200);
    let (_, stats) = http(admin, "GET", "/stats", "").await;
    assert!(stats.contains("\"accepting\":false"), "drained: {stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_admin_calls_need_the_bearer_token_and_off_loopback_one_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cluster.db").display());
    // Off loopback without a token: refused before anything starts, naming the line.
    let open = dir.path().join("open.toml");
    let text = std::fs::read_to_string(write_config(dir.path(), 1, &db)).unwrap();
    std::fs::write(&open, text.replace("admin = \"127.0.0.1:0\"", "admin = \"0.0.0.0:0\"")).unwrap();
    for command in ["check", "run"] {
        let out = Command::new(BIN).arg(command).arg(&open).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        assert!(stderr.contains("open.toml:2:") && stderr.contains("admin_token"), "{command}: {stderr}");
    }
    // With a token (from the environment): reads stay open, every POST needs it.
    let guarded = dir.path().join("guarded.toml");
    let text = std::fs::read_to_string(write_config(dir.path(), 2, &db)).unwrap();
    std::fs::write(&guarded, format!("admin_token = \"env:AOS_TEST_ADMIN_TOKEN\"\n{text}")).unwrap();
    let one = start_with(&guarded, &[("AOS_TEST_ADMIN_TOKEN", "s3cret-token")]);
    let admin = one.admin;
    let host = format!("Host: {admin}\r\n");
    for wrong in [
        "",
        "Authorization: Bearer s3cret-tokeN\r\n",
        "Authorization: Bearer s3cret\r\n",
        "Authorization: s3cret-token\r\n",
    ] {
        for path in ["/drain", "/max-sessions", "/shutdown"] {
            let (status, body) = http_as(admin, &format!("{host}{wrong}"), "POST", path, "on").await;
            assert_eq!(status, 401, "{path} with {wrong:?}: {body}");
        }
    }
    let (status, stats) = http(admin, "GET", "/stats", "").await;
    assert_eq!(status, 200);
    assert!(stats.contains("\"accepting\":true"), "nothing was drained: {stats}");
    let right = format!("{host}Authorization: Bearer s3cret-token\r\n");
    let (status, body) = http_as(admin, &right, "POST", "/drain", "on").await;
    assert_eq!(status, 200, "{body}");
    let (_, stats) = http(admin, "GET", "/stats", "").await;
    assert!(stats.contains("\"accepting\":false"), "drained: {stats}");
}
