//! The server on the open internet: idle and half-sent connections, the
//! connection caps and saturation.

mod common;

use std::time::Duration;

use aos_cluster::wire::PROTOCOL_VERSION;
use aos_cluster::InstanceId;
use aos_cluster_tokio::ServerConfig;
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

#[tokio::test]
async fn idle_and_half_frame_connections_are_closed_within_first_frame_timeout() {
    let registry = MemRegistry::new();
    let server = bind(server_config(1, 10), &registry).await; // first_frame_timeout 300 ms
    let (addr, handle) = (server.local_addr(), server.handle());
    let started = Instant::now();
    let mut idle = Vec::new();
    let mut half = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(addr).await.unwrap());
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // A header announcing 60 000 bytes, then a trickle that never completes it.
        let mut bytes = vec![PROTOCOL_VERSION, 1];
        bytes.extend_from_slice(&60_000u32.to_be_bytes());
        bytes.extend_from_slice(&[0; 100]);
        stream.write_all(&bytes).await.unwrap();
        half.push(stream);
    }
    assert_eq!(stats(&handle).await.connections.open, 40);
    let slack = Duration::from_millis(1500);
    for stream in idle.iter_mut().chain(half.iter_mut()) {
        assert!(closed_within(stream, slack).await, "a connection outlived first_frame_timeout");
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(250), "closed before the deadline: {elapsed:?}");
    eventually("all counted and freed", || async {
        let s = stats(&handle).await;
        s.connections.closed_first_frame_timeout == 40 && s.connections.open == 0
    })
    .await;
}

#[tokio::test]
async fn a_slow_loris_trickling_one_frame_is_closed_even_while_sending() {
    let registry = MemRegistry::new();
    let server = bind(server_config(1, 10), &registry).await;
    let handle = server.handle();
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut header = vec![PROTOCOL_VERSION, 1];
    header.extend_from_slice(&1000u32.to_be_bytes());
    stream.write_all(&header).await.unwrap();
    // One byte every 50 ms: never idle, never complete.
    let started = Instant::now();
    let mut closed = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if stream.write_all(&[0]).await.is_err() {
            closed = true;
            break;
        }
    }
    if !closed {
        closed = closed_within(&mut stream, Duration::from_millis(500)).await;
    }
    assert!(closed, "a trickled frame kept the connection open");
    assert!(started.elapsed() < Duration::from_millis(2000));
    eventually("counted", || async { stats(&handle).await.connections.closed_first_frame_timeout == 1 })
        .await;
}

#[tokio::test]
async fn a_connection_that_goes_quiet_after_a_request_is_closed_by_idle_timeout() {
    let registry = MemRegistry::new();
    let server = bind(server_config(1, 10), &registry).await; // idle_timeout 600 ms
    let handle = server.handle();
    let mut client = RawClient::connect(server.local_addr()).await;
    let report = client.workload(9).await;
    assert_eq!(report.id, InstanceId(1));
    let quiet_since = Instant::now();
    assert!(closed_within(&mut client.stream, Duration::from_secs(2)).await);
    assert!(
        quiet_since.elapsed() >= Duration::from_millis(500),
        "closed too early: {:?}",
        quiet_since.elapsed()
    );
    eventually("counted as idle", || async {
        let s = stats(&handle).await;
        s.connections.closed_idle_timeout == 1 && s.connections.closed_first_frame_timeout == 0
    })
    .await;
}

#[tokio::test]
async fn garbage_and_replies_sent_to_the_server_close_the_connection() {
    let registry = MemRegistry::new();
    let server = bind(server_config(1, 10), &registry).await;
    let handle = server.handle();
    let mut wrong_version = TcpStream::connect(server.local_addr()).await.unwrap();
    wrong_version.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(closed_within(&mut wrong_version, PATIENCE).await);
    let mut oversized = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut header = vec![PROTOCOL_VERSION, 1];
    header.extend_from_slice(&u32::MAX.to_be_bytes());
    oversized.write_all(&header).await.unwrap();
    assert!(closed_within(&mut oversized, PATIENCE).await);
    let mut reply = RawClient::connect(server.local_addr()).await;
    let report = aos_cluster::wire::Message::WorkloadReport(client_report());
    reply.send(&report).await;
    assert!(closed_within(&mut reply.stream, PATIENCE).await);
    eventually("counted", || async { stats(&handle).await.connections.malformed_frames == 3 }).await;
}

fn client_report() -> aos_cluster::wire::WorkloadReport {
    aos_cluster::wire::WorkloadReport {
        query_id: aos_cluster::wire::QueryId(1),
        id: InstanceId(5),
        role: aos_cluster::Role::Serving,
        accepting: true,
        workload: aos_cluster::Workload::new(0, 1),
    }
}

#[tokio::test]
async fn the_per_ip_cap_refuses_at_once() {
    let registry = MemRegistry::new();
    let config = ServerConfig {
        max_connections_per_ip: 3,
        first_frame_timeout: Duration::from_secs(5),
        ..server_config(1, 10)
    };
    let server = bind(config, &registry).await;
    let handle = server.handle();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(server.local_addr()).await.unwrap());
    }
    let mut refused = TcpStream::connect(server.local_addr()).await.unwrap();
    assert!(closed_within(&mut refused, Duration::from_millis(500)).await, "not refused at once");
    let s = stats(&handle).await;
    assert_eq!((s.connections.refused_per_ip, s.connections.open), (1, 3));
    assert!(!s.saturated, "one address at its cap does not saturate the instance");
    drop(held.pop());
    eventually("a slot is free again", || async { stats(&handle).await.connections.open == 2 }).await;
    let mut client = RawClient::connect(server.local_addr()).await;
    assert_eq!(client.workload(1).await.id, InstanceId(1));
}

#[tokio::test]
async fn at_the_connection_cap_new_connections_are_refused_the_instance_leaves_rankings_and_comes_back() {
    let registry = MemRegistry::new();
    let capped_config = ServerConfig {
        max_connections: 6,
        first_frame_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        ..server_config(1, 10)
    };
    let capped = bind(capped_config, &registry).await;
    let other = bind(server_config(2, 10), &registry).await;
    let capped_handle = capped.handle();
    let probe = other.local_addr();
    eventually("both instances ranked", || async { ids(&ranking_at(probe, 1).await).len() == 2 }).await;

    // Fill the capped instance with connections that send nothing.
    let mut held = Vec::new();
    while held.len() < 6 {
        held.push(TcpStream::connect(capped.local_addr()).await.unwrap());
        // The other instance's peer link to it counts too, so stop at the cap.
        if stats(&capped_handle).await.connections.open >= 6 {
            break;
        }
    }
    let refused_at = Instant::now();
    let mut refused = TcpStream::connect(capped.local_addr()).await.unwrap();
    assert!(closed_within(&mut refused, Duration::from_millis(500)).await, "not refused at once");
    assert!(refused_at.elapsed() < Duration::from_millis(500));
    let s = stats(&capped_handle).await;
    assert!(s.saturated && s.connections.refused_at_cap >= 1, "{s:?}");
    assert!(s.accepting, "saturation leaves the admin setting alone");
    eventually("the registry row says not accepting", || async {
        !registry.row(InstanceId(1)).unwrap().0.accepting
    })
    .await;
    // The other instance keeps serving, and ranks without the capped one.
    eventually("the capped instance left the ranking", || async {
        ids(&ranking_at(probe, 2).await) == vec![2]
    })
    .await;

    // Below the cap again: advertised and ranked again.
    held.clear();
    eventually("the row says accepting again", || async { registry.row(InstanceId(1)).unwrap().0.accepting })
        .await;
    assert!(!stats(&capped_handle).await.saturated);
    eventually("the capped instance is back in the ranking", || async {
        let mut ranked = ids(&ranking_at(probe, 3).await);
        ranked.sort();
        ranked == vec![1, 2]
    })
    .await;
}
