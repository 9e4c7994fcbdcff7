//! The admin endpoint's figures: each counter moves when its event happens,
//! seen through both `GET /metrics` (Prometheus) and `GET /stats` (JSON).
#![cfg(feature = "admin")]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use aos_cluster::wire::{RejectReason, SessionOutcome};
use aos_cluster::{InstanceId, Role};
use aos_cluster_tokio::admin::{Admin, Metrics};
use aos_cluster_tokio::registry::Incarnation;
use aos_cluster_tokio::ServerHandle;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Serves the admin endpoint of `handle` on a free loopback port.
async fn serve_admin(handle: &ServerHandle) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let admin = Admin::new(handle.clone(), Arc::new(Metrics::new()), Arc::new(Notify::new()), None);
    tokio::spawn(admin.serve(listener));
    addr
}

/// `GET path`: the body of a 200 answer.
async fn get(addr: SocketAddr, path: &str) -> String {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        String::from_utf8(response).unwrap()
    };
    let response = tokio::time::timeout(PATIENCE, exchange).await.expect("the admin endpoint answers");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

async fn stats_json(addr: SocketAddr) -> serde_json::Value {
    serde_json::from_str(&get(addr, "/stats").await).expect("JSON")
}

/// The value of the metric line that starts with `series` (name and labels).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn session_rejections_are_counted_per_reason() {
    let registry = MemRegistry::new();
    let server = bind(server_config(1, 1), &registry).await;
    let (addr, handle) = (server.local_addr(), server.handle());
    let admin = serve_admin(&handle).await;
    let _keep = server;
    let text = get(admin, "/metrics").await;
    for reason in ["full", "draining", "not_serving", "busy", "already_in_session"] {
        let series = format!("aos_sessions_rejected_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&text, &series), Some(0.0), "{series} missing from\n{text}");
    }

    // One session fills it: the next is refused `Full`.
    let mut first = RawClient::connect(addr).await;
    assert!(matches!(first.session(1).await.outcome, SessionOutcome::Accepted { .. }));
    let mut second = RawClient::connect(addr).await;
    assert_eq!(second.session(2).await.outcome, SessionOutcome::Rejected(RejectReason::Full));
    // Draining: refused `Draining`, twice.
    handle.set_accepting(false).await.unwrap();
    for id in [3, 4] {
        let mut client = RawClient::connect(addr).await;
        assert_eq!(client.session(id).await.outcome, SessionOutcome::Rejected(RejectReason::Draining));
    }

    let stats = stats_json(admin).await;
    assert_eq!(stats["sessions"]["rejected"], serde_json::json!({ "full": 1, "draining": 2 }), "{stats}");
    assert_eq!(stats["instance"]["admission"]["sessions_rejected"], 3, "{stats}");
    let text = get(admin, "/metrics").await;
    assert_eq!(metric(&text, "aos_sessions_rejected_total{reason=\"full\"}"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "aos_sessions_rejected_total{reason=\"draining\"}"), Some(2.0), "{text}");
    assert_eq!(metric(&text, "aos_sessions_rejected_total{reason=\"not_serving\"}"), Some(0.0), "{text}");

    // A load-balancer-only instance refuses every session `NotServing`.
    let mut config = server_config(2, 10);
    config.instance.role = Role::LoadBalancerOnly;
    let balancer = bind(config, &registry).await;
    let balancer_admin = serve_admin(&balancer.handle()).await;
    let mut client = RawClient::connect(balancer.local_addr()).await;
    assert_eq!(client.session(1).await.outcome, SessionOutcome::Rejected(RejectReason::NotServing));
    let stats = stats_json(balancer_admin).await;
    assert_eq!(stats["sessions"]["rejected"]["not_serving"], 1, "{stats}");
    let text = get(balancer_admin, "/metrics").await;
    assert_eq!(metric(&text, "aos_sessions_rejected_total{reason=\"not_serving\"}"), Some(1.0), "{text}");
    drop(first);
}

#[tokio::test]
async fn registry_errors_are_counted_by_operation_and_kind() {
    let registry = MemRegistry::new();
    let server = bind(server_config(3, 10), &registry).await;
    let (addr, handle) = (server.local_addr(), server.handle());
    let admin = serve_admin(&handle).await;
    let stats = stats_json(admin).await;
    assert_eq!(stats["registry"]["errors"], serde_json::json!({}), "{stats}");

    // An outage: heartbeats and snapshots fail with `backend`.
    registry.down.store(true, Ordering::Relaxed);
    handle.set_max_sessions(5).await.unwrap(); // publishes a heartbeat now
    let _ranked = RawClient::connect(addr).await.handshake(1).await; // reads the registry
    eventually("both failures are counted", || async {
        let stats = stats_json(admin).await;
        let errors = &stats["registry"]["errors"];
        errors["heartbeat"]["backend"].as_u64() >= Some(1)
            && errors["snapshot"]["backend"].as_u64() >= Some(1)
    })
    .await;
    let stats = stats_json(admin).await;
    assert!(stats["registry"]["heartbeat_failures"].as_u64() >= Some(1), "{stats}");
    let text = get(admin, "/metrics").await;
    for operation in ["heartbeat", "snapshot"] {
        let series = format!("aos_registry_errors_total{{operation=\"{operation}\",kind=\"backend\"}}");
        assert!(metric(&text, &series) >= Some(1.0), "{series} in\n{text}");
    }

    // Another process takes the row over: `superseded`, once.
    registry.down.store(false, Ordering::Relaxed);
    registry.steal(InstanceId(3), Incarnation(server.incarnation().0.wrapping_add(1))).await;
    eventually("the takeover is counted", || async {
        stats_json(admin).await["registry"]["errors"]["heartbeat"]["superseded"] == 1
    })
    .await;
    let stats = stats_json(admin).await;
    assert_eq!(stats["registry"]["registration_lost"], true, "{stats}");
    let text = get(admin, "/metrics").await;
    let series = "aos_registry_errors_total{operation=\"heartbeat\",kind=\"superseded\"}";
    assert_eq!(metric(&text, series), Some(1.0), "{text}");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn malformed_registry_rows_are_counted() {
    use aos_cluster::registry::Heartbeat;
    use aos_cluster::{Endpoint, Workload};
    use aos_cluster_tokio::registry;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.db");
    let registry = registry::open(&format!("sqlite://{}", path.display())).await.unwrap();
    let server = aos_cluster_tokio::Server::bind(server_config(6, 10), registry.clone()).await.unwrap();
    let (addr, handle) = (server.local_addr(), server.handle());
    let admin = serve_admin(&handle).await;
    assert_eq!(stats_json(admin).await["registry"]["malformed_rows"], 0);

    // A member row of the cluster that another writer spoiled: its role is unknown.
    let other = Heartbeat {
        id: InstanceId(7),
        endpoint: Endpoint::new("127.0.0.1", 9).unwrap(),
        cluster: Some(CLUSTER.to_owned()),
        role: Role::Serving,
        accepting: true,
        workload: Workload::new(0, 10),
    };
    registry.register(&other, Incarnation(7), Duration::from_secs(60)).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute_batch("UPDATE aos_members_v1 SET role = 'emperor' WHERE id = 7").unwrap();

    // A handshake reads the registry: the row is skipped and counted.
    let ranked = RawClient::connect(addr).await.handshake(1).await;
    assert_eq!(ids(&ranked), [6], "the spoiled row is not ranked");
    let stats = stats_json(admin).await;
    assert!(stats["registry"]["malformed_rows"].as_u64() >= Some(1), "{stats}");
    let text = get(admin, "/metrics").await;
    assert!(metric(&text, "aos_registry_malformed_rows_total") >= Some(1.0), "{text}");
}

#[tokio::test]
async fn stats_json_is_grouped() {
    let registry = MemRegistry::new();
    let server = bind(server_config(4, 10), &registry).await;
    let admin = serve_admin(&server.handle()).await;
    let stats = stats_json(admin).await;
    assert_eq!(stats["id"], 4);
    assert_eq!((stats["connected"].as_u64(), stats["max_sessions"].as_u64()), (Some(0), Some(10)));
    assert_eq!((stats["accepting"].as_bool(), stats["stopping"].as_bool()), (Some(true), Some(false)));
    for (group, field) in [
        ("connections", "open"),
        ("connections", "tls_handshake_failures"),
        ("sessions", "handed_over"),
        ("sessions", "rejected"),
        ("peers", "queries_refused"),
        ("registry", "errors"),
        ("registry", "malformed_rows"),
        ("registry", "snapshot_age_seconds"),
        ("instance", "round"),
        ("instance", "fan_out"),
        ("instance", "herd"),
        ("instance", "admission"),
        ("instance", "heartbeats"),
    ] {
        assert!(stats[group].get(field).is_some(), "{group}.{field} missing from {stats}");
    }
    assert!(stats["instance"]["round"].get("handshakes").is_some(), "instance.round.handshakes missing");
}

#[cfg(feature = "dev-certs")]
mod tls {
    use aos_cluster::wire::{Limits, Message, QueryId, WorkloadQuery};
    use aos_cluster_tokio::frames::{write_frame, FrameReader};
    use aos_cluster_tokio::registry::Registry;
    use aos_cluster_tokio::server::{Server, ServerOptions};
    use aos_cluster_tokio::tls::dev_certs::DevPki;
    use aos_cluster_tokio::tls::ClientTls;
    use tokio::net::TcpStream;
    use tokio::time::Instant;

    use super::*;

    /// A TLS client trusting `roots` (no client certificate): the stream,
    /// or `None` when the handshake failed.
    async fn tls_client(
        addr: SocketAddr,
        pki: &DevPki,
    ) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
        let config = ClientTls::new(pki.trust_roots().unwrap()).unwrap().rustls_config().clone();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let connect = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
        tokio::time::timeout(PATIENCE, connect).await.expect("in time").ok()
    }

    #[tokio::test]
    async fn tls_handshake_failures_and_refused_peer_queries_are_counted() {
        let pki = DevPki::new().unwrap();
        let registry = MemRegistry::new();
        let dyn_registry: Arc<dyn Registry> = registry.clone();
        let options = ServerOptions::new().with_tls(pki.server_tls(&["127.0.0.1"]).unwrap());
        let server = Server::bind_with(server_config(5, 10), dyn_registry, options).await.unwrap();
        let (addr, handle) = (server.local_addr(), server.handle());
        let admin = serve_admin(&handle).await;
        let text = get(admin, "/metrics").await;
        assert_eq!(metric(&text, "aos_tls_handshake_failures_total"), Some(0.0), "{text}");
        assert_eq!(metric(&text, "aos_peer_queries_refused_total"), Some(0.0), "{text}");

        // A client that trusts another CA refuses the server's certificate.
        let other = DevPki::new().unwrap();
        assert!(tls_client(addr, &other).await.is_none(), "a foreign CA was trusted");
        eventually("the failed handshake is counted", || async {
            stats_json(admin).await["connections"]["tls_handshake_failures"] == 1
        })
        .await;
        let text = get(admin, "/metrics").await;
        assert_eq!(metric(&text, "aos_tls_handshake_failures_total"), Some(1.0), "{text}");

        // A client without a cluster certificate asks for the workload: refused.
        let mut prying = tls_client(addr, &pki).await.expect("a trusting client connects");
        let deadline = Instant::now() + PATIENCE;
        let query = Message::WorkloadQuery(WorkloadQuery { query_id: QueryId(1) });
        write_frame(&mut prying, &query, &Limits::default(), &mut Vec::new(), deadline).await.unwrap();
        let answer =
            FrameReader::new(Limits::default(), PATIENCE).read_frame(&mut prying, Some(deadline)).await;
        assert!(answer.is_err(), "answered without a certificate: {answer:?}");
        let stats = stats_json(admin).await;
        assert_eq!(stats["peers"]["queries_refused"], 1, "{stats}");
        let text = get(admin, "/metrics").await;
        assert_eq!(metric(&text, "aos_peer_queries_refused_total"), Some(1.0), "{text}");
        drop(server);
    }
}
