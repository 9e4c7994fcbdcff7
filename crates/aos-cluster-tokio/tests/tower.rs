//! The `tower` feature's edges: a connector refuses a bad configuration and
//! reports every attempt when nothing answers; `Server::incoming` yields
//! admitted sessions, ends with the server, and stops it when dropped;
//! garbage on a hyper-served session ends that session and frees its slot.
//! Every wait is bounded.

use aos_cluster_tokio::registry::MemberTiming;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aos_cluster_tokio::registry::{MemoryRegistry, Registry};
use aos_cluster_tokio::tower::BalancedConnector;
use aos_cluster_tokio::{
    AppStream, Client, ClientConfig, ConnectError, Endpoint, Incoming, InstanceConfig, InstanceId,
    RetryPolicy, Server, ServerConfig,
};
use futures_core::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_service::Service;

const CLUSTER: &str = "tower-test";
const PATIENCE: Duration = Duration::from_secs(5);

/// A hang is a failure, not a stuck CI job.
async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), test).await.expect("test did not finish within 60 s")
}

async fn start(registry: &MemoryRegistry, id: u32, max_sessions: u32) -> Server {
    let instance = InstanceConfig {
        cluster: Some(CLUSTER.into()),
        ..InstanceConfig::new(InstanceId(id), Endpoint::new("127.0.0.1", 1).unwrap(), max_sessions)
    };
    let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), instance);
    Server::bind(config, Arc::new(registry.clone())).await.expect("server starts")
}

fn client_config(seeds: Vec<Endpoint>) -> ClientConfig {
    ClientConfig {
        cluster: Some(CLUSTER.into()),
        connect_timeout: Duration::from_millis(500),
        handshake_timeout: Duration::from_millis(500),
        retry: RetryPolicy { base: Duration::from_millis(10), cap: Duration::from_millis(50), max_rounds: 2 },
        ..ClientConfig::with_seeds(seeds)
    }
}

async fn next(incoming: &mut Incoming) -> Option<AppStream> {
    let item = tokio::time::timeout(PATIENCE, poll_fn(|cx| Pin::new(&mut *incoming).poll_next(cx)))
        .await
        .expect("the incoming stream answers in time");
    item.map(|stream| stream.unwrap_or_else(|never| match never {}))
}

#[test]
fn a_connector_is_not_built_from_an_invalid_configuration() {
    let error =
        BalancedConnector::new(Client::new(ClientConfig::with_seeds(Vec::new()))).expect_err("no seeds");
    assert!(matches!(error, ConnectError::Config(_)), "{error:?}");
    assert!(error.to_string().contains("seed"), "the message names the problem: {error}");
}

#[tokio::test]
async fn a_call_fails_with_every_attempt_when_no_instance_answers() {
    bounded(async {
        // A port bound but never listened on: connecting is refused.
        let reserved = tokio::net::TcpSocket::new_v4().unwrap();
        reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let dead = Endpoint::new("127.0.0.1", reserved.local_addr().unwrap().port()).unwrap();
        let mut connector = BalancedConnector::new(Client::new(client_config(vec![dead.clone()]))).unwrap();
        let error =
            connector.call("http://aos-cluster/".parse().unwrap()).await.expect_err("nothing answers");
        assert!(matches!(error, ConnectError::Failed(_)), "{error:?}");
        assert_eq!(error.attempts().len(), 2, "one handshake per round: {error}");
        assert!(error.attempts().iter().all(|a| a.endpoint == dead), "{error}");

        // Through hyper-util's pool: a connect error, with the attempts as its source.
        let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        let error = client.get("http://aos-cluster/".parse().unwrap()).await.expect_err("nothing answers");
        assert!(error.is_connect(), "{error:?}");
        let source = std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default();
        assert!(source.contains(&dead.socket_addr_string()), "the attempt log: {source}");
    })
    .await;
}

#[tokio::test]
async fn incoming_yields_each_admitted_session_and_ends_when_the_server_stops() {
    bounded(async {
        let registry = MemoryRegistry::new();
        let server = start(&registry, 1, 10).await;
        let seeds = vec![server.endpoint().clone()];
        let mut incoming = server.incoming();
        let handle = incoming.handle();

        // Bytes sent right after the session opens come first out of the stream.
        let mut session = Client::new(client_config(seeds.clone())).connect().await.expect("session");
        session.write_all(b"first").await.unwrap();
        let mut stream = next(&mut incoming).await.expect("an admitted session");
        let mut got = [0u8; 5];
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut got)).await.expect("in time").unwrap();
        assert_eq!(&got, b"first");
        stream.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        tokio::time::timeout(PATIENCE, session.read_exact(&mut back)).await.expect("in time").unwrap();
        assert_eq!(&back, b"back");

        let second = Client::new(client_config(seeds)).connect().await.expect("second session");
        assert!(next(&mut incoming).await.is_some(), "the second session");
        drop(second);

        handle.shutdown().await;
        assert!(next(&mut incoming).await.is_none(), "the stream ends with the server");
        assert!(next(&mut incoming).await.is_none(), "and stays ended");
    })
    .await;
}

#[tokio::test]
async fn dropping_incoming_stops_the_server_and_removes_its_row() {
    bounded(async {
        let registry = MemoryRegistry::new();
        let incoming = start(&registry, 1, 10).await.incoming();
        let handle = incoming.handle();
        assert_eq!(
            registry
                .snapshot(Some(CLUSTER), MemberTiming::with_ttl(Duration::from_secs(30)))
                .await
                .unwrap()
                .len(),
            1
        );
        drop(incoming);
        tokio::time::timeout(PATIENCE, handle.stopped()).await.expect("the server stops");
        assert!(registry
            .snapshot(Some(CLUSTER), MemberTiming::with_ttl(Duration::from_secs(30)))
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

#[tokio::test]
async fn garbage_on_a_hyper_served_session_ends_that_session_and_frees_its_slot() {
    bounded(async {
        let registry = MemoryRegistry::new();
        let server = start(&registry, 1, 10).await;
        let (seeds, handle) = (vec![server.endpoint().clone()], server.handle());
        let mut incoming = server.incoming();
        tokio::spawn(async move {
            while let Some(Ok(stream)) = poll_fn(|cx| Pin::new(&mut incoming).poll_next(cx)).await {
                let ok = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Empty::<
                        bytes::Bytes,
                    >::new()))
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, ok));
            }
        });
        let connected = || async { handle.stats().await.unwrap().workload.connected };

        let mut healthy = Client::new(client_config(seeds.clone())).connect().await.expect("session");
        let mut garbage = Client::new(client_config(seeds)).connect().await.expect("session");
        garbage.write_all(b"\x00\xffNOT HTTP AT ALL\r\n\r\n").await.unwrap();
        // hyper answers 400 and closes; the session ends with the connection.
        let mut reply = Vec::new();
        tokio::time::timeout(PATIENCE, garbage.read_to_end(&mut reply))
            .await
            .expect("closed in time")
            .unwrap();
        assert!(reply.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&reply));
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while connected().await != 1 {
            assert!(tokio::time::Instant::now() < deadline, "the garbage session's slot was not freed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // The other session on the same instance is untouched.
        healthy.write_all(b"GET / HTTP/1.1\r\nhost: aos\r\n\r\n").await.unwrap();
        let mut head = [0u8; 12];
        tokio::time::timeout(PATIENCE, healthy.read_exact(&mut head)).await.expect("in time").unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
    })
    .await;
}
