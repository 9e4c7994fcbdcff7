//! Fuzz body for the `decode` target: the wire decoder on arbitrary bytes,
//! under limits and splits the input chooses.
//!
//! Layout of the input (see
//! [`DecodeInput::parse`](crate::decode::DecodeInput::parse)): a control byte, four
//! bytes of limit parameters, up to seven chunk sizes, then the stream. The
//! stream is fed in chunks whose sizes cycle through the chunk sizes (each
//! `size + 1`), draining the decoder after every chunk, and again in one
//! piece. Checked:
//! - no panic;
//! - both splits give the same messages and errors, and the same `finish()`;
//! - after a fatal error, `next()` repeats it on every call, fed or not, the
//!   decoder buffers nothing more, and `finish()` gives it too;
//! - after draining, the decoder holds less than one maximal frame, and
//!   `finish()` is `Ok` exactly when it holds nothing (else `UnexpectedEof`
//!   with the count);
//! - every decoded message re-encodes under the same list limit (at most a
//!   `FrameTooLarge`, since short endpoint forms re-encode longer), and that
//!   frame decodes to the same message.

use aos_cluster::wire::{
    encode_with_limits, DecodeError, Decoder, EncodeError, Limits, Message, DEFAULT_MAX_FRAME_LEN,
    DEFAULT_MAX_LIST_LEN, HEADER_LEN,
};

/// Bytes before the chunk sizes: the control byte and two `u16` parameters.
const PREFIX_LEN: usize = 5;

/// What one `decode` input asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeInput<'a> {
    /// The limits both decoders run under.
    pub limits: Limits,
    /// Chunk sizes (each `size + 1`), cycled; empty: one piece only.
    pub sizes: &'a [u8],
    /// The byte stream.
    pub stream: &'a [u8],
}

impl<'a> DecodeInput<'a> {
    /// Splits an input. Control byte: bits 0-1 choose `max_frame_len`
    /// (default, the first parameter, it modulo 64, unbounded), bits 2-3
    /// `max_list_len` (default, the second parameter, it modulo 4,
    /// unbounded), bits 4-6 the number of chunk-size bytes. Missing bytes
    /// read as zero.
    pub fn parse(data: &'a [u8]) -> Self {
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        let control = byte(0);
        let frame_param = usize::from(u16::from_be_bytes([byte(1), byte(2)]));
        let list_param = usize::from(u16::from_be_bytes([byte(3), byte(4)]));
        let max_frame_len = match control & 0b11 {
            0 => DEFAULT_MAX_FRAME_LEN,
            1 => frame_param,
            2 => frame_param % 64,
            _ => usize::MAX,
        };
        let max_list_len = match (control >> 2) & 0b11 {
            0 => DEFAULT_MAX_LIST_LEN,
            1 => list_param,
            2 => list_param % 4,
            _ => usize::MAX,
        };
        let rest = data.get(PREFIX_LEN..).unwrap_or(&[]);
        let (sizes, stream) = rest.split_at(usize::from((control >> 4) & 0b111).min(rest.len()));
        let limits = Limits::default().with_max_frame_len(max_frame_len).with_max_list_len(max_list_len);
        DecodeInput { limits, sizes, stream }
    }
}

/// What a decoder made of a stream: every result in order, then `finish()`.
type Outcome = (Vec<Result<Message, DecodeError>>, Result<(), DecodeError>);

/// Feeds an input through the wire decoder as described in the module docs.
pub fn decode(data: &[u8]) {
    let input = DecodeInput::parse(data);
    let whole = run(&input, &[]);
    let chunked = run(&input, input.sizes);
    assert_eq!(whole, chunked, "the split changed what was decoded");

    for msg in whole.0.iter().filter_map(|r| r.as_ref().ok()) {
        assert_reencodes(msg, &input.limits);
    }
}

/// Decodes the input's stream fed in chunks of `sizes` (cycled; empty means
/// one piece).
fn run(input: &DecodeInput<'_>, sizes: &[u8]) -> Outcome {
    let mut decoder = Decoder::with_limits(input.limits);
    assert_eq!(decoder.limits(), &input.limits);
    let cap = input.limits.max_frame_len.min(u32::MAX as usize);
    let bound = HEADER_LEN.saturating_add(cap);
    let mut results = Vec::new();
    let mut rest = input.stream;
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
                Err(err) if err.is_fatal() => {
                    results.push(Err(err.clone()));
                    return (results, after_fatal(&mut decoder, &err, rest));
                }
                Err(err) => results.push(Err(err)),
            }
        }
        let held = decoder.buffered();
        assert!(held < bound, "decoder holds {held} bytes after draining (bound {bound})");
        let expected = if held == 0 { Ok(()) } else { Err(DecodeError::UnexpectedEof { buffered: held }) };
        assert_eq!(decoder.finish(), expected, "finish() disagrees with what is buffered");
        assert_eq!(decoder.fatal_error(), None);
    }
    let finish = decoder.finish();
    (results, finish)
}

/// A decoder stopped at `err` keeps giving it, whatever it is fed.
fn after_fatal(decoder: &mut Decoder, err: &DecodeError, rest: &[u8]) -> Result<(), DecodeError> {
    assert_eq!(decoder.buffered(), 0, "a fatal error keeps no bytes");
    assert_eq!(decoder.fatal_error(), Some(err));
    for _ in 0..3 {
        assert_eq!(decoder.next().as_ref(), Err(err), "a fatal error must repeat");
    }
    decoder.feed(rest);
    decoder.feed(&[1, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]);
    assert_eq!(decoder.buffered(), 0, "a stopped decoder buffers nothing");
    assert_eq!(decoder.next().as_ref(), Err(err), "a fatal error must repeat after more input");
    let finish = decoder.finish();
    assert_eq!(finish.as_ref(), Err(err), "finish() must give the fatal error");
    finish
}

fn assert_reencodes(msg: &Message, limits: &Limits) {
    // An endpoint received in a short form (`aos1`) re-encodes longer
    // (`aos1:2712`), so a frame at the limit may not fit again: under the same
    // limits only `FrameTooLarge` may refuse it.
    let mut frame = Vec::new();
    match encode_with_limits(msg, limits, &mut frame) {
        Ok(()) | Err(EncodeError::FrameTooLarge { .. }) => {}
        Err(other) => panic!("a decoded message is refused by the encoder with {other:?}: {msg:?}"),
    }
    let relaxed = limits.with_max_frame_len(usize::MAX);
    frame.clear();
    encode_with_limits(msg, &relaxed, &mut frame).expect("a decoded message re-encodes");
    let mut decoder = Decoder::with_limits(relaxed);
    decoder.feed(&frame);
    assert_eq!(decoder.next(), Ok(Some(msg.clone())), "re-encoded frame decodes to the same message");
    assert_eq!(decoder.next(), Ok(None));
    assert_eq!(decoder.finish(), Ok(()));
}
