//! Rogue seeds and forged ranked entries: refused, and the client connects
//! elsewhere.

use super::*;

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
