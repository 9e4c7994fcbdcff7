//! Properties of the codec: round trips, split invariance, typed errors on
//! any corruption.

use aos_cluster::wire::*;
use aos_cluster::{Endpoint, InstanceId, Workload};
use proptest::collection::vec;
use proptest::prelude::*;

use crate::strategies::*;
use crate::support::*;

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
