//! The async client's session: the byte stream an accepted attempt hands over.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::SessionInfo;
use crate::transport::SessionStream;

/// An open session: the application's byte stream to the instance that
/// admitted it (SPEC 3.6), read and written with tokio's `AsyncRead` and
/// `AsyncWrite`. The protocol sends nothing more on it.
///
/// The session ends when either side closes the stream: drop the `Session`,
/// or `shutdown()` it (`AsyncWriteExt::shutdown`, which sends end-of-stream
/// and lets the instance's last bytes still be read).
#[derive(Debug)]
pub struct Session {
    pub(super) stream: SessionStream,
    pub(super) info: SessionInfo,
}

impl Session {
    crate::client::info::session_accessors!();

    /// The underlying TCP stream, for socket options and addresses (under
    /// TLS, reading or writing it directly would break the session).
    pub fn get_ref(&self) -> &TcpStream {
        self.stream.get_ref()
    }
}

impl AsyncRead for Session {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Session {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
