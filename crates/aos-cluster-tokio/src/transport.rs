//! The byte streams under the protocol: plain TCP, or TLS over TCP (feature
//! `tls`). One enum per side, so the frame code and the application see one
//! type whatever the configuration.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

/// Implements tokio's `AsyncRead` and `AsyncWrite` on a stream enum by
/// delegating to the variant held.
macro_rules! delegate_async_io {
    ($ty:ty) => {
        impl tokio::io::AsyncRead for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    Self::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
                    #[cfg(feature = "tls")]
                    Self::Tls(s) => std::pin::Pin::new(s).poll_read(cx, buf),
                }
            }
        }

        impl tokio::io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    Self::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
                    #[cfg(feature = "tls")]
                    Self::Tls(s) => std::pin::Pin::new(s).poll_write(cx, buf),
                }
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    Self::Plain(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
                    #[cfg(feature = "tls")]
                    Self::Tls(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    Self::Plain(s) => s.is_write_vectored(),
                    #[cfg(feature = "tls")]
                    Self::Tls(s) => s.is_write_vectored(),
                }
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    Self::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
                    #[cfg(feature = "tls")]
                    Self::Tls(s) => std::pin::Pin::new(s).poll_flush(cx),
                }
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    Self::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
                    #[cfg(feature = "tls")]
                    Self::Tls(s) => std::pin::Pin::new(s).poll_shutdown(cx),
                }
            }
        }
    };
}

/// A client's stream to an instance: a session's byte stream (also used
/// for attempts and peer links).
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, the instance's certificate verified.
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

delegate_async_io!(SessionStream);

impl SessionStream {
    /// The TCP stream underneath (for socket options and addresses; reading
    /// or writing it directly would break TLS).
    pub fn get_ref(&self) -> &TcpStream {
        match self {
            SessionStream::Plain(s) => s,
            #[cfg(feature = "tls")]
            SessionStream::Tls(s) => s.get_ref().0,
        }
    }

    /// Whether the stream is TLS.
    pub fn is_tls(&self) -> bool {
        !matches!(self, SessionStream::Plain(_))
    }

    /// Opens TLS over `tcp` when `tls` is given, verifying the instance's
    /// certificate against `host`. The error reads as an attempt log's.
    pub(crate) async fn handshake(
        tcp: TcpStream,
        host: &str,
        #[cfg(feature = "tls")] tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
    ) -> Result<SessionStream, String> {
        #[cfg(feature = "tls")]
        if let Some(config) = tls {
            let name = crate::tls::server_name(host)?;
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            return match connector.connect(name, tcp).await {
                Ok(stream) => Ok(SessionStream::Tls(Box::new(stream))),
                Err(e) => Err(crate::tls::handshake_failure(host, &e)),
            };
        }
        let _ = host;
        Ok(SessionStream::Plain(tcp))
    }
}

/// An instance's stream from a client or a peer.
#[derive(Debug)]
pub(crate) enum ServerStream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

delegate_async_io!(ServerStream);

impl ServerStream {
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            ServerStream::Plain(s) => s,
            #[cfg(feature = "tls")]
            ServerStream::Tls(s) => s.get_ref().0,
        }
    }

    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    /// The DER of the certificate the client presented (verified against
    /// the cluster CA by the handshake); `None` without TLS or without one.
    pub(crate) fn client_certificate(&self) -> Option<std::sync::Arc<[u8]>> {
        match self {
            ServerStream::Plain(_) => None,
            #[cfg(feature = "tls")]
            ServerStream::Tls(s) => s.get_ref().1.peer_certificates()?.first().map(|c| c.as_ref().into()),
        }
    }

    /// Whether the client presented a certificate that chains to the cluster
    /// CA (the handshake refuses any other presented certificate).
    pub(crate) fn is_cluster_member(&self) -> bool {
        match self {
            ServerStream::Plain(_) => false,
            #[cfg(feature = "tls")]
            ServerStream::Tls(s) => s.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty()),
        }
    }
}
