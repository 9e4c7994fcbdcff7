//! The allow-list, with and without TLS.

use super::*;

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
