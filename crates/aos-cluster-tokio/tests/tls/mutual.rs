//! Mutual TLS between instances: a peer without a cluster certificate gets
//! no workload, and a rogue member is left out of the ranking.

use super::*;

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
