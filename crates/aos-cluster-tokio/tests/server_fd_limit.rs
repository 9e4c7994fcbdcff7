//! Out of file descriptors: `accept` fails; the server backs off instead of
//! spinning, stops advertising itself, and recovers once descriptors free up.
//! (Alone in its binary: it lowers this process's descriptor limit.)

mod common;

use std::time::Duration;

use aos_cluster::InstanceId;
use common::*;
use tokio::net::TcpStream;
use tokio::time::Instant;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// Sets this process's soft descriptor limit (util-linux `prlimit`; no libc
/// call, so no unsafe code).
fn set_nofile(soft: usize, hard: usize) {
    let status = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={soft}:{hard}"))
        .status()
        .expect("prlimit runs");
    assert!(status.success(), "prlimit failed");
}

/// This process's (soft, hard) descriptor limits.
fn nofile() -> (usize, usize) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let parse = |f: &str| f.parse().unwrap_or(1 << 20); // "unlimited"
    (parse(fields[3]), parse(fields[4]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_descriptor_limit_the_server_backs_off_unadvertises_and_recovers() {
    let registry = MemRegistry::new();
    let config = aos_cluster_tokio::ServerConfig {
        first_frame_timeout: Duration::from_secs(10),
        accept_error_backoff: Duration::from_millis(100),
        accept_error_backoff_max: Duration::from_millis(400),
        ..server_config(1, 10)
    };
    let server = bind(config, &registry).await;
    let (addr, handle) = (server.local_addr(), server.handle());
    eventually("registered as accepting", || async { registry.row(InstanceId(1)).unwrap().0.accepting })
        .await;

    let (soft_before, hard) = nofile();
    set_nofile(open_fds() + 30, hard);

    // Connect until the process runs out: the last connections wait in the
    // listener's backlog while accept fails for want of a descriptor.
    let mut clients = Vec::new();
    for _ in 0..60 {
        match TcpStream::connect(addr).await {
            Ok(stream) => clients.push(stream),
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!clients.is_empty());
    eventually("accept fails and the instance saturates", || async {
        let s = stats(&handle).await;
        s.connections.accept_errors >= 1 && s.saturated
    })
    .await;
    eventually("the registry row says not accepting", || async {
        !registry.row(InstanceId(1)).unwrap().0.accepting
    })
    .await;
    // Backing off, not spinning: over one second at most a few retries.
    let errors_before = stats(&handle).await.connections.accept_errors;
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let retries = stats(&handle).await.connections.accept_errors - errors_before;
    assert!(retries <= 10, "{retries} accept errors in {:?}: no backoff", window.elapsed());

    // Descriptors free up: accept works again and the instance is advertised again.
    clients.truncate(clients.len() / 2);
    set_nofile(soft_before, hard);
    eventually("saturation clears", || async { !stats(&handle).await.saturated }).await;
    eventually("the registry row says accepting", || async {
        registry.row(InstanceId(1)).unwrap().0.accepting
    })
    .await;
    let mut client = RawClient::connect(addr).await;
    assert_eq!(client.workload(1).await.id, InstanceId(1));
}
