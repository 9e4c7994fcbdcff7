//! Trust (SPEC "Drivers: trust"): TLS to every instance, mutual TLS between
//! instances, the allow-list. Certificates come from a throwaway CA generated
//! at run time; everything runs on 127.0.0.1 and every wait is bounded.
#![cfg(feature = "dev-certs")]

mod common;

use aos_cluster_tokio::registry::MemberTiming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aos_cluster::client::{AttemptOutcome, AttemptRecord, Phase};
use aos_cluster::config::RetryPolicy;
use aos_cluster::wire::{
    HandshakeOutcome, HandshakeReply, Limits, Message, QueryId, RankedEntry, RankedList, WorkloadQuery,
};
use aos_cluster::{ClientConfig, Endpoint, InstanceId, Role, Workload};
use aos_cluster_tokio::client::{AllowList, ClientOptions};
use aos_cluster_tokio::frames::{write_frame, FrameReader};
use aos_cluster_tokio::registry::Registry;
use aos_cluster_tokio::server::{Server, ServerConfig, ServerOptions};
use aos_cluster_tokio::tls::dev_certs::DevPki;
use aos_cluster_tokio::tls::{ClientTls, Identity, ServerTls, TrustRoots};
use aos_cluster_tokio::{blocking, Client};
use common::*;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

fn client_config(seeds: &[&Endpoint]) -> ClientConfig {
    ClientConfig {
        cluster: Some(CLUSTER.to_owned()),
        handshake_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy { base: Duration::from_millis(10), cap: Duration::from_millis(10), max_rounds: 1 },
        ..ClientConfig::with_seeds(seeds.iter().map(|e| (*e).clone()).collect())
    }
}

fn tls_options(pki: &DevPki) -> ClientOptions {
    ClientOptions::new().with_tls(pki.client_tls().expect("client TLS"))
}

async fn bind_tls(config: ServerConfig, registry: &Arc<MemRegistry>, tls: ServerTls) -> Server {
    let registry: Arc<dyn Registry> = registry.clone();
    Server::bind_with(config, registry, ServerOptions::new().with_tls(tls)).await.expect("server starts")
}

/// A standalone instance (no cluster, answers handshakes with itself) with
/// `tls`: a seed that would take any client.
async fn standalone(id: u32, registry: &Arc<MemRegistry>, tls: ServerTls) -> Server {
    let mut config = server_config(id, 10);
    config.instance.role = Role::Standalone;
    config.instance.cluster = None;
    bind_tls(config, registry, tls).await
}

/// Runs `server`'s accept loop as an echo service; returns its address and handle.
fn serve_echo(mut server: Server) -> (SocketAddr, Endpoint, aos_cluster_tokio::ServerHandle) {
    let (addr, endpoint, handle) = (server.local_addr(), server.endpoint().clone(), server.handle());
    tokio::spawn(async move {
        while let Some(accepted) = server.accept().await {
            let mut stream = accepted.stream;
            assert!(stream.is_tls(), "a TLS server handed over a plain stream");
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, endpoint, handle)
}

fn transport_failure(record: &AttemptRecord) -> &str {
    match &record.outcome {
        AttemptOutcome::TransportFailed(reason) => reason,
        other => panic!("attempt {record} is not a transport failure: {other:?}"),
    }
}

fn accepted_last(attempts: &[AttemptRecord]) {
    let last = attempts.last().expect("attempts");
    assert!(matches!(last.outcome, AttemptOutcome::Accepted { .. }), "last attempt: {last}");
}

async fn echo_round_trip_async<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let message = b"application bytes over TLS";
    stream.write_all(message).await.expect("write");
    let mut back = vec![0u8; message.len()];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut back)).await.expect("echo in time").expect("read");
    assert_eq!(&back, message);
}

fn echo_round_trip_blocking(session: &mut blocking::Session) {
    use std::io::{Read, Write};
    session.get_ref().set_read_timeout(Some(PATIENCE)).expect("read timeout");
    let message = b"blocking bytes over TLS";
    session.write_all(message).expect("write");
    let mut back = vec![0u8; message.len()];
    session.read_exact(&mut back).expect("echo");
    assert_eq!(&back, message);
}

#[tokio::test]
async fn a_rogue_seed_with_a_self_signed_certificate_is_refused_and_the_client_connects_elsewhere() {
    let pki = DevPki::new().unwrap();
    let registry = MemRegistry::new();
    let rogue_identity = pki.self_signed("rogue", &["127.0.0.1"]).unwrap().identity().unwrap();
    let rogue =
        standalone(66, &registry, ServerTls::new(rogue_identity, pki.trust_roots().unwrap()).unwrap()).await;
    let good = bind_tls(server_config(1, 10), &registry, pki.server_tls(&["127.0.0.1"]).unwrap()).await;
    let (rogue_endpoint, rogue_handle) = (rogue.endpoint().clone(), rogue.handle());
    let (_, good_endpoint, good_handle) = serve_echo(good);
    let config = client_config(&[&rogue_endpoint, &good_endpoint]);
    let options = tls_options(&pki);

    let mut session = Client::with_options(config.clone(), options.clone())
        .connect()
        .await
        .expect("a session at the good instance");
    assert_eq!(session.instance(), Some(InstanceId(1)));
    assert!(session.is_tls());
    let first = &session.attempts()[0];
    assert_eq!((first.phase, first.endpoint.clone()), (Phase::Handshake, rogue_endpoint.clone()));
    let reason = transport_failure(first);
    assert!(reason.starts_with("certificate for 127.0.0.1 not valid:"), "{reason}");
    assert!(reason.contains("unknown issuer"), "{reason}");
    accepted_last(session.attempts());
    echo_round_trip_async(&mut session).await;

    // The blocking client walks the same way.
    let (config_b, options_b) = (config.clone(), options.clone());
    let mut session = tokio::task::spawn_blocking(move || {
        blocking::Client::with_options(config_b.clone(), options_b.clone()).connect()
    })
    .await
    .unwrap()
    .expect("a blocking session at the good instance");
    assert_eq!(session.instance(), Some(InstanceId(1)));
    assert!(session.is_tls());
    let reason = transport_failure(&session.attempts()[0]).to_owned();
    assert!(reason.starts_with("certificate for 127.0.0.1 not valid:"), "{reason}");
    let session = tokio::task::spawn_blocking(move || {
        echo_round_trip_blocking(&mut session);
        session
    })
    .await
    .unwrap();
    drop(session);

    let rogue_stats = stats(&rogue_handle).await;
    assert_eq!(rogue_stats.sessions.handed_over, 0);
    assert_eq!(rogue_stats.instance.round.handshakes, 0, "{rogue_stats:?}");
    assert!(
        rogue_stats.connections.tls_handshake_failures >= 2,
        "the clients hung up on its certificate: {rogue_stats:?}"
    );
    assert_eq!(stats(&good_handle).await.sessions.handed_over, 2);
    drop(rogue);
}

/// A seed that answers one handshake per connection with `entries` (over TLS
/// with `tls`, a certificate the clients trust): a compromised balancer.
async fn forging_seed(tls: Arc<rustls::ServerConfig>, entries: Vec<RankedEntry>) -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        // Bounded: a test makes a handful of connections.
        for _ in 0..16 {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, entries) = (acceptor.clone(), entries.clone());
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(tcp).await else { return };
                let mut reader = FrameReader::new(Limits::default(), PATIENCE);
                let deadline = Instant::now() + PATIENCE;
                let Ok(Message::HandshakeRequest(request)) =
                    reader.read_frame(&mut stream, Some(deadline)).await
                else {
                    return;
                };
                let reply = Message::HandshakeReply(HandshakeReply {
                    request_id: request.request_id,
                    outcome: HandshakeOutcome::Ranked(RankedList { stale: false, entries }),
                });
                let _ = write_frame(&mut stream, &reply, &Limits::default(), &mut Vec::new(), deadline).await;
                let mut rest = Vec::new();
                let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
            });
        }
    });
    Endpoint::new("127.0.0.1", port).unwrap()
}

fn rustls_server(pki: &DevPki, name: &str, names: &[&str]) -> Arc<rustls::ServerConfig> {
    let files = pki.issue(name, names).unwrap();
    let chain = rustls::pki_types::CertificateDer::pem_file_iter(&files.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&files.key).unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
    Arc::new(config)
}

fn entry(id: u32, endpoint: &Endpoint) -> RankedEntry {
    RankedEntry { id: InstanceId(id), endpoint: endpoint.clone(), workload: Workload::new(0, 10) }
}

#[tokio::test]
async fn a_rogue_ranked_entry_is_refused_and_the_next_entry_takes_the_session() {
    let pki = DevPki::new().unwrap();
    let registry = MemRegistry::new();
    let rogue_identity = pki.self_signed("rogue", &["127.0.0.1"]).unwrap().identity().unwrap();
    let rogue =
        standalone(999, &registry, ServerTls::new(rogue_identity, pki.trust_roots().unwrap()).unwrap()).await;
    let good = bind_tls(server_config(1, 10), &registry, pki.server_tls(&["127.0.0.1"]).unwrap()).await;
    let (rogue_endpoint, rogue_handle) = (rogue.endpoint().clone(), rogue.handle());
    let (_, good_endpoint, good_handle) = serve_echo(good);
    let seed = forging_seed(
        rustls_server(&pki, "seed", &["127.0.0.1"]),
        vec![entry(999, &rogue_endpoint), entry(1, &good_endpoint)],
    )
    .await;
    let config = client_config(&[&seed]);
    let options = tls_options(&pki);

    let mut session = Client::with_options(config.clone(), options.clone())
        .connect()
        .await
        .expect("a session at the good entry");
    assert_eq!(session.instance(), Some(InstanceId(1)));
    let attempts = session.attempts();
    assert!(matches!(attempts[0].outcome, AttemptOutcome::Ranked { .. }), "{}", attempts[0]);
    assert_eq!((attempts[1].phase, attempts[1].endpoint.clone()), (Phase::Session, rogue_endpoint.clone()));
    let reason = transport_failure(&attempts[1]);
    assert!(reason.starts_with("certificate for 127.0.0.1 not valid:"), "{reason}");
    accepted_last(attempts);
    echo_round_trip_async(&mut session).await;

    let (config_b, options_b) = (config.clone(), options.clone());
    let session = tokio::task::spawn_blocking(move || {
        blocking::Client::with_options(config_b.clone(), options_b.clone()).connect()
    })
    .await
    .unwrap()
    .expect("a blocking session at the good entry");
    assert_eq!(session.instance(), Some(InstanceId(1)));
    assert!(transport_failure(&session.attempts()[1]).starts_with("certificate for 127.0.0.1 not valid:"));

    assert_eq!(stats(&rogue_handle).await.sessions.handed_over, 0);
    assert_eq!(stats(&good_handle).await.sessions.handed_over, 2);

    // The allow-list over TLS: an entry named outside it is skipped before any dial.
    let outside = Endpoint::new("localhost", good_endpoint.port()).unwrap();
    let seed = forging_seed(
        rustls_server(&pki, "seed-2", &["127.0.0.1"]),
        vec![entry(5, &outside), entry(1, &good_endpoint)],
    )
    .await;
    let options = options.with_allow_list(AllowList::parse(["127.0.0.1/32"]).unwrap());
    let session = Client::with_options(client_config(&[&seed]), options.clone())
        .connect()
        .await
        .expect("a session at the good entry");
    let skipped = &session.attempts()[1];
    assert_eq!(skipped.endpoint, outside);
    assert!(transport_failure(skipped).ends_with("is outside the allow-list; skipped"), "{skipped}");
    assert_eq!(stats(&good_handle).await.sessions.handed_over, 3, "the skipped entry was dialled");
}

/// A raw protocol client over TLS (`identity`: its client certificate).
async fn tls_raw(
    addr: SocketAddr,
    pki: &DevPki,
    identity: Option<Identity>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let roots = pki.trust_roots().unwrap();
    let tls = match identity {
        Some(identity) => ClientTls::with_identity(roots, identity).unwrap(),
        None => ClientTls::new(roots).unwrap(),
    };
    let config = tls.rustls_config().clone();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.expect("TLS handshake")
}

async fn request<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, message: &Message) -> Option<Message> {
    let deadline = Instant::now() + PATIENCE;
    write_frame(stream, message, &Limits::default(), &mut Vec::new(), deadline).await.ok()?;
    FrameReader::new(Limits::default(), PATIENCE).read_frame(stream, Some(deadline)).await.ok()
}

fn workload_query() -> Message {
    Message::WorkloadQuery(WorkloadQuery { query_id: QueryId(7) })
}

#[tokio::test]
async fn a_peer_without_a_cluster_certificate_gets_no_workload() {
    let pki = DevPki::new().unwrap();
    let registry = MemRegistry::new();
    let server = bind_tls(server_config(1, 10), &registry, pki.server_tls(&["127.0.0.1"]).unwrap()).await;
    let (addr, handle) = (server.local_addr(), server.handle());

    // No client certificate: handshakes are answered, workload queries are not.
    let mut anonymous = tls_raw(addr, &pki, None).await;
    let reply = request(&mut anonymous, &handshake_request(1)).await;
    assert!(matches!(reply, Some(Message::HandshakeReply(_))), "{reply:?}");
    let mut prying = tls_raw(addr, &pki, None).await;
    assert_eq!(request(&mut prying, &workload_query()).await, None, "answered without a certificate");
    let after = stats(&handle).await;
    assert_eq!(after.peers.queries_refused, 1, "{after:?}");
    assert_eq!(after.instance.workload_queries_answered, 0);

    // A certificate of another authority: the handshake itself fails.
    let rogue = pki.self_signed("rogue-peer", &["127.0.0.1"]).unwrap().identity().unwrap();
    let mut rogue = tls_raw(addr, &pki, Some(rogue)).await;
    assert_eq!(request(&mut rogue, &workload_query()).await, None, "answered a rogue certificate");
    eventually("the rogue handshake is counted", || async {
        stats(&handle).await.connections.tls_handshake_failures >= 1
    })
    .await;

    // A member's certificate: answered.
    let member = pki.issue("member", &["127.0.0.1"]).unwrap().identity().unwrap();
    let mut member = tls_raw(addr, &pki, Some(member)).await;
    let reply = request(&mut member, &workload_query()).await;
    assert!(matches!(reply, Some(Message::WorkloadReport(_))), "{reply:?}");
    let after = stats(&handle).await;
    assert_eq!((after.instance.workload_queries_answered, after.peers.queries_refused), (1, 1), "{after:?}");

    // Plain TCP to a TLS instance gets nothing either.
    let mut plain = RawClient::connect(addr).await;
    plain.send(&workload_query()).await;
    assert!(closed_within(&mut plain.stream, PATIENCE).await);
    assert_eq!(stats(&handle).await.instance.workload_queries_answered, 1);
}

#[tokio::test]
async fn instances_rank_each_other_over_mutual_tls_and_a_rogue_member_is_left_out() {
    let pki = DevPki::new().unwrap();
    let registry = MemRegistry::new();
    let one = bind_tls(server_config(1, 10), &registry, pki.server_tls(&["127.0.0.1"]).unwrap()).await;
    let two = bind_tls(server_config(2, 10), &registry, pki.server_tls(&["127.0.0.1"]).unwrap()).await;
    // A row in the registry for a process whose certificate is not the cluster's.
    let rogue_identity = pki.self_signed("rogue", &["127.0.0.1"]).unwrap().identity().unwrap();
    let rogue = bind_tls(
        server_config(3, 1000),
        &registry,
        ServerTls::new(rogue_identity, TrustRoots::from_pem_file(pki.ca_cert()).unwrap()).unwrap(),
    )
    .await;
    let (addr_one, handle_one, handle_two, handle_rogue) =
        (one.local_addr(), one.handle(), two.handle(), rogue.handle());

    let ranked_ids = || async {
        let mut stream = tls_raw(addr_one, &pki, None).await;
        match request(&mut stream, &handshake_request(9)).await {
            Some(Message::HandshakeReply(HandshakeReply {
                outcome: HandshakeOutcome::Ranked(list), ..
            })) => ids(&list),
            other => panic!("no ranking: {other:?}"),
        }
    };
    eventually("instance 1 ranks instance 2 (a workload query over mTLS)", || async {
        let ranked = ranked_ids().await;
        assert!(!ranked.contains(&3), "the rogue member was ranked: {ranked:?}");
        ranked.contains(&2)
    })
    .await;
    let one_stats = stats(&handle_one).await;
    assert!(one_stats.peers.dials >= 1 && one_stats.instance.round.peer_unreachable >= 1, "{one_stats:?}");
    let two_stats = stats(&handle_two).await;
    assert!(two_stats.instance.workload_queries_answered >= 1, "{two_stats:?}");
    assert_eq!(two_stats.peers.queries_refused, 0);
    // The rogue answered no query (the members refuse its server certificate)
    // and got no answer (its client certificate fails their handshake).
    let rogue_stats = stats(&handle_rogue).await;
    assert_eq!(rogue_stats.instance.workload_queries_answered, 0, "{rogue_stats:?}");
    assert_eq!(rogue_stats.instance.round.peer_reports, 0, "{rogue_stats:?}");

    // A client session through the cluster never lands on the rogue.
    let config = client_config(&[one.endpoint()]);
    let session = Client::with_options(config.clone(), tls_options(&pki)).connect().await.expect("a session");
    assert!(matches!(session.instance(), Some(InstanceId(1 | 2))), "{:?}", session.instance());
    assert!(session.attempts().iter().all(|a| a.endpoint != *rogue.endpoint()));
}

#[tokio::test]
async fn expired_and_wrong_name_certificates_give_clear_errors() {
    let pki = DevPki::new().unwrap();
    let registry = MemRegistry::new();
    let roots = || pki.trust_roots().unwrap();
    let expired = pki.issue_expired("expired", &["127.0.0.1"]).unwrap().identity().unwrap();
    let expired = standalone(10, &registry, ServerTls::new(expired, roots()).unwrap()).await;
    let elsewhere = pki.issue("elsewhere", &["aos-elsewhere.test"]).unwrap().identity().unwrap();
    let elsewhere = standalone(11, &registry, ServerTls::new(elsewhere, roots()).unwrap()).await;
    let good = bind_tls(server_config(1, 10), &registry, pki.server_tls(&["127.0.0.1"]).unwrap()).await;
    let (_, good_endpoint, _good) = serve_echo(good);
    let config = client_config(&[expired.endpoint(), elsewhere.endpoint(), &good_endpoint]);
    let options = tls_options(&pki);

    let check = |attempts: &[AttemptRecord]| {
        let first = transport_failure(&attempts[0]);
        assert!(first.starts_with("certificate for 127.0.0.1 not valid: certificate expired"), "{first}");
        let second = transport_failure(&attempts[1]);
        assert!(
            second.starts_with("certificate for 127.0.0.1 not valid: certificate not valid for name"),
            "{second}"
        );
        assert!(second.contains("aos-elsewhere.test"), "{second}");
        accepted_last(attempts);
    };
    let session = Client::with_options(config.clone(), options.clone())
        .connect()
        .await
        .expect("a session at the good seed");
    assert_eq!(session.instance(), Some(InstanceId(1)));
    check(session.attempts());
    let session = tokio::task::spawn_blocking(move || {
        blocking::Client::with_options(config.clone(), options.clone()).connect()
    })
    .await
    .unwrap()
    .expect("a blocking session at the good seed");
    check(session.attempts());
    // A client that does not trust the cluster's CA gets nowhere, and says why for each seed.
    let stranger = DevPki::new().unwrap();
    let config = client_config(&[&good_endpoint]);
    let error = Client::with_options(config.clone(), tls_options(&stranger))
        .connect()
        .await
        .expect_err("no session without trust");
    assert!(transport_failure(&error.attempts()[0]).contains("unknown issuer"), "{error}");
}

#[tokio::test]
async fn an_allow_list_skips_ranked_entries_outside_it_with_or_without_tls() {
    let registry = MemRegistry::new();
    let one = bind(server_config(1, 4), &registry).await;
    // Instance 2 is advertised by name, outside an allow-list of 127.0.0.1/32,
    // and ranks first: instance 1 is half full.
    let mut config_two = server_config(2, 100);
    config_two.instance.endpoint = Endpoint::new("localhost", 1).unwrap();
    let two = bind(config_two, &registry).await;
    let (one_addr, two_endpoint, two_handle) = (one.local_addr(), two.endpoint().clone(), two.handle());
    let (_, one_endpoint, _one) = serve_plain(one);
    let mut held = Vec::new();
    for n in 0..2 {
        let mut raw = RawClient::connect(one_addr).await;
        raw.session(n).await;
        held.push(raw);
    }
    eventually("instance 1 ranks instance 2 first", || async {
        ids(&ranking_at(one_addr, 3).await).first() == Some(&2)
    })
    .await;

    let config = client_config(&[&one_endpoint]);
    let options = ClientOptions::new().with_allow_list(AllowList::parse(["127.0.0.1/32"]).unwrap());
    let check = |attempts: &[AttemptRecord]| {
        let skipped = attempts
            .iter()
            .find(|a| a.endpoint == two_endpoint)
            .unwrap_or_else(|| panic!("instance 2 was not in the ranked list: {attempts:?}"));
        assert_eq!(skipped.phase, Phase::Session);
        assert_eq!(
            transport_failure(skipped),
            format!("localhost:{} is outside the allow-list; skipped", two_endpoint.port())
        );
        accepted_last(attempts);
    };
    let session = Client::with_options(config.clone(), options.clone())
        .connect()
        .await
        .expect("a session at instance 1");
    assert_eq!(session.instance(), Some(InstanceId(1)));
    check(session.attempts());
    let (config_b, options_b) = (config.clone(), options.clone());
    let session = tokio::task::spawn_blocking(move || {
        blocking::Client::with_options(config_b.clone(), options_b.clone()).connect()
    })
    .await
    .unwrap()
    .expect("a blocking session at instance 1");
    check(session.attempts());
    // Never dialled for a session: instance 2 opened none.
    assert_eq!(stats(&two_handle).await.instance.admission.sessions_accepted, 0);
    // Without the allow-list, the same client goes to instance 2.
    let session =
        Client::with_options(config.clone(), ClientOptions::new()).connect().await.expect("a session");
    assert_eq!(session.instance(), Some(InstanceId(2)));
}

/// Runs a plain server's accept loop, keeping sessions open until the client leaves.
fn serve_plain(mut server: Server) -> (SocketAddr, Endpoint, aos_cluster_tokio::ServerHandle) {
    let (addr, endpoint, handle) = (server.local_addr(), server.endpoint().clone(), server.handle());
    tokio::spawn(async move {
        while let Some(accepted) = server.accept().await {
            let mut stream = accepted.stream;
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                while let Ok(1..) = stream.read(&mut buf).await {}
            });
        }
    });
    (addr, endpoint, handle)
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn the_postgres_registry_connects_with_sslmode_verify_full() {
    use aos_cluster::registry::Heartbeat;
    use aos_cluster_tokio::registry::{Incarnation, PostgresRegistry};
    let Ok(url) = std::env::var("AOS_TEST_POSTGRES_TLS_URL") else {
        eprintln!("AOS_TEST_POSTGRES_TLS_URL is not set (AOS_PG_TLS=1 source .ci/postgres.sh): PostgreSQL over TLS not tested");
        return;
    };
    assert!(url.contains("sslmode=verify-full"), "the TLS test URL must ask for verify-full: {url}");
    let registry = PostgresRegistry::connect(&url).await.expect("connects with verify-full");
    let id = InstanceId(4242);
    let heartbeat = Heartbeat {
        id,
        endpoint: Endpoint::new("127.0.0.1", 4242).unwrap(),
        cluster: Some("tls-test".into()),
        role: Role::Serving,
        accepting: true,
        workload: Workload::new(1, 10),
    };
    let incarnation = Incarnation(0x5151);
    registry.register(&heartbeat, incarnation, Duration::from_secs(30)).await.expect("register over TLS");
    let members = registry
        .snapshot(Some("tls-test"), MemberTiming::with_ttl(Duration::from_secs(300)))
        .await
        .expect("snapshot over TLS");
    assert!(members.iter().any(|m| m.id == id), "{members:?}");
    assert!(registry.remove(id, incarnation).await.expect("remove"));

    // Another CA: the server's certificate is refused, so TLS really was spoken.
    let stranger = DevPki::new().unwrap();
    let base: Vec<&str> = url.split('&').filter(|p| !p.starts_with("sslrootcert=")).collect();
    let wrong = format!("{}&sslrootcert={}", base.join("&"), stranger.ca_cert().display());
    let error = PostgresRegistry::connect(&wrong).await.expect_err("a server certificate of another CA");
    assert!(error.to_string().contains("certificate"), "{error}");
    let error =
        PostgresRegistry::connect(&wrong.replace("verify-full", "verify-ca")).await.expect_err("verify-ca");
    assert!(error.to_string().contains("certificate"), "{error}");
    // `require` without a root encrypts without checking the chain (libpq's meaning).
    let require = base.join("&").replace("sslmode=verify-full", "sslmode=require");
    assert!(!require.contains("sslrootcert") && require.contains("sslmode=require"), "{require}");
    PostgresRegistry::connect(&require).await.expect("sslmode=require without sslrootcert");
}
