//! Floods of bad and oversized credentials: they never count, and real
//! clients keep their sessions.

use super::*;

/// Raw frames a hostile client may send: a credential announced at 65 535
/// bytes with three sent, one of 4 097 bytes, one of 60 000 bytes.
fn oversized_frames() -> Vec<Vec<u8>> {
    let frame = |payload: Vec<u8>| {
        let mut out = vec![1u8, 3];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    };
    let with = |announced: u16, body: Vec<u8>| {
        let mut payload = 9u64.to_be_bytes().to_vec();
        payload.extend_from_slice(&announced.to_be_bytes());
        payload.extend_from_slice(&body);
        frame(payload)
    };
    vec![with(u16::MAX, b"abc".to_vec()), with(4097, vec![7; 4097]), with(60_000, vec![7; 60_000])]
}

/// `count` hostile connections at once: most send two bad credentials each
/// (the first reply must be `Unauthorized`), every fifth an oversized
/// credential frame (the server must close it). Returns the refusals seen.
fn flood(addr: SocketAddr, count: usize) -> Vec<JoinHandle<usize>> {
    (0..count)
        .map(|i| {
            tokio::spawn(async move {
                let mut client = RawClient::connect(addr).await;
                if i % 5 == 4 {
                    let frames = oversized_frames();
                    client.stream.write_all(&frames[i / 5 % frames.len()]).await.ok();
                    assert!(
                        closed_within(&mut client.stream, PATIENCE).await,
                        "an oversized credential must close the connection"
                    );
                    return 0;
                }
                let mut refused = 0;
                for round in 0..2u64 {
                    let bad = format!("bad-{i}-{round}");
                    let got = outcome(&mut client, &request(round, Some(bad.as_bytes()))).await;
                    assert_eq!(got, SessionOutcome::Rejected(RejectReason::Unauthorized));
                    refused += 1;
                }
                refused
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_credentials_never_counts_and_leaves_real_clients_their_sessions() {
    const REAL: u32 = 10;
    const FLOOD: usize = 150;
    let options = ServerOptions::new().with_admission(good_only(Arc::default()));
    let server = Held::start(cap_config(REAL, None), options).await;
    let addr = server.addr;

    // Phase 1: the flood alone. A peer's workload queries, asked all
    // through it, and the registry row never see a session.
    let first = flood(addr, FLOOD);
    let mut peer = RawClient::connect(addr).await;
    let mut reports = 0;
    while !first.iter().all(JoinHandle::is_finished) {
        let report = peer.workload(reports).await;
        assert_eq!(report.workload.connected, 0, "a refused session showed in a workload report");
        reports += 1;
    }
    let mut refused = 0;
    for task in first {
        refused += task.await.expect("every flood connection got its refusal");
    }
    assert!(reports > 0);
    let s = stats(&server.handle).await;
    assert_eq!(s.workload.connected, 0);
    assert_eq!(s.instance.admission.sessions_accepted, 0);
    assert_eq!(s.sessions.refused_by_hook, refused as u64);
    assert_eq!(s.instance.admission.rejected_by_policy, refused as u64);
    assert_eq!(
        s.connections.malformed_frames,
        (FLOOD / 5) as u64,
        "each oversized credential closed its connection"
    );

    // Phase 2: a second flood while the real clients connect, async and
    // blocking, with the good credential: every one of them gets a session,
    // and the instance's ten places are theirs alone.
    let second = flood(addr, FLOOD);
    let options = ClientOptions::new().with_credential(Credential::new(*b"good").unwrap());
    let mut real = Vec::new();
    for i in 0..REAL {
        let (config, options) = (server.config.clone(), options.clone());
        // Each session is kept (as `Any`) until the end of the test.
        real.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let session =
                    aos_cluster_tokio::Client::with_options(config.clone(), options.clone()).connect().await;
                session.map(|s| Box::new(s) as Box<dyn Any + Send>).map_err(|e| e.to_string())
            } else {
                tokio::task::spawn_blocking(move || {
                    aos_cluster_tokio::blocking::Client::with_options(config.clone(), options.clone())
                        .connect()
                        .map(|s| Box::new(s) as Box<dyn Any + Send>)
                        .map_err(|e| e.to_string())
                })
                .await
                .unwrap()
            }
        }));
    }
    let mut sessions = Vec::new();
    for task in real {
        sessions.push(task.await.unwrap().expect("a real client with the good credential gets a session"));
    }
    for task in second {
        task.await.expect("every flood connection got its refusal");
    }
    eventually("the application holds every real session", || async { server.held() == REAL as usize }).await;
    let s = stats(&server.handle).await;
    assert_eq!(s.workload.connected, REAL);
    assert_eq!(s.instance.admission.sessions_accepted, u64::from(REAL), "no flood request was ever admitted");
    drop(sessions);
}
