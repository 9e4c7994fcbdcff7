//! Two processes on one SQLite file.

use super::*;

/// Set in the child process of the test below: the parent's registry URL.
const CHILD_URL_VAR: &str = "AOS_TEST_CLUSTER_CHILD_URL";

/// Kills the child process if the test fails before it has ended.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Two real processes on one SQLite file (SQLite locks are per process, so
/// two handles in one process are not the whole story): the test binary runs
/// this same test again as a child, which serves instance 2 until its stdin
/// closes. The parent's instance ranks it, a client's session lands on it
/// and carries bytes, and the child's graceful stop removes its row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_in_two_processes_share_one_sqlite_file() {
    use std::io::{BufRead, Read};
    if let Ok(url) = std::env::var(CHILD_URL_VAR) {
        let instance = InstanceConfig {
            cluster: Some(CLUSTER.to_owned()),
            member_ttl: MEMBER_TTL,
            heartbeat_interval: Duration::from_millis(100),
            snapshot_ttl: Duration::from_millis(100),
            ..InstanceConfig::new(InstanceId(2), Endpoint::new("127.0.0.1", 1).unwrap(), 10)
        };
        let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), instance);
        let server =
            Server::bind(config, registry::open(&url).await.expect("child opens")).await.expect("binds");
        let handle = server.handle();
        println!("CHILD_ENDPOINT {}", server.endpoint());
        serve_upper(server);
        tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await.unwrap().unwrap();
        handle.shutdown().await;
        return;
    }
    bounded(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("registry.db").display());
        let registry = registry::open(&url).await.expect("registry opens");
        let instance = InstanceConfig {
            cluster: Some(CLUSTER.to_owned()),
            member_ttl: MEMBER_TTL,
            heartbeat_interval: Duration::from_millis(100),
            snapshot_ttl: Duration::from_millis(100),
            ..InstanceConfig::new(InstanceId(1), Endpoint::new("127.0.0.1", 1).unwrap(), 1)
        };
        let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), instance);
        let server = Server::bind(config, registry.clone()).await.expect("parent binds");
        let (parent_endpoint, parent) = (server.endpoint().clone(), server.handle());
        serve_upper(server);

        let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "processes::instances_in_two_processes_share_one_sqlite_file", "--nocapture"])
            .env(CHILD_URL_VAR, &url)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run the child");
        let mut child = ChildGuard(child);
        let stdout = child.0.stdout.take().unwrap();
        let (child_endpoint, stdout) = tokio::task::spawn_blocking(move || {
            let mut lines = std::io::BufReader::new(stdout);
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(endpoint) = line.trim().strip_prefix("CHILD_ENDPOINT ") {
                    return (Some(endpoint.parse::<Endpoint>().expect("an endpoint")), lines);
                }
                line.clear();
            }
            (None, lines)
        })
        .await
        .unwrap();
        let child_endpoint = child_endpoint.expect("the child printed its endpoint");
        assert_eq!(
            cluster_rows(&registry).await,
            vec![InstanceId(1), InstanceId(2)],
            "both rows in one file"
        );

        // The parent is the only seed; it ranks the child (more free sessions) first.
        let cluster = ClientConfig {
            cluster: Some(CLUSTER.to_owned()),
            ..ClientConfig::with_seeds(vec![parent_endpoint.clone()])
        };
        let mut session = seeded(&cluster, 1).connect().await.expect("a session");
        assert_eq!((session.instance(), session.endpoint()), (Some(InstanceId(2)), &child_endpoint));
        round_trip(&mut session, "across processes").await;
        drop(session);
        assert!(parent.stats().await.unwrap().instance.round.peer_reports >= 1, "the parent asked the child");

        // Closing its stdin stops the child gracefully: its row goes.
        drop(child.0.stdin.take());
        let status = tokio::task::spawn_blocking(move || child.0.wait()).await.unwrap().expect("child ends");
        let mut rest = String::new();
        let mut stdout = stdout;
        let _ = stdout.read_to_string(&mut rest);
        assert!(status.success(), "the child failed: {rest}");
        assert!(rest.contains("1 passed"), "the child ran the test: {rest}");
        assert_eq!(cluster_rows(&registry).await, vec![InstanceId(1)]);
        parent.shutdown().await;
        assert!(cluster_rows(&registry).await.is_empty());
    })
    .await;
}
