//! Framed protocol I/O over any async byte stream, with deadlines.
//!
//! The codec ([`aos_cluster::wire`]) performs no I/O; this module moves its
//! frames over tokio streams and nothing more: it decides no protocol.
//!
//! - [`FrameReader::read_frame`] reads one whole frame with a deadline. It
//!   hands the [`Decoder`] exactly one frame at a time, so the decoder never
//!   holds bytes that belong after the frame: whatever the peer sent after it
//!   stays in the reader and [`FrameReader::into_leftover`] returns it (the
//!   first application bytes after a session is accepted, SPEC 3.6).
//! - [`write_frame`] encodes one message under the same limits and writes it
//!   whole before a deadline.
//!
//! Memory: a reader holds at most one frame plus one read chunk
//! (`HEADER_LEN + max_frame_len + READ_CHUNK` bytes), whatever the peer sends;
//! a header announcing more than `max_frame_len` is refused before any of its
//! payload is read. A frame that has started arriving must be complete within
//! the reader's `frame_timeout` (a slow-loris peer cannot hold a half frame
//! open for the caller's whole deadline).

use std::time::Duration;

use aos_cluster::wire::{self, DecodeError, Decoder, Limits, Message, HEADER_LEN, PROTOCOL_VERSION};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Bytes asked of the stream per read when less than that is still missing:
/// a request frame is tens of bytes, so 1 KiB usually takes a whole frame in
/// one read while an idle connection's buffer stays small.
pub const READ_CHUNK: usize = 1024;

/// A buffer bigger than this is released once it is empty, so one large frame
/// does not stay resident for the connection's life.
const KEPT_CAPACITY: usize = 4 * READ_CHUNK;

/// Why no frame was read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The peer closed the stream; `partial` when it stopped inside a frame.
    #[error("connection closed{}", if *.partial { " inside a frame" } else { "" })]
    Closed {
        /// Bytes of an unfinished frame were buffered.
        partial: bool,
    },
    /// The deadline passed, or a started frame did not complete within the
    /// reader's `frame_timeout`; `partial` when bytes of a frame had arrived.
    #[error("no complete frame in time{}", if *.partial { " (a frame was half sent)" } else { "" })]
    Timeout {
        /// Bytes of an unfinished frame were buffered.
        partial: bool,
    },
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a valid frame (the stream cannot be trusted further).
    #[error("malformed frame: {0}")]
    Decode(#[from] DecodeError),
}

/// Why a frame was not written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The peer did not take the bytes before the deadline (it is not reading).
    #[error("write deadline passed")]
    Timeout,
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The message does not fit the limits (a bug of the sender, not the peer).
    #[error("cannot encode: {0}")]
    Encode(#[from] wire::EncodeError),
}

/// Reads whole frames from a stream, one at a time; see the module docs.
#[derive(Debug)]
pub struct FrameReader {
    decoder: Decoder,
    /// Bytes read from the stream and not yet handed to the decoder.
    buf: Vec<u8>,
    /// When the first byte of the frame now in `buf` arrived.
    frame_started: Option<Instant>,
    frame_timeout: Duration,
}

impl FrameReader {
    /// A reader under `limits`; a frame whose first byte has arrived must be
    /// complete within `frame_timeout`.
    pub fn new(limits: Limits, frame_timeout: Duration) -> Self {
        FrameReader {
            decoder: Decoder::with_limits(limits),
            buf: Vec::new(),
            frame_started: None,
            frame_timeout,
        }
    }

    /// Bytes held (read from the stream, not yet returned as a frame).
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.decoder.buffered()
    }

    /// The bytes read after the last frame returned: hand them to whoever
    /// reads the stream next.
    pub fn into_leftover(self) -> Vec<u8> {
        self.buf
    }

    /// The next frame, before `deadline` (`None`: no deadline but the
    /// reader's `frame_timeout` once a frame has started).
    ///
    /// Cancel-safe: the only await is one read, whose bytes are kept only
    /// once it completes; a cancelled call loses nothing.
    pub async fn read_frame<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        stream: &mut R,
        deadline: Option<Instant>,
    ) -> Result<Message, ReadError> {
        if !self.buf.is_empty() {
            // Bytes of this frame came while the previous request was being
            // served (the caller does not read then): its clock starts now.
            self.frame_started = Some(Instant::now());
        }
        loop {
            if let Some(message) = self.try_frame()? {
                return Ok(message);
            }
            let needed = self.missing();
            let want = needed.max(READ_CHUNK);
            self.buf.reserve(want);
            let frame_deadline = self.frame_started.map(|t| t + self.frame_timeout);
            let limit = match (deadline, frame_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let partial = !self.buf.is_empty();
            let mut limited = (&mut *stream).take(want as u64);
            let read = limited.read_buf(&mut self.buf);
            let n = match limit {
                Some(limit) => tokio::time::timeout_at(limit, read)
                    .await
                    .map_err(|_| ReadError::Timeout { partial })??,
                None => read.await?,
            };
            if n == 0 {
                return Err(ReadError::Closed { partial });
            }
            if self.frame_started.is_none() {
                self.frame_started = Some(Instant::now());
            }
        }
    }

    /// Bytes still missing for the frame at the front of `buf` (at least 1).
    fn missing(&self) -> usize {
        match self.buf.first_chunk::<HEADER_LEN>() {
            None => HEADER_LEN - self.buf.len(),
            Some(header) => {
                let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
                (HEADER_LEN + len).saturating_sub(self.buf.len()).max(1)
            }
        }
    }

    /// Decodes the frame at the front of `buf` if it is complete.
    fn try_frame(&mut self) -> Result<Option<Message>, ReadError> {
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else { return Ok(None) };
        let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
        let refused = header[0] != PROTOCOL_VERSION || len > self.decoder.limits().max_frame_len;
        let frame_len = if refused { HEADER_LEN } else { HEADER_LEN + len };
        if self.buf.len() < frame_len {
            return Ok(None);
        }
        // The header alone lets the decoder refuse a bad version or length
        // with its own typed error, before any payload is read.
        self.decoder.feed(&self.buf[..frame_len]);
        self.buf.drain(..frame_len);
        self.frame_started = if self.buf.is_empty() { None } else { Some(Instant::now()) };
        if self.buf.is_empty() && self.buf.capacity() > KEPT_CAPACITY {
            self.buf = Vec::new();
        }
        match self.decoder.next() {
            Ok(Some(message)) => Ok(Some(message)),
            Err(e) => Err(ReadError::Decode(e)),
            // A whole frame was fed; the codec always answers it.
            Ok(None) => Err(ReadError::Decode(DecodeError::UnexpectedEof { buffered: frame_len })),
        }
    }
}

/// Encodes `message` under `limits` (the same the peer's decoder enforces)
/// and writes it whole before `deadline`. `scratch` is reused across calls.
pub async fn write_frame<W: AsyncWrite + Unpin + ?Sized>(
    stream: &mut W,
    message: &Message,
    limits: &Limits,
    scratch: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(), WriteError> {
    scratch.clear();
    wire::encode_with_limits(message, limits, scratch)?;
    let write = async {
        stream.write_all(scratch).await?;
        stream.flush().await
    };
    let result = tokio::time::timeout_at(deadline, write).await.map_err(|_| WriteError::Timeout)?;
    if scratch.capacity() > KEPT_CAPACITY {
        *scratch = Vec::new();
    }
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aos_cluster::wire::QueryId;
    use aos_cluster::wire::{encode, SessionRequest, WorkloadQuery};

    fn frame(message: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        encode(message, &mut out).unwrap();
        out
    }

    #[tokio::test]
    async fn reads_one_frame_and_keeps_what_follows() {
        let first = Message::SessionRequest(SessionRequest { request_id: 7, credential: None });
        let mut bytes = frame(&first);
        bytes.extend_from_slice(b"app bytes");
        let mut stream: &[u8] = &bytes;
        let mut reader = FrameReader::new(Limits::default(), Duration::from_secs(1));
        let got = reader.read_frame(&mut stream, None).await.unwrap();
        assert_eq!(got, first);
        assert_eq!(reader.into_leftover(), b"app bytes");
    }

    #[tokio::test]
    async fn any_split_reads_the_same_frames() {
        let a = Message::WorkloadQuery(WorkloadQuery { query_id: QueryId(1) });
        let b = Message::SessionRequest(SessionRequest { request_id: 2, credential: None });
        let mut bytes = frame(&a);
        bytes.extend(frame(&b));
        for split in 0..bytes.len() {
            let (x, y) = bytes.split_at(split);
            let mut stream = tokio_test_chain(x, y);
            let mut reader = FrameReader::new(Limits::default(), Duration::from_secs(1));
            assert_eq!(reader.read_frame(&mut stream, None).await.unwrap(), a);
            assert_eq!(reader.read_frame(&mut stream, None).await.unwrap(), b);
            assert!(matches!(
                reader.read_frame(&mut stream, None).await,
                Err(ReadError::Closed { partial: false })
            ));
        }
    }

    fn tokio_test_chain<'a>(x: &'a [u8], y: &'a [u8]) -> impl AsyncRead + Unpin + 'a {
        x.chain(y)
    }

    #[tokio::test]
    async fn an_oversized_header_is_refused_before_its_payload() {
        let mut header = vec![PROTOCOL_VERSION, 1];
        header.extend_from_slice(&(1u32 << 30).to_be_bytes());
        let mut stream: &[u8] = &header;
        let mut reader = FrameReader::new(Limits::default(), Duration::from_secs(1));
        let err = reader.read_frame(&mut stream, None).await.unwrap_err();
        assert!(matches!(err, ReadError::Decode(DecodeError::Oversized { .. })), "{err:?}");
        assert!(reader.buffered() <= HEADER_LEN);
    }

    #[tokio::test]
    async fn a_half_frame_times_out_with_partial_set() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(&[PROTOCOL_VERSION, 3, 0]).await.unwrap();
        let mut reader = FrameReader::new(Limits::default(), Duration::from_millis(50));
        let started = Instant::now();
        let err = reader.read_frame(&mut server, Some(started + Duration::from_secs(5))).await.unwrap_err();
        assert!(matches!(err, ReadError::Timeout { partial: true }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
