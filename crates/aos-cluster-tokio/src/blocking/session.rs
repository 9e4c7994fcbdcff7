//! The blocking client's session: its byte stream, plain TCP or TLS over it.

#[cfg(feature = "tls")]
use std::io::ErrorKind;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, TcpStream};

use super::SessionInfo;

/// A blocking session's byte stream: plain TCP or TLS over it.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, the instance's certificate verified.
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl SessionStream {
    /// The TCP stream underneath (for socket options such as timeouts, and
    /// addresses; reading or writing it directly would break TLS).
    pub fn get_ref(&self) -> &TcpStream {
        match self {
            SessionStream::Plain(s) => s,
            #[cfg(feature = "tls")]
            SessionStream::Tls(s) => s.get_ref(),
        }
    }

    /// Whether the stream is TLS.
    pub fn is_tls(&self) -> bool {
        !matches!(self, SessionStream::Plain(_))
    }
}

impl Read for SessionStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            SessionStream::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            SessionStream::Tls(s) => s.read(buf),
        }
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        match self {
            SessionStream::Plain(s) => s.read_vectored(bufs),
            #[cfg(feature = "tls")]
            SessionStream::Tls(s) => s.read_vectored(bufs),
        }
    }
}

impl Write for SessionStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            SessionStream::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            SessionStream::Tls(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            SessionStream::Plain(s) => s.write_vectored(bufs),
            #[cfg(feature = "tls")]
            SessionStream::Tls(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            SessionStream::Plain(s) => s.flush(),
            #[cfg(feature = "tls")]
            SessionStream::Tls(s) => s.flush(),
        }
    }
}

/// An open session: the application's byte stream to the instance that
/// admitted it (SPEC 3.6), read and written with `std::io::Read` and `Write`.
/// The protocol sends nothing more on it.
///
/// The session ends when either side closes the stream: drop the `Session`,
/// or call [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct Session {
    pub(super) stream: SessionStream,
    pub(super) info: SessionInfo,
}

impl Session {
    crate::client::info::session_accessors!();

    /// Ends the session: end-of-stream both ways (the instance sees it at once).
    pub fn shutdown(&self) -> io::Result<()> {
        self.stream.get_ref().shutdown(Shutdown::Both)
    }

    /// The underlying TCP stream, for socket options (timeouts) and addresses.
    pub fn get_ref(&self) -> &TcpStream {
        self.stream.get_ref()
    }
}

impl Read for Session {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.stream.read_vectored(bufs)
    }
}

impl Write for Session {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.stream.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Reading and writing through a shared reference works on plain TCP only
/// (as `&TcpStream` does); a TLS session has one state for both directions and
/// answers `Unsupported` here: use `&mut Session`.
impl Read for &Session {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.stream {
            SessionStream::Plain(s) => (&*s).read(buf),
            #[cfg(feature = "tls")]
            SessionStream::Tls(_) => Err(shared_tls()),
        }
    }
}

impl Write for &Session {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.stream {
            SessionStream::Plain(s) => (&*s).write(buf),
            #[cfg(feature = "tls")]
            SessionStream::Tls(_) => Err(shared_tls()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &self.stream {
            SessionStream::Plain(s) => (&*s).flush(),
            #[cfg(feature = "tls")]
            SessionStream::Tls(_) => Err(shared_tls()),
        }
    }
}

#[cfg(feature = "tls")]
fn shared_tls() -> io::Error {
    io::Error::new(ErrorKind::Unsupported, "a TLS session is read and written through &mut Session only")
}
