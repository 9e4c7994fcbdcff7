//! The decoder's errors: fatal ones, skipped frames, limits checked before
//! allocation.

use aos_cluster::wire::*;
use aos_cluster::{Endpoint, InstanceId};

use crate::support::*;

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
