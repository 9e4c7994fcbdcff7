//! Expired and wrong-name certificates give clear errors.

use super::*;

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
