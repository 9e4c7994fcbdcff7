//! The `aos-instance` binary end to end: three processes on one SQLite
//! registry over loopback, scraped and driven through their admin endpoints
//! with plain HTTP/1.1 requests, and clients that avoid the drained one.

use aos_cluster_tokio::registry::MemberTiming;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aos_cluster::{ClientConfig, Endpoint, InstanceId};
use aos_cluster_tokio::registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_aos-instance");
/// The longest any wait below may take (a loaded CI machine included).
const PATIENCE: Duration = Duration::from_secs(30);

/// A running `aos-instance`; killed if the test ends without stopping it.
struct Instance {
    child: Child,
    listen: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, id: u32, db: &str) -> std::path::PathBuf {
    let path = dir.join(format!("instance-{id}.toml"));
    let text = format!(
        r#"registry = "{db}"
admin = "127.0.0.1:0"
listen = "127.0.0.1:0"
shutdown_grace = "2s"

[instance]
id = {id}
endpoint = "127.0.0.1:1"
cluster = "ci"
max_sessions = 100
member_ttl = "3s"
heartbeat_interval = "200ms"
snapshot_ttl = "100ms"
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts the binary and reads the line that says where it listens.
fn start(config: &Path) -> Instance {
    start_with(config, &[])
}

/// [`start`] with extra environment variables.
fn start_with(config: &Path, env: &[(&str, &str)]) -> Instance {
    let mut child = Command::new(BIN)
        .args(["run"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    // The read ends at the line or at EOF (the process exited): bounded by the process.
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let field = |name: &str| -> SocketAddr {
        let value = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"));
        value.trim_start_matches("http://").parse().unwrap()
    };
    let (listen, admin) = (field("listen="), field("admin="));
    Instance { child, listen, admin }
}

/// One HTTP/1.1 request; the status code and the body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    http_as(addr, &format!("Host: {addr}\r\n"), method, path, body).await
}

/// [`http`] with `headers` (each ending in CRLF) in place of the `Host` line.
async fn http_as(addr: SocketAddr, headers: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\n{headers}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        String::from_utf8(response).unwrap()
    };
    let response = timeout(Duration::from_secs(10), exchange).await.expect("the admin endpoint answers");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The value of an unlabelled metric line `name value`.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn client(instances: &[&Instance]) -> ClientConfig {
    let seeds = instances.iter().map(|i| Endpoint::new("127.0.0.1", i.listen.port()).unwrap()).collect();
    ClientConfig {
        cluster: Some("ci".into()),
        handshake_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(3),
        ..ClientConfig::with_seeds(seeds)
    }
}

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

#[test]
fn check_prints_the_effective_configuration_and_names_the_line_of_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), 1, "sqlite::memory:");
    let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    for needle in ["idle_timeout = \"1m\"", "admin = \"127.0.0.1:0\"", "herd_control = true"] {
        assert!(printed.contains(needle), "{needle} missing from\n{printed}");
    }

    let text =
        std::fs::read_to_string(&path).unwrap().replace("snapshot_ttl = \"100ms\"", "snapshot_ttl = \"1h\"");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let message = String::from_utf8(out.stderr).unwrap();
    let expected = format!(
        "{}:13: instance: `snapshot_ttl` (1h) must be shorter than `member_ttl` (3s)",
        path.display()
    );
    assert!(message.starts_with(&expected), "{message}");

    let out = Command::new(BIN).args(["run", "/nonexistent/instance.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().starts_with("/nonexistent/instance.toml: cannot read"));

    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8(out.stdout).unwrap().contains("Exit codes"));
    let out = Command::new(BIN).arg("rn").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `aos-instance check FILE` with `text` as the file: the exit code and stderr.
fn check(dir: &Path, name: &str, text: &str) -> (Option<i32>, String) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn check_and_run_name_every_unknown_setting_and_wrong_type_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(write_config(dir.path(), 1, "sqlite::memory:")).unwrap();
    // Each typo or wrong type alone: refused, naming file, line and setting.
    let cases = [
        (
            "typo.toml",
            good.replace("shutdown_grace", "idle_timout"),
            ":4: idle_timout: unknown setting `idle_timout`",
        ),
        (
            "admn.toml",
            good.replace("admin =", "admn ="),
            ":2: admn: unknown setting `admn` (did you mean `admin`?)",
        ),
        ("table.toml", format!("{good}\n[instanse]\nid = 1\n"), ":15: instanse: unknown setting `instanse`"),
        (
            "nested.toml",
            good.replace("max_sessions = 100", "max_sessions = 100\nlimits = { max_memberz = 3 }"),
            ":11: instance.limits.max_memberz: unknown setting",
        ),
        (
            "type.toml",
            good.replace("max_sessions = 100", "max_sessions = \"100\""),
            ":10: instance.max_sessions: invalid type: string \"100\", expected u32",
        ),
        ("id.toml", good.replace("id = 1", "id = \"one\""), ":7: instance.id: invalid type: string \"one\""),
        (
            "listen.toml",
            good.replace("listen = \"127.0.0.1:0\"", "listen = \"localhost:2712\""),
            ":3: listen: invalid socket address syntax",
        ),
    ];
    for (name, text, expected) in &cases {
        let (code, stderr) = check(dir.path(), name, text);
        assert_eq!(code, Some(2), "{name} accepted: {stderr}");
        let path = dir.path().join(name);
        assert!(stderr.starts_with(&format!("{}{expected}", path.display())), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: one problem, one line: {stderr}");
    }

    // All of them at once: every one reported in one run, by line, by `check` and `run` alike.
    let all = good
        .replace("admin =", "admn =")
        .replace("shutdown_grace", "idle_timout")
        .replace("listen = \"127.0.0.1:0\"", "listen = \"localhost:2712\"")
        .replace("id = 1", "id = \"one\"")
        .replace("max_sessions = 100", "max_sessions = \"100\"")
        + "\n[instanse]\nid = 1\n";
    let path = dir.path().join("all.toml");
    std::fs::write(&path, &all).unwrap();
    for command in ["check", "run"] {
        let out = Command::new(BIN).arg(command).arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<&str> = stderr.lines().collect();
        let expected = [
            ":2: admn",
            ":3: listen",
            ":4: idle_timout",
            ":7: instance.id",
            ":10: instance.max_sessions",
            ":15: instanse",
        ];
        assert_eq!(lines.len(), expected.len(), "{command}: {stderr}");
        for (line, part) in lines.iter().zip(expected) {
            assert!(
                line.starts_with(&format!("{}{part}", path.display())),
                "{command}: {line:?} in\n{stderr}"
            );
        }
        assert!(out.stdout.is_empty(), "{command} printed on stdout");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_come_first_on_stderr_from_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cluster.db").display());
    let text = std::fs::read_to_string(write_config(dir.path(), 1, &db)).unwrap();
    let path = dir.path().join("open.toml");
    let text = text
        .replace("admin = \"127.0.0.1:0\"", "admin = \"0.0.0.0:0\"\nadmin_token = \"env:AOS_TEST_TOKEN\"");
    std::fs::write(&path, text).unwrap();
    let warning = format!("{}: warning: `admin` 0.0.0.0:0 is not on loopback", path.display());

    let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8(out.stderr).unwrap().starts_with(&warning));

    // `run`: the first line on stderr, before any log line (info on).
    let mut child = Command::new(BIN)
        .arg("run")
        .arg(&path)
        .env("RUST_LOG", "info")
        .env("AOS_TEST_TOKEN", "t0ken")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut started = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut started).unwrap();
    assert!(started.starts_with("aos-instance listen="), "{started:?}");
    let stderr = child.stderr.take().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut first).unwrap();
    assert!(first.starts_with(&warning), "{first:?}");
}

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
