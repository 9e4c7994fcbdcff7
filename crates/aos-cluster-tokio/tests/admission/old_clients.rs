//! A request without a credential, as an older client writes it.

use super::*;

/// The request a client without credentials writes, byte for byte.
const OLD_STYLE_REQUEST: [u8; 14] = [1, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 42];

async fn old_style(addr: SocketAddr) -> (RawClient, SessionOutcome) {
    let mut client = RawClient::connect(addr).await;
    client.stream.write_all(&OLD_STYLE_REQUEST).await.unwrap();
    let Message::SessionReply(reply) = client.recv().await else { panic!("not a session reply") };
    assert_eq!(reply.request_id, 42);
    (client, reply.outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_credential_passes_without_a_hook_and_not_past_one_that_wants_one() {
    assert_eq!(frame(&request(42, None)), OLD_STYLE_REQUEST, "no credential: the old bytes");
    let open = Held::start(server_config(1, 5), ServerOptions::new()).await;
    let (_kept, got) = old_style(open.addr).await;
    assert!(matches!(got, SessionOutcome::Accepted { .. }), "{got:?}");

    let seen = Arc::new(Mutex::new(Vec::new()));
    let guarded =
        Held::start(server_config(2, 5), ServerOptions::new().with_admission(good_only(seen.clone()))).await;
    let (mut client, got) = old_style(guarded.addr).await;
    assert_eq!(got, SessionOutcome::Rejected(RejectReason::Unauthorized));
    assert!(seen.lock().unwrap()[0].credential.is_none(), "the hook was asked, with no credential");
    // The refusal leaves the connection usable: the same client with a credential gets in.
    assert!(matches!(
        outcome(&mut client, &request(43, Some(b"good"))).await,
        SessionOutcome::Accepted { .. }
    ));
    let s = stats(&guarded.handle).await;
    assert_eq!(
        (s.workload.connected, s.instance.admission.sessions_accepted, s.sessions.refused_by_hook),
        (1, 1, 1)
    );
}
