//! The admitted sessions as a `Stream` (feature `tower`) and tonic's
//! `Connected` for [`AppStream`] (feature `tonic`).

#[cfg(feature = "tower")]
use std::net::SocketAddr;

#[cfg(feature = "tower")]
use aos_cluster::Endpoint;

use super::AppStream;
#[cfg(feature = "tower")]
use super::{Server, ServerHandle};

#[cfg(feature = "tower")]
impl Server {
    /// The admitted sessions as a `Stream` (feature `tower`), for servers
    /// that take one, such as tonic's `serve_with_incoming`. It owns the
    /// server: take a [`handle`](Self::handle) first to control it, and
    /// dropping the stream shuts the server down gracefully, as dropping the
    /// `Server` does.
    pub fn incoming(self) -> Incoming {
        let stopped = Box::pin(self.handle.stopped());
        Incoming { server: self, stopped }
    }
}

/// [`Server::accept`] as a `futures_core::Stream` (feature `tower`): each
/// admitted session's [`AppStream`], ending once the server has stopped.
/// Never yields an error (the `Result` is what stream consumers such as
/// tonic's `serve_with_incoming` ask for). As with `accept`, sessions
/// admitted while nobody polls it wait in a queue of `accept_queue`; beyond
/// it they are closed.
#[cfg(feature = "tower")]
pub struct Incoming {
    server: Server,
    stopped: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

#[cfg(feature = "tower")]
impl Incoming {
    /// A handle to control the server.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The endpoint the instance advertises.
    pub fn endpoint(&self) -> &Endpoint {
        self.server.endpoint()
    }
}

#[cfg(feature = "tower")]
impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming").field("endpoint", self.endpoint()).finish_non_exhaustive()
    }
}

#[cfg(feature = "tower")]
impl futures_core::Stream for Incoming {
    type Item = Result<AppStream, std::convert::Infallible>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        // As `accept`: sessions already admitted first, then the stop.
        match this.server.accepted.poll_recv(cx) {
            Poll::Ready(Some(accepted)) => return Poll::Ready(Some(Ok(accepted.stream))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        this.stopped.as_mut().poll(cx).map(|()| None)
    }
}

#[cfg(feature = "tonic")]
impl tonic::transport::server::Connected for AppStream {
    /// The addresses, so tonic's `Request::remote_addr` names the client.
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: self.get_ref().local_addr().ok(),
            remote_addr: self.peer_addr().ok(),
        }
    }
}
