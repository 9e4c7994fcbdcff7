//! Fuzz body for the `decode` target: the wire decoder on arbitrary bytes.
//!
//! Layout of the input: byte 0 gives `k = data[0] % 8` chunk-size bytes that
//! follow it; the rest is the stream. The stream is fed in chunks whose sizes
//! cycle through those bytes (each `size + 1`), draining the decoder after
//! every chunk, and again in one piece. Checked:
//! - no panic;
//! - both splits give the same sequence of messages and errors;
//! - after draining, the decoder holds less than one maximal frame;
//! - every decoded message re-encodes, and that frame decodes to the same message.

use crate::wire::{encode_with_limits, DecodeError, Decoder, Limits, Message, HEADER_LEN};

/// Feeds `data` through the wire decoder as described in the module docs.
pub fn decode(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(first % 8).min(rest.len());
    let (sizes, stream) = rest.split_at(split);

    let whole = run(stream, &[]);
    let chunked = run(stream, sizes);
    assert_eq!(whole, chunked, "the split changed what was decoded");

    for msg in whole.iter().filter_map(|r| r.as_ref().ok()) {
        assert_reencodes(msg);
    }
}

/// Decodes `stream` fed in chunks of `sizes` (cycled; empty means one piece).
fn run(stream: &[u8], sizes: &[u8]) -> Vec<Result<Message, DecodeError>> {
    let mut decoder = Decoder::new();
    let bound = HEADER_LEN + decoder.limits().max_frame_len;
    let mut results = Vec::new();
    let mut rest = stream;
    let mut size_at = 0;
    while !rest.is_empty() {
        let take = match sizes.get(size_at % sizes.len().max(1)) {
            Some(&size) => (usize::from(size) + 1).min(rest.len()),
            None => rest.len(),
        };
        size_at += 1;
        let (chunk, tail) = rest.split_at(take);
        rest = tail;
        decoder.feed(chunk);
        loop {
            match decoder.next() {
                Ok(None) => break,
                Ok(Some(msg)) => results.push(Ok(msg)),
                Err(err) => {
                    let fatal = err.is_fatal();
                    results.push(Err(err));
                    if fatal {
                        assert_eq!(decoder.buffered(), 0, "a fatal error keeps no bytes");
                        return results;
                    }
                }
            }
        }
        assert!(decoder.buffered() < bound, "decoder holds {} bytes after draining", decoder.buffered());
    }
    results
}

fn assert_reencodes(msg: &Message) {
    // An endpoint received in a short form (`aos1`) re-encodes longer
    // (`aos1:2712`), so a frame at the limit may not fit it again: the
    // re-encoding check is about values, not the frame limit.
    let relaxed = Limits::default().with_max_frame_len(usize::MAX);
    let mut frame = Vec::new();
    encode_with_limits(msg, &relaxed, &mut frame).expect("a decoded message re-encodes");
    let mut decoder = Decoder::with_limits(relaxed);
    decoder.feed(&frame);
    assert_eq!(decoder.next(), Ok(Some(msg.clone())), "re-encoded frame decodes to the same message");
    assert_eq!(decoder.next(), Ok(None));
    assert_eq!(decoder.finish(), Ok(()));
}
