//! The encoder refuses what the decoder would, in the decoder's order, and
//! leaves the output as it was.

use aos_cluster::wire::*;
use aos_cluster::{Endpoint, InstanceId, Role, Workload};

use crate::support::*;

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
