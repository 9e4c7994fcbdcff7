//! The incremental stream decoder: bytes in any split, frames out.

use super::decode::decode_payload;
use super::dedup::DedupScratch;
use super::error::DecodeError;
use super::layout::{HEADER_LEN, PROTOCOL_VERSION};
use super::limits::Limits;
use super::message::Message;

/// Decodes frames from a byte stream delivered in any split.
///
/// [`feed`](Self::feed) whatever arrived, then call [`next`](Self::next) until
/// it returns `Ok(None)` (more bytes needed) or a fatal error. Drained that
/// way, the decoder holds at most one incomplete frame: fewer than
/// `HEADER_LEN + max_frame_len` bytes. A header announcing more than
/// `max_frame_len` is refused as soon as its six bytes are in, before any of
/// its payload is buffered. The buffer is reused across frames; consumed
/// bytes are compacted away lazily. Nothing here panics on any input.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    limits: Limits,
    buf: Vec<u8>,
    /// Bytes of `buf` before this offset are consumed.
    consumed: usize,
    fatal: Option<DecodeError>,
    scratch: DedupScratch,
}

impl Decoder {
    /// A decoder under [`Limits::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder under `limits`.
    pub fn with_limits(limits: Limits) -> Self {
        Decoder { limits, ..Self::default() }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Bytes fed but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.consumed
    }

    /// The fatal error this decoder stopped at, if any.
    pub fn fatal_error(&self) -> Option<&DecodeError> {
        self.fatal.as_ref()
    }

    /// Appends bytes that arrived. After a fatal error they are dropped.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.fatal.is_some() {
            return;
        }
        // Compact only once the consumed prefix outweighs what is left, so
        // each byte is moved a bounded number of times.
        if self.consumed == self.buf.len() {
            self.buf.clear();
            self.consumed = 0;
        } else if self.consumed > 0 && self.consumed >= self.buf.len() - self.consumed {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next message: `Ok(Some(_))`, `Ok(None)` when the next frame is not
    /// complete yet, or `Err` for a bad frame (skipped; decoding goes on) or a
    /// fatal error (returned again on every call; see [`DecodeError`]).
    // The name is the API. `Iterator` does not fit: `Ok(None)` means
    // "feed me more", not "done", and a fatal error repeats forever.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Message>, DecodeError> {
        if let Some(err) = &self.fatal {
            return Err(err.clone());
        }
        let pending = &self.buf[self.consumed..];
        let Some(header) = pending.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let [version, msg_type, l0, l1, l2, l3] = *header;
        let len = u32::from_be_bytes([l0, l1, l2, l3]);
        let fatal = if version != PROTOCOL_VERSION {
            Some(DecodeError::UnknownVersion { version })
        } else if len as usize > self.limits.frame_cap() {
            Some(DecodeError::Oversized { len, max: self.limits.frame_cap() })
        } else {
            None
        };
        if let Some(err) = fatal {
            self.buf = Vec::new();
            self.consumed = 0;
            self.fatal = Some(err.clone());
            return Err(err);
        }
        // Saturating: on a 32-bit target a limit near u32::MAX could overflow;
        // such a frame could never be buffered anyway.
        let frame_len = HEADER_LEN.saturating_add(len as usize);
        let Some(payload) = pending.get(HEADER_LEN..frame_len) else {
            return Ok(None);
        };
        let result = decode_payload(msg_type, payload, &self.limits, &mut self.scratch);
        self.consumed += frame_len;
        result.map(Some)
    }

    /// Checks the stream ended on a frame boundary: call at end of input.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if let Some(err) = &self.fatal {
            return Err(err.clone());
        }
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(DecodeError::UnexpectedEof { buffered }),
        }
    }
}
