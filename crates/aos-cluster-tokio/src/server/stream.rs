//! The application's end of an accepted session.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use aos_cluster::instance::ConnectionId;
use aos_cluster::wire::SessionId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::limits::ConnSlot;
use crate::transport::ServerStream;

type Stopped = Pin<Box<dyn Future<Output = ()> + Send + Sync>>;

/// An accepted session's byte stream, positioned at the first application
/// byte: bytes the client sent right after its session request, which the
/// server had already read, come out first (SPEC 3.6: after `Accepted` the
/// connection belongs to the application, both ways).
///
/// Dropping it closes the connection and ends the session (the instance's
/// `connected` goes down). A graceful shutdown or crash of the server ends it
/// too: reads and writes then fail with `ConnectionAborted`.
pub struct AppStream {
    stream: ServerStream,
    /// Application bytes read before the hand-off, and how many were given out.
    prefix: Vec<u8>,
    prefix_pos: usize,
    stopped: Option<Stopped>,
    _slot: ConnSlot,
    /// Dropped with the stream: tells the server the session ended.
    _ended: oneshot::Sender<()>,
}

impl std::fmt::Debug for AppStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppStream")
            .field("stream", &self.stream)
            .field("prefix_left", &(self.prefix.len() - self.prefix_pos))
            .field("server_stopped", &self.stopped.is_none())
            .finish()
    }
}

impl AppStream {
    pub(super) fn new(
        stream: ServerStream,
        prefix: Vec<u8>,
        stopped: Stopped,
        slot: ConnSlot,
        ended: oneshot::Sender<()>,
    ) -> Self {
        AppStream { stream, prefix, prefix_pos: 0, stopped: Some(stopped), _slot: slot, _ended: ended }
    }

    /// The underlying socket (for its addresses and options). Reading from it
    /// directly would skip bytes still held in this stream.
    pub fn get_ref(&self) -> &TcpStream {
        self.stream.tcp()
    }

    /// The client's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// Whether the session runs over TLS.
    pub fn is_tls(&self) -> bool {
        !matches!(self.stream, ServerStream::Plain(_))
    }

    /// Fails once the server has stopped.
    fn check_running(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match &mut self.stopped {
            None => Err(stopped()),
            Some(fut) => match fut.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.stopped = None;
                    Err(stopped())
                }
                Poll::Pending => Ok(()),
            },
        }
    }
}

fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "the server has stopped; the session ended")
}

impl AsyncRead for AppStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_running(cx)?;
        if this.prefix_pos < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.prefix_pos);
            buf.put_slice(&this.prefix[this.prefix_pos..this.prefix_pos + n]);
            this.prefix_pos += n;
            if this.prefix_pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.prefix_pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for AppStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_running(cx)?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_running(cx)?;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    /// Half-closes the connection (TCP FIN); the session ends when the
    /// stream is dropped.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
        Poll::Ready(Ok(()))
    }
}

/// Who an admitted session is.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AcceptInfo {
    /// The id the instance handed out.
    pub session_id: SessionId,
    /// The client's address.
    pub peer_addr: SocketAddr,
    /// The connection's id (as in the server's logs).
    pub conn: ConnectionId,
    /// When the session was accepted (the driver's clock).
    pub accepted_at: Instant,
}

/// An admitted session: who, and its byte stream for the application.
#[derive(Debug)]
#[non_exhaustive]
pub struct Accepted {
    /// Who.
    pub info: AcceptInfo,
    /// The connection, positioned at the first application byte.
    pub stream: AppStream,
}
