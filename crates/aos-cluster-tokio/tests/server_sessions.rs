//! The server's sessions: admission hands the connection to the application
//! with its bytes intact; membership at start and stop.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aos_cluster::wire::{Message, SessionOutcome};
use aos_cluster::InstanceId;
use aos_cluster_tokio::registry::{Incarnation, RegistryError};
use aos_cluster_tokio::server::{Server, ServerError};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An echo service that prefixes every chunk: proves the bytes went through
/// the application, not back from the protocol.
fn serve_echo(mut server: Server) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(accepted) = server.accept().await {
            let mut stream = accepted.stream;
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    let mut out = b"echo:".to_vec();
                    out.extend_from_slice(&buf[..n]);
                    if stream.write_all(&out).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

async fn read_exactly(client: &mut RawClient, n: usize) -> Vec<u8> {
    // Bytes after the session reply that the client's frame reader already holds come first.
    let mut out = std::mem::replace(
        &mut client.reader,
        aos_cluster_tokio::frames::FrameReader::new(Default::default(), PATIENCE),
    )
    .into_leftover();
    while out.len() < n {
        let mut buf = vec![0u8; n - out.len()];
        let got =
            tokio::time::timeout(PATIENCE, client.stream.read(&mut buf)).await.expect("in time").unwrap();
        assert!(got > 0, "closed after {} of {n} bytes: {:?}", out.len(), String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..got]);
    }
    out
}

#[tokio::test]
async fn application_bytes_round_trip_both_ways_and_dropping_ends_the_session() {
    let registry = MemRegistry::new();
    let server = bind(server_config(1, 10), &registry).await;
    let (addr, handle) = (server.local_addr(), server.handle());
    let app = serve_echo(server);

    let mut client = RawClient::connect(addr).await;
    // The session request and the first application bytes in one write: the
    // server must not lose what it read past the frame.
    let mut bytes = frame(&session_request(1));
    bytes.extend_from_slice(b"hello");
    client.stream.write_all(&bytes).await.unwrap();
    let reply = match client.recv().await {
        Message::SessionReply(reply) => reply,
        other => panic!("{other:?}"),
    };
    assert!(matches!(reply.outcome, SessionOutcome::Accepted { .. }), "{reply:?}");
    assert_eq!(read_exactly(&mut client, 10).await, b"echo:hello");
    client.stream.write_all(b"world, again").await.unwrap();
    assert_eq!(read_exactly(&mut client, 17).await, b"echo:world, again");
    assert_eq!(stats(&handle).await.workload.connected, 1);
    assert_eq!(stats(&handle).await.sessions.handed_over, 1);

    // The client leaves; the application reads EOF and drops its stream.
    drop(client);
    eventually("the session ended", || async { stats(&handle).await.workload.connected == 0 }).await;
    let s = stats(&handle).await;
    assert_eq!(s.instance.admission.sessions_accepted, 1);
    assert_eq!(s.connections.open, 0);
    handle.shutdown().await;
    tokio::time::timeout(PATIENCE, app).await.expect("accept loop ends after shutdown").unwrap();
}

#[tokio::test]
async fn many_session_requests_on_one_connection_make_one_session_and_the_rest_are_application_bytes() {
    let registry = MemRegistry::new();
    let mut server = bind(server_config(1, 10), &registry).await;
    let handle = server.handle();
    let mut client = RawClient::connect(server.local_addr()).await;
    let mut bytes = Vec::new();
    for id in 1..=5 {
        bytes.extend(frame(&session_request(id)));
    }
    let follow_up = bytes[frame(&session_request(1)).len()..].to_vec();
    client.stream.write_all(&bytes).await.unwrap();

    let accepted = tokio::time::timeout(PATIENCE, server.accept()).await.unwrap().unwrap();
    match client.recv().await {
        Message::SessionReply(reply) => {
            assert_eq!(reply.request_id, 1);
            assert_eq!(reply.outcome, SessionOutcome::Accepted { session_id: accepted.info.session_id });
        }
        other => panic!("{other:?}"),
    }
    // The session's socket has TCP keepalive (on by default), so a vanished client ends it.
    let socket = socket2::SockRef::from(accepted.stream.get_ref());
    assert!(socket.keepalive().unwrap());
    assert_eq!(socket.keepalive_time().unwrap(), Duration::from_secs(60));
    // After acceptance the protocol reads nothing more: the next four
    // requests reach the application as its bytes, in order.
    let mut stream = accepted.stream;
    let mut got = vec![0u8; follow_up.len()];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, follow_up);
    // And the client hears nothing more from the protocol.
    let mut extra = [0u8; 1];
    let quiet = tokio::time::timeout(Duration::from_millis(200), client.stream.read(&mut extra)).await;
    assert!(quiet.is_err(), "the protocol wrote again on a session's connection: {quiet:?}");

    let s = stats(&handle).await;
    assert_eq!(s.instance.admission.sessions_accepted, 1);
    assert_eq!(s.workload.connected, 1);
    drop(stream);
    eventually("the session ended", || async { stats(&handle).await.workload.connected == 0 }).await;
}

#[tokio::test]
async fn sessions_nobody_accepts_are_closed_once_the_queue_is_full() {
    let registry = MemRegistry::new();
    let config = aos_cluster_tokio::ServerConfig { accept_queue: 1, ..server_config(1, 10) };
    let mut server = bind(config, &registry).await;
    let handle = server.handle();
    let mut clients = Vec::new();
    for id in 1..=3 {
        let mut client = RawClient::connect(server.local_addr()).await;
        let reply = client.session(id).await;
        assert!(matches!(reply.outcome, SessionOutcome::Accepted { .. }));
        clients.push(client);
    }
    // The first waits in the queue; the other two were closed, not queued.
    for client in &mut clients[1..] {
        assert!(closed_within(&mut client.stream, PATIENCE).await, "an unqueued session stays open");
    }
    eventually("only the queued session counts", || async {
        let s = stats(&handle).await;
        s.workload.connected == 1 && s.sessions.dropped_queue_full == 2
    })
    .await;
    let accepted = server.accept().await.expect("the queued session");
    assert_eq!(accepted.info.peer_addr, clients[0].stream.local_addr().unwrap());
}

#[tokio::test]
async fn a_second_process_with_the_same_id_is_refused_at_bind() {
    let registry = MemRegistry::new();
    let first = bind(server_config(7, 10), &registry).await;
    let second = Server::bind(server_config(7, 10), registry.clone()).await;
    match second {
        Err(ServerError::Registry(RegistryError::IdInUse { id, .. })) => assert_eq!(id, InstanceId(7)),
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a duplicate id started"),
    }
    // The first one's row is untouched.
    let (row, incarnation) = registry.row(InstanceId(7)).unwrap();
    assert_eq!(incarnation, first.incarnation());
    assert_eq!(row.endpoint, *first.endpoint());
}

#[tokio::test]
async fn graceful_shutdown_removes_the_row_and_a_crash_leaves_it() {
    let registry = MemRegistry::new();
    let mut graceful = bind(server_config(1, 10), &registry).await;
    let crashed = bind(server_config(2, 10), &registry).await;
    assert!(registry.row(InstanceId(1)).is_some() && registry.row(InstanceId(2)).is_some());
    let crashed_addr = crashed.local_addr();
    let mut client = RawClient::connect(graceful.local_addr()).await;
    assert!(matches!(client.session(1).await.outcome, SessionOutcome::Accepted { .. }));
    let mut session = graceful.accept().await.unwrap().stream;

    tokio::time::timeout(PATIENCE, graceful.handle().shutdown()).await.unwrap();
    assert!(registry.row(InstanceId(1)).is_none(), "a graceful stop removes its row");
    // Its sessions end: the application's stream fails, and accept() is over.
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(PATIENCE, session.read(&mut buf)).await.unwrap();
    assert_eq!(read.unwrap_err().kind(), std::io::ErrorKind::ConnectionAborted);
    assert!(graceful.accept().await.is_none());

    tokio::time::timeout(PATIENCE, crashed.handle().crash()).await.unwrap();
    let (_, incarnation) = registry.row(InstanceId(2)).expect("a crash leaves the row");
    assert_eq!(incarnation, crashed.incarnation());
    // Both stopped listening.
    assert!(tokio::net::TcpStream::connect(crashed_addr).await.is_err());
    assert!(matches!(crashed.handle().stats().await, Err(ServerError::Stopped)));
}

#[tokio::test]
async fn a_superseded_row_is_never_overwritten() {
    let registry = MemRegistry::new();
    let server = bind(server_config(3, 10), &registry).await;
    let handle = server.handle();
    let other = Incarnation(server.incarnation().0.wrapping_add(1));
    registry.steal(InstanceId(3), other).await;
    eventually("the server notices", || async { stats(&handle).await.registry.registration_lost }).await;
    // Heartbeats have stopped: the row stays the other process's.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(registry.row(InstanceId(3)).unwrap().1, other);
    handle.shutdown().await;
    assert_eq!(registry.row(InstanceId(3)).unwrap().1, other, "shutdown must not remove another's row");
}

#[tokio::test]
async fn drain_and_max_sessions_commands_reach_the_machine_and_the_registry() {
    let registry = MemRegistry::new();
    let server = bind(server_config(4, 10), &registry).await;
    let handle = server.handle();
    handle.set_accepting(false).await.unwrap();
    eventually("the row says draining", || async { !registry.row(InstanceId(4)).unwrap().0.accepting }).await;
    let mut client = RawClient::connect(server.local_addr()).await;
    let reply = client.session(1).await;
    assert!(matches!(reply.outcome, SessionOutcome::Rejected(_)), "{reply:?}");
    handle.set_accepting(true).await.unwrap();
    handle.set_max_sessions(3).await.unwrap();
    assert!(matches!(handle.set_max_sessions(0).await, Err(ServerError::InvalidArgument(_))));
    eventually("the row has the new maximum", || async {
        let row = registry.row(InstanceId(4)).unwrap().0;
        row.accepting && row.workload.max_sessions == 3
    })
    .await;
}

/// While sessions arrive at every beat the row's figures move in steps of a
/// sixteenth of capacity (each a registry write that every balancer reads);
/// the beat after they stop publishes them exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_figures_reach_the_row_in_steps_and_settled_ones_exactly() {
    const SESSIONS: u32 = 60;
    let registry = MemRegistry::new();
    // Steps of 20 sessions; two sessions per 100 ms beat.
    let server = bind(server_config(5, 320), &registry).await;
    let (addr, handle) = (server.local_addr(), server.handle());
    let app = serve_echo(server);
    let watching = Arc::new(AtomicBool::new(true));
    let observer = tokio::spawn({
        let (registry, watching) = (registry.clone(), watching.clone());
        async move {
            let mut shown: Vec<u32> = Vec::new();
            while watching.load(Ordering::Relaxed) {
                let connected = registry.row(InstanceId(5)).map(|(row, _)| row.workload.connected);
                if let Some(connected) = connected.filter(|&c| shown.last() != Some(&c)) {
                    shown.push(connected);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            shown
        }
    });

    let mut clients = Vec::new();
    for request in 0..SESSIONS {
        let mut client = RawClient::connect(addr).await;
        assert!(matches!(client.session(u64::from(request)).await.outcome, SessionOutcome::Accepted { .. }));
        clients.push(client);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually("the row shows every session", || async {
        registry.row(InstanceId(5)).is_some_and(|(row, _)| row.workload.connected == SESSIONS)
    })
    .await;
    watching.store(false, Ordering::Relaxed);
    let shown = observer.await.unwrap();
    // One figure per beat would show some 30 values; steps show the first
    // session, a step every ten beats, and the settled figure (plus one
    // settled figure per pause of a beat in the arrivals on a busy machine).
    assert!(shown.len() <= 12, "the row showed {} figures: {shown:?}", shown.len());
    assert!(shown.windows(2).all(|pair| pair[0] < pair[1]), "figures only grew: {shown:?}");
    assert_eq!(shown.last(), Some(&SESSIONS));
    drop(clients);
    handle.shutdown().await;
    app.await.unwrap();
}
