//! A graceful stop: the server drains (new sessions refused with `Draining`,
//! `accepting = false` advertised), open sessions keep working until they
//! end by themselves or the grace passes, then the rest are closed and the
//! registry row is removed.

mod common;

use std::time::Duration;

use aos_cluster::wire::{RejectReason, SessionOutcome};
use aos_cluster::InstanceId;
use aos_cluster_tokio::server::{Server, ServerError};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, Instant};

/// An echo service for every admitted session.
fn serve_echo(mut server: Server) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(accepted) = server.accept().await {
            let mut stream = accepted.stream;
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

/// A session on a fresh connection: the client, its stream now the application's.
async fn open_session(addr: std::net::SocketAddr, request_id: u64) -> RawClient {
    let mut client = RawClient::connect(addr).await;
    let reply = client.session(request_id).await;
    assert!(matches!(reply.outcome, SessionOutcome::Accepted { .. }), "{reply:?}");
    client
}

/// Sends `bytes` on a session and reads them back.
async fn echo(client: &mut RawClient, bytes: &[u8]) {
    client.stream.write_all(bytes).await.expect("the session still takes bytes");
    let mut back = vec![0u8; bytes.len()];
    timeout(PATIENCE, client.stream.read_exact(&mut back)).await.expect("in time").expect("echoed");
    assert_eq!(back, bytes);
}

#[tokio::test]
async fn an_open_session_keeps_working_through_the_drain_and_its_end_stops_the_server() {
    let registry = MemRegistry::new();
    let server = bind(server_config(1, 10), &registry).await;
    let (addr, handle) = (server.local_addr(), server.handle());
    let _app = serve_echo(server);
    let mut session = open_session(addr, 1).await;
    echo(&mut session, b"before").await;

    let started = Instant::now();
    let stopping = tokio::spawn({
        let handle = handle.clone();
        async move { handle.shutdown_graceful(Duration::from_secs(60)).await }
    });
    eventually("the drain is advertised", || async {
        !stats(&handle).await.accepting
            && registry.row(InstanceId(1)).is_some_and(|(heartbeat, _)| !heartbeat.accepting)
    })
    .await;

    // New sessions are refused while the old one is served.
    let mut late = RawClient::connect(addr).await;
    let reply = late.session(2).await;
    assert_eq!(reply.outcome, SessionOutcome::Rejected(RejectReason::Draining));
    echo(&mut session, b"during the drain").await;
    // Re-admitting is not possible while draining to stop.
    assert!(matches!(handle.set_accepting(true).await, Err(ServerError::Stopping)));
    assert!(!stats(&handle).await.accepting);
    assert!(!handle.is_stopped());
    assert!(registry.row(InstanceId(1)).is_some(), "the row stays while draining");

    // The session ends by itself: the server stops at once, long before the grace.
    drop(session);
    timeout(PATIENCE, stopping).await.expect("stopped once the session ended").unwrap();
    assert!(started.elapsed() < Duration::from_secs(30), "waited for the grace: {:?}", started.elapsed());
    assert!(handle.is_stopped());
    assert!(registry.row(InstanceId(1)).is_none(), "the row is removed");
    drop(late);
}

#[tokio::test]
async fn a_session_that_never_ends_is_closed_when_the_grace_is_over() {
    let registry = MemRegistry::new();
    let server = bind(server_config(2, 10), &registry).await;
    let (addr, handle) = (server.local_addr(), server.handle());
    let _app = serve_echo(server);
    let mut session = open_session(addr, 1).await;

    let grace = Duration::from_millis(600);
    let started = Instant::now();
    let stopping = tokio::spawn({
        let handle = handle.clone();
        async move { handle.shutdown_graceful(grace).await }
    });
    // It is served, not cut off, while the grace lasts.
    echo(&mut session, b"still here").await;
    assert!(closed_within(&mut session.stream, PATIENCE).await, "the session was not closed");
    assert!(started.elapsed() >= grace, "closed before the grace was over: {:?}", started.elapsed());
    timeout(PATIENCE, stopping).await.expect("the stop completes").unwrap();
    assert!(registry.row(InstanceId(2)).is_none(), "the row is removed");
}

#[tokio::test]
async fn a_plain_shutdown_during_the_drain_stops_at_once() {
    let registry = MemRegistry::new();
    let server = bind(server_config(3, 10), &registry).await;
    let (addr, handle) = (server.local_addr(), server.handle());
    let _app = serve_echo(server);
    let mut session = open_session(addr, 1).await;
    let stopping = tokio::spawn({
        let handle = handle.clone();
        async move { handle.shutdown_graceful(Duration::from_secs(3600)).await }
    });
    eventually("draining", || async { !stats(&handle).await.accepting }).await;
    echo(&mut session, b"x").await;

    timeout(PATIENCE, handle.shutdown()).await.expect("the second stop does not wait for the grace");
    assert!(closed_within(&mut session.stream, PATIENCE).await);
    timeout(PATIENCE, stopping).await.expect("the drain's caller sees the stop too").unwrap();
    assert!(registry.row(InstanceId(3)).is_none());
}

#[tokio::test]
async fn stopped_completes_however_the_server_stops_and_an_idle_drain_stops_at_once() {
    let registry = MemRegistry::new();
    // No session open: the drain has nothing to wait for.
    let server = bind(server_config(4, 10), &registry).await;
    let handle = server.handle();
    let stopped = handle.stopped();
    timeout(PATIENCE, handle.shutdown_graceful(Duration::from_secs(3600))).await.expect("no wait");
    timeout(PATIENCE, stopped).await.expect("stopped() completes");
    assert!(registry.row(InstanceId(4)).is_none());
    // Awaiting a stopped server (and draining it again) returns at once.
    timeout(PATIENCE, handle.stopped()).await.unwrap();
    timeout(PATIENCE, handle.shutdown_graceful(Duration::from_secs(3600))).await.unwrap();
    drop(server);

    // A crash completes it too, and leaves the row.
    let server = bind(server_config(5, 10), &registry).await;
    let handle = server.handle();
    let stopped = tokio::spawn(handle.stopped());
    assert!(!stopped.is_finished());
    handle.crash().await;
    timeout(PATIENCE, stopped).await.unwrap().unwrap();
    assert!(registry.row(InstanceId(5)).is_some());
}
