//! Replays the committed `decode` fuzz corpus through the fuzz body on stable.

use aos_cluster::wire::{DecodeError, Decoder, Limits};
use aos_cluster_fuzzing::decode::DecodeInput;

#[test]
fn decode_corpus_replays_cleanly() {
    let corpus = crate::corpus("decode");
    for (path, data) in &corpus {
        let outcome = std::panic::catch_unwind(|| aos_cluster_fuzzing::decode(data));
        assert!(outcome.is_ok(), "corpus file {} broke an invariant", path.display());
    }
}

/// What an input's stream gives in one piece.
#[derive(Default)]
struct Tally {
    decoded: usize,
    skipped: usize,
    unknown_version: usize,
    oversized: usize,
}

fn tally(data: &[u8], into: &mut Tally) {
    let input = DecodeInput::parse(data);
    let mut decoder = Decoder::with_limits(input.limits);
    decoder.feed(input.stream);
    loop {
        match decoder.next() {
            Ok(Some(_)) => into.decoded += 1,
            Ok(None) => return,
            Err(DecodeError::UnknownVersion { .. }) => return into.unknown_version += 1,
            Err(DecodeError::Oversized { .. }) => return into.oversized += 1,
            Err(_) => into.skipped += 1,
        }
    }
}

#[test]
fn the_corpus_reaches_messages_frame_errors_and_both_fatal_errors() {
    // A corpus of only rejected bytes would replay without exercising the
    // re-encoding check, and one without fatal errors would skip the
    // after-the-fatal-error checks; make sure every kind is in it.
    let corpus = crate::corpus("decode");
    let mut seen = Tally::default();
    let mut limits_seen = Vec::new();
    for (_, data) in &corpus {
        tally(data, &mut seen);
        let limits = DecodeInput::parse(data).limits;
        if !limits_seen.contains(&limits) {
            limits_seen.push(limits);
        }
    }
    assert!(seen.decoded >= 10, "only {} messages decode from the corpus", seen.decoded);
    assert!(seen.skipped >= 10, "only {} frame errors in the corpus", seen.skipped);
    assert!(seen.unknown_version >= 1, "no UnknownVersion in the corpus");
    assert!(seen.oversized >= 1, "no Oversized in the corpus");
    assert!(limits_seen.len() >= 5, "the corpus uses only {} distinct limits", limits_seen.len());
}

#[test]
fn the_input_layout_is_as_documented() {
    // Control 0b0_011_01_10: frame limit = parameter % 64, list limit =
    // parameter, three chunk sizes.
    let data = [0b0011_0110, 0x01, 0x45, 0x00, 0x07, 9, 8, 7, 1, 3];
    let input = DecodeInput::parse(&data);
    assert_eq!(input.limits, Limits::default().with_max_frame_len(0x145 % 64).with_max_list_len(7));
    assert_eq!(input.sizes, &[9, 8, 7]);
    assert_eq!(input.stream, &[1, 3]);
    // Too short: zeros are read, the defaults apply and nothing is fed.
    let input = DecodeInput::parse(&[]);
    assert_eq!((input.limits, input.sizes.len(), input.stream.len()), (Limits::default(), 0, 0));
    // Unbounded limits stay usable: the body must not overflow on them.
    aos_cluster_fuzzing::decode(&[0b1111, 0, 0, 0, 0, 1, 3, 0xff, 0xff, 0xff, 0xff]);
}
