//! The admission hook itself: cut at its deadline, refused at bind with a
//! zero deadline, and shown the client certificate where TLS gives one.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_hangs_is_cut_at_its_deadline_and_said_so() {
    logs();
    const DEADLINE: Duration = Duration::from_millis(250);
    let calls = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicBool::new(false));
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let (c, d) = (calls.clone(), dropped.clone());
    let hook = move |request: AdmissionRequest| {
        c.fetch_add(1, Ordering::SeqCst);
        let guard = SetOnDrop(d.clone());
        async move {
            if request.credential.is_some_and(|c| c.as_bytes() == b"panic") {
                panic!("a broken hook");
            }
            let _guard = guard;
            std::future::pending::<Verdict>().await
        }
    };
    let options = ServerOptions::new().with_admission(AdmissionPolicy::new(hook).with_deadline(DEADLINE));
    let server = Held::start(cap_config(5, Some(5)), options).await;
    let mut client = RawClient::connect(server.addr).await;
    let began = Instant::now();
    let got = outcome(&mut client, &request(1, Some(b"any"))).await;
    let waited = began.elapsed();
    assert_eq!(got, SessionOutcome::Rejected(RejectReason::Unauthorized));
    assert!(waited >= DEADLINE, "refused after {waited:?}, before the deadline");
    assert!(waited < DEADLINE + Duration::from_secs(2), "refused only after {waited:?}");
    eventually("the hung hook's future is dropped", || async { dropped.load(Ordering::SeqCst) }).await;
    // A hook that panics refuses too, and the server goes on serving.
    let got = outcome(&mut client, &request(2, Some(b"panic"))).await;
    assert_eq!(got, SessionOutcome::Rejected(RejectReason::Unauthorized));
    let s = stats(&server.handle).await;
    assert_eq!(
        (s.sessions.admission_hook_timeouts, s.sessions.refused_by_hook, s.workload.connected),
        (2, 2, 0)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let lines = logged_lines("admission hook did not answer within 250ms; session refused (Unauthorized)");
    assert_eq!(lines.len(), 1, "one clear warning: {lines:?}");
    assert!(lines[0].contains("127.0.0.1"), "the warning names the peer: {}", lines[0]);
}

#[tokio::test]
async fn a_zero_hook_deadline_is_a_configuration_error() {
    let registry: Arc<dyn aos_cluster_tokio::registry::Registry> = MemRegistry::new();
    let policy =
        AdmissionPolicy::new(|_: AdmissionRequest| async { Verdict::Admit }).with_deadline(Duration::ZERO);
    let error = Server::bind_with(server_config(1, 5), registry, ServerOptions::new().with_admission(policy))
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("deadline"), "{error}");
}

#[cfg(feature = "dev-certs")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_sees_the_client_certificate_where_one_is_used() {
    use aos_cluster_tokio::tls::dev_certs::DevPki;
    use aos_cluster_tokio::tls::ClientTls;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let pki = DevPki::new().unwrap();
    let client_files = pki.issue("client-app", &["client-app"]).unwrap();
    let client_der = CertificateDer::from_pem_file(&client_files.cert).unwrap();
    // Admits only the holder of that certificate.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (wanted, record) = (client_der.as_ref().to_vec(), seen.clone());
    let hook = move |request: AdmissionRequest| {
        let admit = request.client_certificate.as_deref() == Some(&wanted[..]);
        record.lock().unwrap().push(request);
        async move {
            match admit {
                true => Verdict::Admit,
                false => Verdict::Unauthorized,
            }
        }
    };
    let options = ServerOptions::new()
        .with_tls(pki.server_tls(&["127.0.0.1"]).unwrap())
        .with_admission(AdmissionPolicy::new(hook));
    let mut config = cap_config(5, None);
    config.instance.role = aos_cluster::Role::Standalone;
    config.instance.cluster = None;
    let server = Held::start(config, options).await;
    let client_config = ClientConfig { cluster: None, ..server.config.clone() };

    let anonymous = ClientOptions::new().with_tls(pki.client_tls().unwrap());
    let error = aos_cluster_tokio::Client::with_options(client_config.clone(), anonymous.clone())
        .connect()
        .await
        .expect_err("no certificate");
    assert!(error.to_string().contains("Unauthorized"), "{error}");
    let holder =
        ClientTls::with_identity(pki.trust_roots().unwrap(), client_files.identity().unwrap()).unwrap();
    let options =
        ClientOptions::new().with_tls(holder).with_credential(Credential::new(*b"and a token").unwrap());
    let _session = aos_cluster_tokio::Client::with_options(client_config.clone(), options.clone())
        .connect()
        .await
        .expect("the holder gets in");

    {
        let seen = seen.lock().unwrap();
        assert!(seen.iter().any(|r| r.client_certificate.is_none()), "the anonymous client was asked about");
        let last = seen.last().unwrap();
        assert_eq!(last.client_certificate.as_deref(), Some(client_der.as_ref()));
        assert_eq!(last.credential.as_ref().map(Credential::as_bytes), Some(&b"and a token"[..]));
    }
    assert_eq!(stats(&server.handle).await.workload.connected, 1);
}
