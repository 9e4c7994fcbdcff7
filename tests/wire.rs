//! The wire codec: round trips, split invariance, bounds and every typed error.

use aos_cluster::wire::*;
use aos_cluster::{Endpoint, InstanceId, Role, Workload};
use proptest::collection::vec;
use proptest::prelude::*;

// ---- strategies -------------------------------------------------------------

fn endpoint() -> impl Strategy<Value = Endpoint> {
    let name_host = "[A-Za-z0-9._-]{1,20}";
    let long_host = "[a-z0-9.-]{240,253}";
    // Bracketed hosts must be real IPv6 addresses, in any of their textual forms.
    let ipv6_host = any::<u128>().prop_map(|bits| std::net::Ipv6Addr::from(bits).to_string());
    let host = prop_oneof![4 => name_host.prop_map(String::from), 1 => long_host.prop_map(String::from), 2 => ipv6_host];
    let instance = proptest::option::of(prop_oneof!["[A-Za-z0-9._-]{1,12}", "[A-Za-z0-9._-]{64}"]);
    (instance, host, 1..=u16::MAX).prop_map(|(instance, host, port)| {
        Endpoint::with_instance(instance.as_deref(), &host, port).expect("strategy builds valid endpoints")
    })
}

fn workload() -> impl Strategy<Value = Workload> {
    (any::<u32>(), any::<u32>()).prop_map(|(a, b)| Workload::new(a, b))
}

fn ranked_list(max_len: usize) -> impl Strategy<Value = RankedList> {
    let entry = (any::<u32>(), endpoint(), workload()).prop_map(|(id, endpoint, workload)| RankedEntry {
        id: InstanceId(id),
        endpoint,
        workload,
    });
    (any::<bool>(), vec(entry, 0..=max_len)).prop_map(|(stale, mut entries)| {
        // Keep first occurrences only: a valid list repeats no id or target.
        let mut kept: Vec<RankedEntry> = Vec::new();
        entries.retain(|e| {
            let fresh = kept.iter().all(|k| k.id != e.id && !k.endpoint.same_target(&e.endpoint));
            if fresh {
                kept.push(e.clone());
            }
            fresh
        });
        RankedList { stale, entries }
    })
}

fn refuse_reason() -> impl Strategy<Value = RefuseReason> {
    prop_oneof![Just(RefuseReason::Busy), Just(RefuseReason::WrongCluster)]
}

fn reject_reason() -> impl Strategy<Value = RejectReason> {
    prop_oneof![
        Just(RejectReason::Full),
        Just(RejectReason::Draining),
        Just(RejectReason::NotServing),
        Just(RejectReason::Busy),
        Just(RejectReason::AlreadyInSession),
        Just(RejectReason::Unauthorized),
        Just(RejectReason::AddressLimit)
    ]
}

/// Empty, short, or around the 4 KiB cap.
fn credential() -> impl Strategy<Value = Credential> {
    let len = prop_oneof![4 => 0usize..=40, 1 => (MAX_CREDENTIAL_LEN - 3)..=MAX_CREDENTIAL_LEN];
    (len, any::<u8>()).prop_map(|(len, seed)| {
        let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
        Credential::new(bytes).expect("at most the cap")
    })
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Serving), Just(Role::LoadBalancerOnly), Just(Role::Standalone)]
}

fn message() -> impl Strategy<Value = Message> {
    let cluster = proptest::option::of(prop_oneof![".{0,16}", "[a-z]{255}", "é{127}"]);
    prop_oneof![
        (any::<u64>(), any::<u64>(), any::<bool>(), cluster).prop_map(
            |(request_id, salt, load_balance, cluster)| {
                Message::HandshakeRequest(HandshakeRequest { request_id, salt, load_balance, cluster })
            }
        ),
        (any::<u64>(), ranked_list(12)).prop_map(|(request_id, list)| {
            Message::HandshakeReply(HandshakeReply { request_id, outcome: HandshakeOutcome::Ranked(list) })
        }),
        (any::<u64>(), refuse_reason()).prop_map(|(request_id, reason)| {
            Message::HandshakeReply(HandshakeReply { request_id, outcome: HandshakeOutcome::Refused(reason) })
        }),
        (any::<u64>(), proptest::option::of(credential())).prop_map(|(request_id, credential)| {
            Message::SessionRequest(SessionRequest { request_id, credential })
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(request_id, session_id)| {
            Message::SessionReply(SessionReply {
                request_id,
                outcome: SessionOutcome::Accepted { session_id: SessionId(session_id) },
            })
        }),
        (any::<u64>(), reject_reason()).prop_map(|(request_id, reason)| {
            Message::SessionReply(SessionReply { request_id, outcome: SessionOutcome::Rejected(reason) })
        }),
        any::<u64>()
            .prop_map(|query_id| Message::WorkloadQuery(WorkloadQuery { query_id: QueryId(query_id) })),
        (any::<u64>(), any::<u32>(), role(), any::<bool>(), any::<u32>(), any::<u32>()).prop_map(
            |(query_id, id, role, accepting, a, b)| {
                // Reports on the wire satisfy connected <= max_sessions.
                let workload = Workload::new(a.min(b), a.max(b));
                Message::WorkloadReport(WorkloadReport {
                    query_id: QueryId(query_id),
                    id: InstanceId(id),
                    role,
                    accepting,
                    workload,
                })
            }
        ),
    ]
}

/// Frames with version 1, a correct length and a random type and payload, and
/// now and then raw bytes: reaches the payload errors, not only the header ones.
fn framed_garbage() -> impl Strategy<Value = Vec<u8>> {
    let segment = prop_oneof![
        4 => (0u8..8, vec(any::<u8>(), 0..48)).prop_map(|(t, p)| raw_frame(1, t, &p)),
        1 => vec(any::<u8>(), 0..8),
    ];
    vec(segment, 0..10).prop_map(|segments| segments.concat())
}

// ---- helpers ----------------------------------------------------------------

fn frame_of(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode(msg, &mut out).expect("valid message encodes");
    out
}

/// Builds a frame by hand, so error cases do not depend on the encoder.
fn raw_frame(version: u8, msg_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![version, msg_type];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn raw_entry(id: u32, connected: u32, max: u32, endpoint: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for word in [id, connected, max] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out.extend_from_slice(&(endpoint.len() as u16).to_be_bytes());
    out.extend_from_slice(endpoint.as_bytes());
    out
}

fn raw_ranked(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut payload = 77u64.to_be_bytes().to_vec();
    payload.extend_from_slice(&[0, 0]);
    payload.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        payload.extend_from_slice(e);
    }
    raw_frame(1, 2, &payload)
}

/// Decodes `bytes` fed in one piece; collects until `Ok(None)` or a fatal error.
fn decode_all(decoder: &mut Decoder, bytes: &[u8]) -> Vec<Result<Message, DecodeError>> {
    decoder.feed(bytes);
    drain(decoder)
}

fn drain(decoder: &mut Decoder) -> Vec<Result<Message, DecodeError>> {
    let mut out = Vec::new();
    loop {
        match decoder.next() {
            Ok(None) => return out,
            Ok(Some(m)) => out.push(Ok(m)),
            Err(e) => {
                let fatal = e.is_fatal();
                out.push(Err(e));
                if fatal {
                    return out;
                }
            }
        }
    }
}

fn decode_one(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut decoder = Decoder::new();
    let mut results = decode_all(&mut decoder, bytes);
    assert_eq!(results.len(), 1, "expected exactly one result from {bytes:?}: {results:?}");
    results.pop().unwrap()
}

/// Feeds `bytes` cut at `cuts` (positions, any order), draining after each piece.
fn decode_split(bytes: &[u8], cuts: &[usize], limits: Limits) -> Vec<Result<Message, DecodeError>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(bytes.len());
    let mut decoder = Decoder::with_limits(limits);
    let mut out = Vec::new();
    let mut at = 0;
    for cut in cuts {
        decoder.feed(&bytes[at..cut]);
        at = cut;
        let batch = drain(&mut decoder);
        let fatal = batch.last().is_some_and(|r| r.as_ref().is_err_and(DecodeError::is_fatal));
        out.extend(batch);
        if fatal {
            break;
        }
        assert!(decoder.buffered() < HEADER_LEN + limits.max_frame_len);
    }
    out
}

// ---- properties ---------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_message_round_trips(msg in message()) {
        let frame = frame_of(&msg);
        prop_assert_eq!(frame[0], PROTOCOL_VERSION);
        prop_assert_eq!(u32::from_be_bytes(frame[2..6].try_into().unwrap()) as usize, frame.len() - HEADER_LEN);
        let mut decoder = Decoder::new();
        decoder.feed(&frame);
        prop_assert_eq!(decoder.next(), Ok(Some(msg)));
        prop_assert_eq!(decoder.next(), Ok(None));
        prop_assert_eq!(decoder.buffered(), 0);
        prop_assert_eq!(decoder.finish(), Ok(()));
    }

    #[test]
    fn encode_appends_without_touching_what_is_there(prefix in vec(any::<u8>(), 0..32), msg in message()) {
        let mut out = prefix.clone();
        encode(&msg, &mut out).unwrap();
        prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
        prop_assert_eq!(&out[prefix.len()..], &frame_of(&msg)[..]);
    }

    #[test]
    fn any_split_of_a_stream_decodes_the_same(
        msgs in vec(message(), 0..8),
        cuts in vec(any::<usize>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for m in &msgs {
            encode(m, &mut stream).unwrap();
        }
        let expected: Vec<Result<Message, DecodeError>> = msgs.into_iter().map(Ok).collect();
        prop_assert_eq!(decode_split(&stream, &cuts, Limits::default()), expected);
    }

    #[test]
    fn byte_at_a_time_decodes_the_same(msgs in vec(message(), 1..4)) {
        let mut stream = Vec::new();
        for m in &msgs {
            encode(m, &mut stream).unwrap();
        }
        let cuts: Vec<usize> = (0..stream.len()).collect();
        let expected: Vec<Result<Message, DecodeError>> = msgs.into_iter().map(Ok).collect();
        prop_assert_eq!(decode_split(&stream, &cuts, Limits::default()), expected);
    }

    /// Arbitrary bytes: no panic, the split does not change the outcome (errors
    /// included), and a drained decoder holds less than one maximal frame.
    #[test]
    fn arbitrary_bytes_are_split_invariant_and_bounded(
        bytes in prop_oneof![vec(any::<u8>(), 0..600), framed_garbage()],
        cuts in vec(any::<usize>(), 0..16),
        max_frame_len in 0usize..64,
    ) {
        let limits = Limits::default().with_max_frame_len(max_frame_len);
        let whole = decode_split(&bytes, &[], limits);
        prop_assert_eq!(decode_split(&bytes, &cuts, limits), whole);
    }

    /// The decoder reads endpoint text exactly as `Endpoint::from_str` does:
    /// the same value, or `InvalidEndpoint` carrying the parser's own error.
    #[test]
    fn endpoint_text_decodes_as_the_parser_reads_it(
        text in prop_oneof![
            "[a-zA-Z0-9@:. \\[\\]_-]{0,24}",
            "([A-Za-z0-9]{0,6}@)?(\\[[0-9a-f:.]{0,10}\\]|[a-z0-9.]{0,10})(:[0-9]{0,6})?",
        ],
    ) {
        let frame = raw_ranked(&[raw_entry(1, 2, 3, &text)]);
        let decoded = decode_one(&frame);
        match text.parse::<Endpoint>() {
            Ok(endpoint) => {
                let entry = RankedEntry { id: InstanceId(1), endpoint, workload: Workload::new(2, 3) };
                let list = RankedList { stale: false, entries: vec![entry] };
                let expected = Message::HandshakeReply(HandshakeReply {
                    request_id: 77,
                    outcome: HandshakeOutcome::Ranked(list),
                });
                prop_assert_eq!(decoded, Ok(expected));
            }
            Err(err) => prop_assert_eq!(decoded, Err(DecodeError::InvalidEndpoint(err))),
        }
    }

    /// Valid frames with the first byte forced to 1 and one byte corrupted:
    /// mostly real frame errors rather than version errors. Every outcome is a
    /// message that re-encodes to itself or a typed error.
    #[test]
    fn corrupted_frames_give_typed_errors(msg in message(), at in any::<usize>(), byte in any::<u8>()) {
        let mut frame = frame_of(&msg);
        let at = 1 + at % (frame.len() - 1);
        frame[at] = byte;
        let mut decoder = Decoder::new();
        for decoded in decode_all(&mut decoder, &frame).into_iter().flatten() {
            let mut again = Decoder::with_limits(Limits::default().with_max_frame_len(usize::MAX));
            let mut bytes = Vec::new();
            encode_with_limits(&decoded, again.limits(), &mut bytes).unwrap();
            again.feed(&bytes);
            prop_assert_eq!(again.next(), Ok(Some(decoded)));
        }
    }
}

// ---- layout ------------------------------------------------------------------

#[test]
fn layout_matches_the_documented_bytes() {
    let msg = Message::HandshakeReply(HandshakeReply {
        request_id: 0x0102_0304_0506_0708,
        outcome: HandshakeOutcome::Ranked(RankedList {
            stale: true,
            entries: vec![RankedEntry {
                id: InstanceId(9),
                endpoint: "AOS01@aos1:2713".parse().unwrap(),
                workload: Workload::new(3, 10),
            }],
        }),
    });
    let mut payload = vec![1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 0, 0, 1];
    payload.extend(raw_entry(9, 3, 10, "AOS01@aos1:2713"));
    assert_eq!(frame_of(&msg), raw_frame(1, 2, &payload));

    let report = Message::WorkloadReport(WorkloadReport {
        query_id: QueryId(5),
        id: InstanceId(0x0a0b_0c0d),
        role: Role::LoadBalancerOnly,
        accepting: true,
        workload: Workload::new(4, 10),
    });
    let payload = [0, 0, 0, 0, 0, 0, 0, 5, 10, 11, 12, 13, 1, 1, 0, 0, 0, 4, 0, 0, 0, 10];
    assert_eq!(frame_of(&report), raw_frame(1, 6, &payload));

    let request = Message::HandshakeRequest(HandshakeRequest {
        request_id: 1,
        salt: 2,
        load_balance: false,
        cluster: Some("ax".into()),
    });
    let payload = [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 2, b'a', b'x'];
    assert_eq!(frame_of(&request), raw_frame(1, 1, &payload));

    let rejected = Message::SessionReply(SessionReply {
        request_id: 3,
        outcome: SessionOutcome::Rejected(RejectReason::NotServing),
    });
    assert_eq!(frame_of(&rejected), raw_frame(1, 4, &[0, 0, 0, 0, 0, 0, 0, 3, 1, 2]));
}

#[test]
fn ipv6_endpoints_are_written_bracketed_and_short_forms_are_read() {
    let list = raw_ranked(&[raw_entry(1, 0, 5, "[::1]:2712"), raw_entry(2, 0, 5, "AOS02@aos2")]);
    let Ok(Message::HandshakeReply(reply)) = decode_one(&list) else { panic!("valid list") };
    let HandshakeOutcome::Ranked(ranked) = &reply.outcome else { panic!("ranked") };
    assert_eq!(ranked.entries[0].endpoint.host(), "::1");
    assert_eq!(ranked.entries[1].endpoint.port(), aos_cluster::DEFAULT_PORT);
    // Re-encoding writes the canonical form of both.
    let again = frame_of(&Message::HandshakeReply(reply.clone()));
    assert_eq!(again, raw_ranked(&[raw_entry(1, 0, 5, "[::1]:2712"), raw_entry(2, 0, 5, "AOS02@aos2:2712")]));
}

// ---- decode errors ---------------------------------------------------------------

#[test]
fn unknown_version_is_fatal_and_sticky() {
    let good = frame_of(&Message::SessionRequest(SessionRequest { request_id: 1, credential: None }));
    let mut bad = good.clone();
    bad[0] = 2;
    let mut decoder = Decoder::new();
    decoder.feed(&bad);
    decoder.feed(&good);
    let err = DecodeError::UnknownVersion { version: 2 };
    assert_eq!(decoder.next(), Err(err.clone()));
    assert!(err.is_fatal());
    assert_eq!(decoder.buffered(), 0);
    decoder.feed(&good);
    assert_eq!(decoder.buffered(), 0, "a poisoned decoder buffers nothing");
    assert_eq!(decoder.next(), Err(err.clone()));
    assert_eq!(decoder.finish(), Err(err.clone()));
    assert_eq!(decoder.fatal_error(), Some(&err));
}

#[test]
fn huge_length_is_refused_from_the_header_alone() {
    let mut decoder = Decoder::new();
    decoder.feed(&[1, 3, 0xff, 0xff, 0xff]);
    assert_eq!(decoder.next(), Ok(None));
    decoder.feed(&[0xff]);
    let err = DecodeError::Oversized { len: u32::MAX, max: DEFAULT_MAX_FRAME_LEN };
    assert_eq!(decoder.next(), Err(err.clone()));
    decoder.feed(&[0; 1000]);
    assert_eq!(decoder.buffered(), 0);
    assert_eq!(decoder.next(), Err(err));
}

#[test]
fn frame_limit_is_inclusive() {
    let limits = Limits::default().with_max_frame_len(8);
    let mut decoder = Decoder::with_limits(limits);
    decoder.feed(&raw_frame(1, 3, &7u64.to_be_bytes()));
    assert_eq!(
        decoder.next(),
        Ok(Some(Message::SessionRequest(SessionRequest { request_id: 7, credential: None })))
    );
    decoder.feed(&raw_frame(1, 3, &[0; 9]));
    assert_eq!(decoder.next(), Err(DecodeError::Oversized { len: 9, max: 8 }));
}

#[test]
fn frame_errors_skip_the_frame_and_decoding_goes_on() {
    let good = Message::WorkloadQuery(WorkloadQuery { query_id: QueryId(4) });
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (raw_frame(1, 0, &[]), DecodeError::UnknownType { msg_type: 0 }),
        (raw_frame(1, 7, &[1, 2, 3]), DecodeError::UnknownType { msg_type: 7 }),
        (raw_frame(1, 3, &[0; 7]), DecodeError::Truncated { msg_type: 3 }),
        (raw_frame(1, 5, &[0; 9]), DecodeError::TrailingBytes { msg_type: 5, extra: 1 }),
        (
            raw_frame(1, 1, &[[0; 16].as_slice(), &[2, 0]].concat()),
            DecodeError::InvalidBool { field: "load_balance", value: 2 },
        ),
        (
            raw_frame(1, 1, &[[0; 16].as_slice(), &[1, 2]].concat()),
            DecodeError::UnknownTag { field: "cluster", value: 2 },
        ),
        (
            raw_frame(1, 1, &[[0; 16].as_slice(), &[1, 1, 2, 0xc3, 0x28]].concat()),
            DecodeError::InvalidUtf8 { field: "cluster" },
        ),
        (
            raw_frame(1, 1, &[[0; 16].as_slice(), &[1, 1, 3, b'a']].concat()),
            DecodeError::Truncated { msg_type: 1 },
        ),
        (
            raw_frame(1, 2, &[[0; 8].as_slice(), &[2]].concat()),
            DecodeError::UnknownTag { field: "handshake_outcome", value: 2 },
        ),
        (
            raw_frame(1, 2, &[[0; 8].as_slice(), &[1, 2]].concat()),
            DecodeError::UnknownTag { field: "refuse_reason", value: 2 },
        ),
        (
            raw_frame(1, 4, &[[0; 8].as_slice(), &[1, 7]].concat()),
            DecodeError::UnknownTag { field: "reject_reason", value: 7 },
        ),
        (raw_frame(1, 4, &[[0; 8].as_slice(), &[0]].concat()), DecodeError::Truncated { msg_type: 4 }),
        (
            raw_frame(1, 6, &[[0; 12].as_slice(), &[3, 0], &[0; 8]].concat()),
            DecodeError::UnknownTag { field: "role", value: 3 },
        ),
        (
            raw_frame(1, 6, &[[0; 12].as_slice(), &[0, 1, 0, 0, 0, 11, 0, 0, 0, 10]].concat()),
            DecodeError::ConnectedAboveMax { connected: 11, max_sessions: 10 },
        ),
        (
            raw_ranked(&[raw_entry(1, 0, 1, "aos1:1"), raw_entry(1, 0, 1, "aos2:1")]),
            DecodeError::DuplicateEntry { index: 1, what: Duplicate::Id(InstanceId(1)) },
        ),
        (
            // The same endpoint in two spellings is still a duplicate.
            raw_ranked(&[
                raw_entry(1, 0, 1, "x:1"),
                raw_entry(2, 0, 1, "aos1"),
                raw_entry(3, 0, 1, "aos1:2712"),
            ]),
            DecodeError::DuplicateEntry { index: 2, what: Duplicate::Endpoint },
        ),
        (
            raw_ranked(&[raw_entry(1, 0, 1, "aos1:0")]),
            DecodeError::InvalidEndpoint("aos1:0".parse::<Endpoint>().unwrap_err()),
        ),
        (
            raw_ranked(&[raw_entry(1, 0, 1, &"h".repeat(MAX_ENDPOINT_TEXT_LEN + 1))]),
            DecodeError::StringTooLong {
                field: "endpoint",
                len: MAX_ENDPOINT_TEXT_LEN + 1,
                max: MAX_ENDPOINT_TEXT_LEN,
            },
        ),
        (
            raw_ranked(&[[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 3, 0xff, b':', b'1'].to_vec()]),
            DecodeError::InvalidUtf8 { field: "endpoint" },
        ),
    ];
    for (bad, expected) in cases {
        assert!(!expected.is_fatal());
        let mut stream = bad.clone();
        encode(&good, &mut stream).unwrap();
        let mut decoder = Decoder::new();
        let results = decode_all(&mut decoder, &stream);
        assert_eq!(results, vec![Err(expected.clone()), Ok(good.clone())], "case {bad:?}");
        assert_eq!(decoder.finish(), Ok(()));
    }
}

#[test]
fn a_bool_list_flag_other_than_zero_or_one_is_refused() {
    let mut frame = raw_ranked(&[]);
    frame[HEADER_LEN + 9] = 7;
    assert_eq!(decode_one(&frame), Err(DecodeError::InvalidBool { field: "stale", value: 7 }));
}

#[test]
fn list_count_is_capped_before_allocation() {
    let mut payload = vec![0; 8];
    payload.extend_from_slice(&[0, 0]);
    payload.extend_from_slice(&u32::MAX.to_be_bytes());
    let err = DecodeError::ListTooLong { len: u32::MAX, max: DEFAULT_MAX_LIST_LEN };
    assert_eq!(decode_one(&raw_frame(1, 2, &payload)), Err(err));

    // Within the cap, but more entries than the payload could hold.
    let mut payload = vec![0; 8];
    payload.extend_from_slice(&[0, 0]);
    payload.extend_from_slice(&1000u32.to_be_bytes());
    payload.extend(raw_entry(1, 0, 1, "aos1:1"));
    assert_eq!(decode_one(&raw_frame(1, 2, &payload)), Err(DecodeError::Truncated { msg_type: 2 }));

    let small = Limits::default().with_max_list_len(1);
    let two = raw_ranked(&[raw_entry(1, 0, 1, "a:1"), raw_entry(2, 0, 1, "b:1")]);
    let mut decoder = Decoder::with_limits(small);
    decoder.feed(&two);
    assert_eq!(decoder.next(), Err(DecodeError::ListTooLong { len: 2, max: 1 }));
}

#[test]
fn finish_reports_an_incomplete_frame() {
    let frame = frame_of(&Message::SessionRequest(SessionRequest { request_id: 1, credential: None }));
    let mut decoder = Decoder::new();
    decoder.feed(&frame[..10]);
    assert_eq!(decoder.next(), Ok(None));
    assert_eq!(decoder.finish(), Err(DecodeError::UnexpectedEof { buffered: 10 }));
    decoder.feed(&frame[10..]);
    assert!(decoder.next().unwrap().is_some());
    assert_eq!(decoder.finish(), Ok(()));
}

#[test]
fn decoder_reuses_its_buffer() {
    let msg = Message::WorkloadQuery(WorkloadQuery { query_id: QueryId(1) });
    let frame = frame_of(&msg);
    let mut decoder = Decoder::new();
    let mut peak = 0;
    for _ in 0..10_000 {
        // Half a frame at a time, so a partial frame is always left behind.
        let (a, b) = frame.split_at(7);
        decoder.feed(a);
        assert_eq!(decoder.next(), Ok(None));
        decoder.feed(b);
        assert_eq!(decoder.next(), Ok(Some(msg.clone())));
        peak = peak.max(decoder.buffered());
    }
    assert_eq!(decoder.buffered(), 0);
    assert!(peak <= frame.len());
}

// ---- encode errors ------------------------------------------------------------------

fn long_endpoint(i: usize) -> Endpoint {
    let host = format!("{i:04}{}", "h".repeat(249));
    Endpoint::with_instance(Some(&"I".repeat(64)), &host, 65535).unwrap()
}

fn reply_with(entries: Vec<RankedEntry>) -> Message {
    Message::HandshakeReply(HandshakeReply {
        request_id: 1,
        outcome: HandshakeOutcome::Ranked(RankedList { stale: false, entries }),
    })
}

fn entry(id: u32, endpoint: Endpoint) -> RankedEntry {
    RankedEntry { id: InstanceId(id), endpoint, workload: Workload::new(0, 1) }
}

#[test]
fn encode_refuses_what_the_decoder_would_refuse_and_leaves_out_unchanged() {
    let max_list = (0..1024).map(|i| entry(i as u32, long_endpoint(i))).collect::<Vec<_>>();
    let over_list =
        (0..1025).map(|i| entry(i as u32, format!("a{i}:1").parse().unwrap())).collect::<Vec<_>>();
    let cases: Vec<(Message, EncodeError)> = vec![
        (reply_with(max_list), EncodeError::FrameTooLarge { len: 8 + 6 + 1024 * (14 + 324), max: 65536 }),
        (reply_with(over_list), EncodeError::ListTooLong { len: 1025, max: 1024 }),
        (
            reply_with(vec![entry(1, "a:1".parse().unwrap()), entry(1, "b:1".parse().unwrap())]),
            EncodeError::DuplicateEntry { index: 1, what: Duplicate::Id(InstanceId(1)) },
        ),
        (
            reply_with(vec![
                entry(1, "a:1".parse().unwrap()),
                entry(2, "b:1".parse().unwrap()),
                entry(3, "a:1".parse().unwrap()),
            ]),
            EncodeError::DuplicateEntry { index: 2, what: Duplicate::Endpoint },
        ),
        (
            Message::HandshakeRequest(HandshakeRequest {
                request_id: 1,
                salt: 0,
                load_balance: true,
                cluster: Some("c".repeat(256)),
            }),
            EncodeError::ClusterNameTooLong { len: 256 },
        ),
        (
            Message::WorkloadReport(WorkloadReport {
                query_id: QueryId(1),
                id: InstanceId(1),
                role: Role::Serving,
                accepting: true,
                workload: Workload::new(2, 1),
            }),
            EncodeError::ConnectedAboveMax { connected: 2, max_sessions: 1 },
        ),
    ];
    for (msg, expected) in cases {
        let mut out = vec![9, 9, 9];
        assert_eq!(encode(&msg, &mut out), Err(expected));
        assert_eq!(out, [9, 9, 9]);
    }
}

#[test]
fn the_longest_endpoint_fits_its_cap_and_a_big_frame_limit_takes_the_full_list() {
    let longest = long_endpoint(0);
    assert_eq!(longest.to_string().len(), MAX_ENDPOINT_TEXT_LEN - 2, "no brackets on a name host");
    // The longest IPv6 text (45 characters, bracketed) is far below a 253-character name.
    let v6 = Endpoint::with_instance(
        Some(&"I".repeat(64)),
        "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
        65535,
    )
    .unwrap();
    assert!(v6.to_string().len() <= MAX_ENDPOINT_TEXT_LEN);

    let entries = (0..1024).map(|i| entry(i as u32, long_endpoint(i))).collect::<Vec<_>>();
    let msg = reply_with(entries);
    let limits = Limits::default().with_max_frame_len(1 << 20);
    let mut out = Vec::new();
    encode_with_limits(&msg, &limits, &mut out).unwrap();
    let mut decoder = Decoder::with_limits(limits);
    decoder.feed(&out);
    assert_eq!(decoder.next(), Ok(Some(msg)));
    // The default decoder refuses the same frame from its header.
    let mut strict = Decoder::new();
    strict.feed(&out[..HEADER_LEN]);
    assert!(matches!(strict.next(), Err(DecodeError::Oversized { .. })));
}

#[test]
fn an_empty_ranked_list_round_trips() {
    let msg = reply_with(Vec::new());
    assert_eq!(decode_one(&frame_of(&msg)), Ok(msg));
}

// ---- cutting a list to one frame --------------------------------------------------------

fn ranked_payload_len(entries: &[RankedEntry]) -> usize {
    14 + entries.iter().map(|e| 14 + e.endpoint.to_string().len()).sum::<usize>()
}

#[test]
fn a_thousand_maximal_entries_are_cut_to_exactly_what_fits_one_default_frame() {
    let entries = (0..1024).map(|i| entry(i as u32, long_endpoint(i))).collect::<Vec<_>>();
    assert_eq!(entries[0].endpoint.host().len(), aos_cluster::endpoint::MAX_HOST_LEN);
    let limits = Limits::default();
    let fit = entries_that_fit(&entries, &limits);
    // 14 fixed bytes, then 14 + 324 per entry: 193 entries in 65 536 bytes.
    assert_eq!(fit, (DEFAULT_MAX_FRAME_LEN - 14) / (14 + 324));
    assert_eq!(fit, 193);
    assert!(ranked_payload_len(&entries[..fit]) <= DEFAULT_MAX_FRAME_LEN);
    assert!(ranked_payload_len(&entries[..fit + 1]) > DEFAULT_MAX_FRAME_LEN, "the bound is exact");

    // The cut list encodes and decodes with the default limits on both sides.
    let cut = reply_with(entries[..fit].to_vec());
    let frame = frame_of(&cut);
    assert_eq!(decode_one(&frame), Ok(cut));
    // One more entry does not fit.
    let over = reply_with(entries[..fit + 1].to_vec());
    let len = ranked_payload_len(&entries[..fit + 1]);
    assert_eq!(
        encode(&over, &mut Vec::new()),
        Err(EncodeError::FrameTooLarge { len, max: DEFAULT_MAX_FRAME_LEN })
    );
}

#[test]
fn entries_that_fit_honours_both_limits_and_the_empty_reply() {
    let short = (0..50).map(|i| entry(i, format!("a{i}:1").parse().unwrap())).collect::<Vec<_>>();
    assert_eq!(entries_that_fit(&short, &Limits::default()), 50, "a short list is whole");
    assert_eq!(entries_that_fit(&short, &Limits::default().with_max_list_len(7)), 7);
    assert_eq!(entries_that_fit(&[], &Limits::default()), 0);
    // Exactly the first entry's bytes, then one byte less.
    let first = ranked_payload_len(&short[..1]);
    assert_eq!(entries_that_fit(&short, &Limits::default().with_max_frame_len(first)), 1);
    assert_eq!(entries_that_fit(&short, &Limits::default().with_max_frame_len(first - 1)), 0);
    // Below the reply's own 14 bytes nothing fits, not even an empty list.
    assert_eq!(entries_that_fit(&short, &Limits::default().with_max_frame_len(13)), 0);
    let limits = Limits::default().with_max_frame_len(13);
    assert_eq!(
        encode_with_limits(&reply_with(Vec::new()), &limits, &mut Vec::new()),
        Err(EncodeError::FrameTooLarge { len: 14, max: 13 })
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Under any frame and list limit, the cut encodes and one entry more does not.
    #[test]
    fn entries_that_fit_is_the_exact_bound(
        list in ranked_list(40),
        max_frame_len in 0usize..4000,
        max_list_len in 0usize..50,
    ) {
        let limits = Limits::default().with_max_frame_len(max_frame_len).with_max_list_len(max_list_len);
        let fit = entries_that_fit(&list.entries, &limits);
        let msg = |n: usize| reply_with(list.entries[..n].to_vec());
        if max_frame_len >= 14 {
            let mut out = Vec::new();
            prop_assert_eq!(encode_with_limits(&msg(fit), &limits, &mut out), Ok(()));
            prop_assert_eq!(decode_split(&out, &[], limits), vec![Ok(msg(fit))]);
        } else {
            prop_assert_eq!(fit, 0);
        }
        if fit < list.entries.len() {
            let refused = encode_with_limits(&msg(fit + 1), &limits, &mut Vec::new());
            prop_assert!(
                matches!(refused, Err(EncodeError::FrameTooLarge { .. } | EncodeError::ListTooLong { .. })),
                "{:?}", refused
            );
        }
    }
}

// ---- duplicates compared as targets -----------------------------------------------------

#[test]
fn a_target_repeated_under_another_label_or_case_is_a_duplicate_both_ways() {
    let cases: [(&str, &str); 4] =
        [("AOS01@h:2712", "h:2712"), ("H:2712", "h"), ("A@aos1:7", "B@AOS1:7"), ("[::1]:5", "[0:0::1]:5")];
    for (first, again) in cases {
        let raw =
            raw_ranked(&[raw_entry(1, 0, 1, first), raw_entry(2, 0, 1, "x:1"), raw_entry(3, 0, 1, again)]);
        let expected = DecodeError::DuplicateEntry { index: 2, what: Duplicate::Endpoint };
        assert_eq!(decode_one(&raw), Err(expected), "{first} then {again}");
        let msg = reply_with(vec![
            entry(1, first.parse().unwrap()),
            entry(2, "x:1".parse().unwrap()),
            entry(3, again.parse().unwrap()),
        ]);
        let mut out = vec![7];
        let expected = EncodeError::DuplicateEntry { index: 2, what: Duplicate::Endpoint };
        assert_eq!(encode(&msg, &mut out), Err(expected), "{first} then {again}");
        assert_eq!(out, [7]);
    }
    // Same host on another port, or another host: no duplicate.
    let fine = reply_with(vec![entry(1, "h:1".parse().unwrap()), entry(2, "H:2".parse().unwrap())]);
    assert_eq!(decode_one(&frame_of(&fine)), Ok(fine));
}

#[test]
fn long_lists_find_the_first_repeat_like_short_ones() {
    // 300 entries: the sorting path. The earliest repeat wins, an id repeat
    // before a target repeat at the same position.
    let mut entries: Vec<RankedEntry> =
        (0..300).map(|i| entry(i, format!("host{i}:1").parse().unwrap())).collect();
    entries[250] = entry(250, "X@HOST17:1".parse().unwrap());
    entries[200] = entry(3, "host200:1".parse().unwrap());
    let msg = reply_with(entries.clone());
    let expected = Duplicate::Id(InstanceId(3));
    assert_eq!(
        encode(&msg, &mut Vec::new()),
        Err(EncodeError::DuplicateEntry { index: 200, what: expected })
    );
    entries[200] = entry(200, "host200:1".parse().unwrap());
    entries[120] = entry(17, "HOST17:1".parse().unwrap());
    let msg = reply_with(entries);
    assert_eq!(
        encode(&msg, &mut Vec::new()),
        Err(EncodeError::DuplicateEntry { index: 120, what: Duplicate::Id(InstanceId(17)) })
    );
}

// ---- the encoder checks in the decoder's order --------------------------------------------

#[test]
fn an_oversized_overlong_list_is_refused_for_its_size_on_both_sides() {
    // Too many entries AND too many bytes: the decoder sees the length in the
    // header first, so the encoder reports the size too.
    let entries = (0..30).map(|i| entry(i, long_endpoint(i as usize))).collect::<Vec<_>>();
    let limits = Limits::default().with_max_list_len(10).with_max_frame_len(5000);
    let msg = reply_with(entries.clone());
    let len = ranked_payload_len(&entries);
    assert_eq!(
        encode_with_limits(&msg, &limits, &mut Vec::new()),
        Err(EncodeError::FrameTooLarge { len, max: 5000 })
    );
    let mut loose = Vec::new();
    encode_with_limits(&msg, &Limits::default(), &mut loose).unwrap();
    let mut decoder = Decoder::with_limits(limits);
    decoder.feed(&loose);
    assert_eq!(decoder.next(), Err(DecodeError::Oversized { len: len as u32, max: 5000 }));
}

// ---- the session request's credential -----------------------------------------

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
