//! The session request's credential: optional, bounded, never shown.

use aos_cluster::wire::*;

use crate::support::*;

fn session_request(request_id: u64, credential: Option<&[u8]>) -> Message {
    let credential = credential.map(|bytes| Credential::new(bytes).expect("within the cap"));
    Message::SessionRequest(SessionRequest { request_id, credential })
}

#[test]
fn a_request_without_a_credential_is_the_plain_fourteen_bytes() {
    let plain = frame_of(&session_request(9, None));
    assert_eq!(plain, raw_frame(1, 3, &9u64.to_be_bytes()));
    // Present but empty is two length bytes: not the same as absent.
    let empty = frame_of(&session_request(9, Some(b"")));
    assert_eq!(empty, raw_frame(1, 3, &[&9u64.to_be_bytes()[..], &[0, 0]].concat()));
    assert_eq!(decode_one(&empty), Ok(session_request(9, Some(b""))));
    assert_eq!(decode_one(&plain), Ok(session_request(9, None)));
}

#[test]
fn a_credential_up_to_four_kib_round_trips_and_one_byte_more_is_refused_both_ways() {
    let full = vec![0x5a; MAX_CREDENTIAL_LEN];
    let frame = frame_of(&session_request(1, Some(&full)));
    assert_eq!(frame.len(), HEADER_LEN + 8 + 2 + MAX_CREDENTIAL_LEN);
    assert_eq!(decode_one(&frame), Ok(session_request(1, Some(&full))));
    // The type refuses to hold more, so no encoder can send more.
    let over = vec![0x5a; MAX_CREDENTIAL_LEN + 1];
    assert_eq!(Credential::new(over.clone()), Err(CredentialTooLong { len: MAX_CREDENTIAL_LEN + 1 }));
    assert!(Credential::try_from(&over[..]).is_err());
    // A hand-made frame with 4097 bytes is refused by the decoder.
    let payload = [&1u64.to_be_bytes()[..], &[0x10, 0x01], &over].concat();
    assert_eq!(
        decode_one(&raw_frame(1, 3, &payload)),
        Err(DecodeError::CredentialTooLong { len: MAX_CREDENTIAL_LEN + 1, max: MAX_CREDENTIAL_LEN })
    );
}

#[test]
fn an_announced_credential_length_is_checked_before_the_bytes_are_looked_for() {
    // 65 535 announced, three bytes sent: refused for the length, not
    // truncated (nothing is allocated or awaited for the announced size).
    let payload = [&1u64.to_be_bytes()[..], &[0xff, 0xff], b"abc"].concat();
    assert_eq!(
        decode_one(&raw_frame(1, 3, &payload)),
        Err(DecodeError::CredentialTooLong { len: 65_535, max: MAX_CREDENTIAL_LEN })
    );
    // Within the cap but longer than the payload: truncated.
    let payload = [&1u64.to_be_bytes()[..], &[0x10, 0x00], b"abc"].concat();
    assert_eq!(decode_one(&raw_frame(1, 3, &payload)), Err(DecodeError::Truncated { msg_type: 3 }));
    // A lone length byte: truncated too.
    let payload = [&1u64.to_be_bytes()[..], &[0x00]].concat();
    assert_eq!(decode_one(&raw_frame(1, 3, &payload)), Err(DecodeError::Truncated { msg_type: 3 }));
    // Bytes after the credential: trailing, as after any message.
    let payload = [&1u64.to_be_bytes()[..], &[0, 1], b"ab"].concat();
    assert_eq!(
        decode_one(&raw_frame(1, 3, &payload)),
        Err(DecodeError::TrailingBytes { msg_type: 3, extra: 1 })
    );
    // Each error skips its frame: the next one decodes.
    let mut decoder = Decoder::new();
    let bad = raw_frame(1, 3, &[&1u64.to_be_bytes()[..], &[0xff, 0xff]].concat());
    let good = frame_of(&session_request(2, Some(b"t")));
    let results = decode_all(&mut decoder, &[bad, good].concat());
    assert_eq!(results.len(), 2);
    assert!(matches!(results[0], Err(DecodeError::CredentialTooLong { .. })));
    assert_eq!(results[1], Ok(session_request(2, Some(b"t"))));
}

#[test]
fn a_credential_never_shows_its_bytes_in_debug_output() {
    let secret = Credential::new(*b"hunter2").unwrap();
    let shown = format!("{:?}", session_request(1, Some(secret.as_bytes())));
    assert!(!shown.contains("hunter2") && !shown.contains("104"), "{shown}");
    assert!(shown.contains("7 bytes"), "{shown}");
}

#[test]
fn the_admission_reasons_have_their_documented_tags() {
    for (reason, tag) in [(RejectReason::Unauthorized, 5u8), (RejectReason::AddressLimit, 6)] {
        let reply =
            Message::SessionReply(SessionReply { request_id: 2, outcome: SessionOutcome::Rejected(reason) });
        assert_eq!(frame_of(&reply), raw_frame(1, 4, &[&2u64.to_be_bytes()[..], &[1, tag]].concat()));
    }
    let unknown = raw_frame(1, 4, &[&2u64.to_be_bytes()[..], &[1, 7]].concat());
    assert_eq!(decode_one(&unknown), Err(DecodeError::UnknownTag { field: "reject_reason", value: 7 }));
}
