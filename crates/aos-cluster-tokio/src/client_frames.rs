//! Framed I/O shared by the async and the blocking client: one request frame
//! out, exactly one reply frame in, and the words a failed transport is
//! reported with. No I/O happens here; both clients move the bytes.

use std::fmt;
use std::io;

use aos_cluster::wire::{self, DecodeError, Decoder, Limits, Message, DEFAULT_MAX_LIST_LEN, HEADER_LEN};
use aos_cluster::ClientConfig;

/// The decoder limits for replies to a client with `config`: the wire
/// defaults, with room for a longer ranked list when the client asks for one
/// (the Connector cuts a list to `max_list_len`; the decoder must not refuse
/// what the Connector would cut).
pub(crate) fn reply_limits(config: &ClientConfig) -> Limits {
    Limits::default().with_max_list_len(config.max_list_len.max(DEFAULT_MAX_LIST_LEN))
}

/// Encodes a request frame (the reason of a failed attempt when it cannot be).
pub(crate) fn encode_request(message: &Message, limits: &Limits) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(64);
    wire::encode_with_limits(message, limits, &mut bytes).map_err(|e| format!("encode request: {e}"))?;
    Ok(bytes)
}

/// Why a reply frame could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The bytes are not a valid frame.
    Decode(DecodeError),
    /// A whole frame was read and the decoder still wanted more: a bug in
    /// this reader, reported rather than looped on.
    Incomplete,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Decode(e) => write!(f, "malformed reply: {e}"),
            FrameError::Incomplete => f.write_str("reply frame not decodable as one message"),
        }
    }
}

/// Reads exactly one frame and never a byte more. The caller reads into
/// [`unfilled`](Self::unfilled) and reports the count to
/// [`advance`](Self::advance). The header is read first, then exactly the
/// payload it announces, so the application bytes an instance sends right
/// after an accepting `SessionReply` (even in the same write) stay in the
/// socket for the session: nothing read past the reply has to be handed over.
///
/// Memory is bounded by the limits: the decoder judges the header (version,
/// announced length) before any payload is buffered.
#[derive(Debug)]
pub(crate) struct OneFrame {
    decoder: Decoder,
    buf: Vec<u8>,
    filled: usize,
}

impl OneFrame {
    pub(crate) fn new(limits: Limits) -> Self {
        OneFrame { decoder: Decoder::with_limits(limits), buf: vec![0; HEADER_LEN], filled: 0 }
    }

    /// Where the next read goes: never past the end of the frame.
    pub(crate) fn unfilled(&mut self) -> &mut [u8] {
        &mut self.buf[self.filled..]
    }

    /// Whether part of a frame arrived (an end of stream then cuts a reply).
    pub(crate) fn started(&self) -> bool {
        self.filled > 0
    }

    /// `n` bytes were read into [`unfilled`](Self::unfilled): the message once
    /// the frame is whole, `Ok(None)` while more is needed.
    pub(crate) fn advance(&mut self, n: usize) -> Result<Option<Message>, FrameError> {
        self.filled = (self.filled + n).min(self.buf.len());
        if self.filled < self.buf.len() {
            return Ok(None);
        }
        if self.buf.len() == HEADER_LEN && !self.header_fed() {
            self.decoder.feed(&self.buf);
            // A zero-length payload is complete with its header.
            if let Some(message) = self.decoder.next().map_err(FrameError::Decode)? {
                return Ok(Some(message));
            }
            // The decoder accepted the header, so the length is within the limit.
            let len = u32::from_be_bytes([self.buf[2], self.buf[3], self.buf[4], self.buf[5]]);
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            self.buf.resize(HEADER_LEN.saturating_add(len), 0);
            return Ok(None);
        }
        self.decoder.feed(&self.buf[HEADER_LEN..]);
        match self.decoder.next() {
            Ok(Some(message)) => Ok(Some(message)),
            Ok(None) => Err(FrameError::Incomplete),
            Err(e) => Err(FrameError::Decode(e)),
        }
    }

    fn header_fed(&self) -> bool {
        self.decoder.buffered() > 0
    }
}

/// An I/O error in the words of an attempt log: "connection refused", not
/// "Connection refused (os error 111)".
pub(crate) fn describe(e: &io::Error) -> String {
    use io::ErrorKind::*;
    match e.kind() {
        kind @ (ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | AddrNotAvailable
        | AddrInUse | BrokenPipe | TimedOut | UnexpectedEof | PermissionDenied) => kind.to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aos_cluster::wire::{SessionId, SessionOutcome, SessionReply};

    fn frame(message: &Message) -> Vec<u8> {
        let mut bytes = Vec::new();
        wire::encode(message, &mut bytes).expect("encodable");
        bytes
    }

    /// Feeds `bytes` as a socket would, one read of at most `chunk` bytes at a time.
    fn read_from(
        reader: &mut OneFrame,
        bytes: &[u8],
        chunk: usize,
    ) -> (Result<Option<Message>, String>, usize) {
        let mut used = 0;
        loop {
            let room = reader.unfilled();
            let n = room.len().min(chunk).min(bytes.len() - used);
            if n == 0 {
                return (Ok(None), used);
            }
            room[..n].copy_from_slice(&bytes[used..used + n]);
            used += n;
            match reader.advance(n) {
                Ok(None) => {}
                other => return (other.map_err(|e| e.to_string()), used),
            }
        }
    }

    #[test]
    fn reads_one_frame_and_not_a_byte_more_whatever_the_split() {
        let reply = Message::SessionReply(SessionReply {
            request_id: 9,
            outcome: SessionOutcome::Accepted { session_id: SessionId(4) },
        });
        let mut bytes = frame(&reply);
        let frame_len = bytes.len();
        bytes.extend_from_slice(b"application bytes");
        for chunk in [1, 2, 5, 4096] {
            let mut reader = OneFrame::new(Limits::default());
            let (got, used) = read_from(&mut reader, &bytes, chunk);
            assert_eq!(got, Ok(Some(reply.clone())), "chunk {chunk}");
            assert_eq!(used, frame_len, "chunk {chunk}: the reader asked for bytes past its frame");
        }
    }

    #[test]
    fn an_oversized_header_is_refused_before_its_payload_is_buffered() {
        let mut header = vec![1, 4];
        header.extend_from_slice(&(1u32 << 20).to_be_bytes());
        let mut reader = OneFrame::new(Limits::default());
        let (got, used) = read_from(&mut reader, &header, 4096);
        assert!(got.expect_err("oversized").contains("more than the"));
        assert_eq!(used, HEADER_LEN);
        assert_eq!(reader.unfilled().len(), 0);
    }

    #[test]
    fn a_malformed_payload_is_an_error() {
        // A SessionReply whose outcome tag is 9.
        let mut bytes = vec![1, 4, 0, 0, 0, 9];
        bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 9]);
        let mut reader = OneFrame::new(Limits::default());
        let (got, _) = read_from(&mut reader, &bytes, 3);
        assert!(got.expect_err("malformed").starts_with("malformed reply"));
    }

    #[test]
    fn io_errors_read_like_a_log() {
        let e = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(describe(&e), "connection refused");
    }
}
