//! Framed messages over a byte stream: the wire codec plus tokio's read and
//! write halves. Nothing here decides protocol; a bad frame is reported, and
//! the caller closes the connection.

use aos_cluster::wire::{self, DecodeError, Decoder, Message};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why no message could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the connection (between frames, or inside one).
    #[error("connection closed")]
    Closed,
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a valid frame.
    #[error("malformed frame: {0}")]
    Decode(#[from] DecodeError),
}

/// Reads whole messages from a stream, whatever the bytes' split.
pub struct FrameReader<R> {
    reader: R,
    decoder: Decoder,
    buf: Box<[u8]>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader over `reader`.
    pub fn new(reader: R) -> Self {
        FrameReader { reader, decoder: Decoder::new(), buf: vec![0; 8 * 1024].into_boxed_slice() }
    }

    /// The next message. Cancel-safe: the only await is one `read`, and bytes
    /// are handed to the decoder only after it completes.
    pub async fn next(&mut self) -> Result<Message, ReadError> {
        loop {
            if let Some(message) = self.decoder.next()? {
                return Ok(message);
            }
            let n = self.reader.read(&mut self.buf).await?;
            if n == 0 {
                return Err(ReadError::Closed);
            }
            self.decoder.feed(&self.buf[..n]);
        }
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.reader
    }
}

/// Encodes `message` and writes it whole.
pub async fn write_message<W: AsyncWrite + Unpin>(
    writer: &mut W,
    message: &Message,
    scratch: &mut Vec<u8>,
) -> std::io::Result<()> {
    scratch.clear();
    wire::encode(message, scratch)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    writer.write_all(scratch).await
}
