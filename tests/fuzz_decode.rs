//! Replays the committed `decode` fuzz corpus through the fuzz body on stable.
#![cfg(feature = "fuzzing")]

mod common;

use aos_cluster::fuzzing::decode::DecodeInput;
use aos_cluster::wire::{Decoder, Limits};

#[test]
fn decode_corpus_replays_cleanly() {
    let corpus = common::corpus("decode");
    for (path, data) in &corpus {
        let outcome = std::panic::catch_unwind(|| aos_cluster::fuzzing::decode(data));
        assert!(outcome.is_ok(), "corpus file {} broke an invariant", path.display());
    }
}

/// Decodes an input's stream in one piece: (messages, frame errors, fatal errors).
fn tally(data: &[u8]) -> (usize, usize, usize) {
    let input = DecodeInput::parse(data);
    let mut decoder = Decoder::with_limits(input.limits);
    decoder.feed(input.stream);
    let (mut decoded, mut skipped) = (0, 0);
    loop {
        match decoder.next() {
            Ok(Some(_)) => decoded += 1,
            Ok(None) => return (decoded, skipped, 0),
            Err(err) if err.is_fatal() => return (decoded, skipped, 1),
            Err(_) => skipped += 1,
        }
    }
}

#[test]
fn the_corpus_reaches_messages_frame_errors_and_fatal_errors() {
    // A corpus of only rejected bytes would replay without exercising the
    // re-encoding check, and one without fatal errors would skip the
    // after-the-fatal-error checks; make sure every kind is in it.
    let corpus = common::corpus("decode");
    let (mut decoded, mut skipped, mut fatal) = (0, 0, 0);
    let mut limits_seen = Vec::new();
    for (_, data) in &corpus {
        let (d, s, f) = tally(data);
        decoded += d;
        skipped += s;
        fatal += f;
        let limits = DecodeInput::parse(data).limits;
        if !limits_seen.contains(&limits) {
            limits_seen.push(limits);
        }
    }
    assert!(decoded >= 10, "only {decoded} messages decode from the corpus");
    assert!(skipped >= 10, "only {skipped} frame errors in the corpus");
    assert!(fatal >= 5, "only {fatal} fatal errors in the corpus");
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
    aos_cluster::fuzzing::decode(&[0b1111, 0, 0, 0, 0, 1, 3, 0xff, 0xff, 0xff, 0xff]);
}
