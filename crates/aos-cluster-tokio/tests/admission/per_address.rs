//! One address, one cap: `max_sessions_per_ip` holds however many requests
//! arrive at once, and a refused request never takes a place.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_pass_its_cap_however_many_parallel_requests_it_sends() {
    const CAP: usize = 3;
    const PARALLEL: usize = 40;
    let server = Held::start(cap_config(100, Some(CAP)), ServerOptions::new()).await;
    let addr = server.addr;
    let tasks: Vec<_> = (0..PARALLEL as u64)
        .map(|i| {
            tokio::spawn(async move {
                let mut client = RawClient::connect(addr).await;
                let got = outcome(&mut client, &request(i, None)).await;
                (client, got)
            })
        })
        .collect();
    let mut admitted = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            (client, SessionOutcome::Accepted { .. }) => admitted.push(client),
            (_, SessionOutcome::Rejected(RejectReason::AddressLimit)) => refused += 1,
            (_, other) => panic!("neither admitted nor AddressLimit: {other:?}"),
        }
    }
    assert_eq!(admitted.len(), CAP, "exactly the cap is admitted");
    assert_eq!(refused, PARALLEL - CAP);
    eventually("the application holds the admitted sessions", || async { server.held() == CAP }).await;
    let s = stats(&server.handle).await;
    assert_eq!(s.workload.connected, CAP as u32, "refused requests never counted");
    assert_eq!(s.instance.admission.sessions_accepted, CAP as u64);
    assert_eq!(s.sessions.refused_per_address, (PARALLEL - CAP) as u64);
    assert_eq!(s.instance.admission.rejected_by_policy, (PARALLEL - CAP) as u64);

    // Another address has places of its own.
    let mut other = raw_from(IpAddr::from([127, 0, 0, 2]), addr).await;
    assert!(matches!(outcome(&mut other, &request(100, None)).await, SessionOutcome::Accepted { .. }));

    // A refused connection may ask again on the same connection: still refused.
    let mut again = RawClient::connect(addr).await;
    assert_eq!(
        outcome(&mut again, &request(101, None)).await,
        SessionOutcome::Rejected(RejectReason::AddressLimit)
    );
    // When the application ends one of the address's sessions, its place comes back.
    server.end_one();
    server.end_one();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut client = RawClient::connect(addr).await;
        match outcome(&mut client, &request(102, None)).await {
            SessionOutcome::Accepted { .. } => break,
            SessionOutcome::Rejected(RejectReason::AddressLimit) => {}
            other => panic!("{other:?}"),
        }
        assert!(Instant::now() < deadline, "an ended session never gave its address place back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(admitted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_takes_no_address_place_even_for_a_moment() {
    // Cap 1 on the address and a hook that refuses a first credential: the
    // hook's refusal and the machine's `Full` both leave the place free.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let options = ServerOptions::new().with_admission(good_only(seen.clone()));
    let server = Held::start(cap_config(1, Some(2)), options).await;
    let mut first = RawClient::connect(server.addr).await;
    assert_eq!(
        outcome(&mut first, &request(1, Some(b"bad"))).await,
        SessionOutcome::Rejected(RejectReason::Unauthorized)
    );
    assert!(matches!(outcome(&mut first, &request(2, Some(b"good"))).await, SessionOutcome::Accepted { .. }));
    // The instance is full now: the machine rejects, and the address place
    // taken for the request goes back.
    for id in 3..6 {
        let mut full = RawClient::connect(server.addr).await;
        assert_eq!(
            outcome(&mut full, &request(id, Some(b"good"))).await,
            SessionOutcome::Rejected(RejectReason::Full)
        );
    }
    server.handle.set_max_sessions(5).await.unwrap();
    // One place of two is held: exactly one more session from this address.
    let mut second = RawClient::connect(server.addr).await;
    assert!(matches!(
        outcome(&mut second, &request(6, Some(b"good"))).await,
        SessionOutcome::Accepted { .. }
    ));
    let mut third = RawClient::connect(server.addr).await;
    assert_eq!(
        outcome(&mut third, &request(7, Some(b"good"))).await,
        SessionOutcome::Rejected(RejectReason::AddressLimit)
    );
    let s = stats(&server.handle).await;
    assert_eq!((s.workload.connected, s.sessions.refused_by_hook, s.sessions.refused_per_address), (2, 1, 1));
    // The hook saw the peer's address and the credential; no TLS, no certificate.
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].peer_addr.ip(), localhost());
    assert_eq!(seen[0].credential.as_ref().map(Credential::as_bytes), Some(&b"bad"[..]));
    assert!(seen.iter().all(|r| r.client_certificate.is_none()));
}
