//! hyper, tonic and any tower user over balanced sessions (feature `tower`).
//!
//! - [`BalancedConnector`] is a `tower::Service<http::Uri>` whose every call
//!   opens one balanced session ([`Client::connect`]: seeds, ranking, the
//!   sorted-list connect). Give it to hyper-util's pooled
//!   `Client` (`Client::builder(TokioExecutor::new()).build(connector)`) or to
//!   tonic's `Endpoint::connect_with_connector`: each connection the pool
//!   opens is a session on the instance the cluster chose, and when that
//!   instance dies the pool's next dial runs the protocol again and lands on
//!   a live one.
//! - [`BalancedStream`], what it yields, implements hyper's `rt::Read` and
//!   `rt::Write` and hyper-util's `Connection`; every response of
//!   hyper-util's `Client` carries the session's details in its extensions,
//!   as an `Arc<SessionInfo>` (which instance answered).
//! - Servers: [`AppStream`](crate::AppStream) is tokio's `AsyncRead +
//!   AsyncWrite + Unpin`, so `hyper_util::rt::TokioIo::new(accepted.stream)`
//!   is what hyper's `serve_connection` takes; [`Server::incoming`] is a
//!   `Stream` of accepted sessions for tonic's `serve_with_incoming` (feature
//!   `tonic` adds tonic's `Connected` to `AppStream`).
//!
//! The `Uri` a pool dials is not used to find the instance: the session goes
//! where the cluster ranks it. It stays the request's authority (HTTP/1's
//! `Host`, HTTP/2's `:authority`) and the pool's key, so one `Uri` such as
//! `http://aos-cluster` for the whole cluster is the usual choice.
//!
//! Nor does its scheme choose TLS: with TLS in the client's options the
//! session is TLS already and the pool sees a plain byte stream, so
//! `http://` is the scheme to give.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use aos_cluster_tokio::registry::MemoryRegistry;
//! use aos_cluster_tokio::tower::BalancedConnector;
//! use aos_cluster_tokio::{Client, ClientConfig, Endpoint, InstanceConfig, InstanceId, Server, ServerConfig};
//! use tower_service::Service;
//!
//! // One instance on loopback (port 0: the system picks one).
//! let instance = InstanceConfig {
//!     cluster: Some("demo".into()),
//!     ..InstanceConfig::new(InstanceId(1), Endpoint::new("127.0.0.1", 1)?, 10)
//! };
//! let config = ServerConfig::new("127.0.0.1:0".parse()?, instance);
//! let mut server = Server::bind(config, std::sync::Arc::new(MemoryRegistry::new())).await?;
//!
//! // Each call is one balanced session; hyper-util's `Client` and tonic's
//! // `Endpoint::connect_with_connector` make these calls for their pools.
//! let client_config = ClientConfig {
//!     cluster: Some("demo".into()),
//!     ..ClientConfig::with_seeds(vec![server.endpoint().clone()])
//! };
//! let mut connector = BalancedConnector::new(Client::new(client_config))?;
//! let stream = connector.call("http://aos-cluster".parse()?).await?;
//! assert_eq!(stream.info().instance(), Some(InstanceId(1)));
//! assert!(server.accept().await.is_some());
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;

use std::sync::Arc;

use crate::client::{Client, ConnectError, Session, SessionInfo};

#[cfg(all(doc, feature = "server"))]
use crate::Server;

/// A `tower::Service<http::Uri>` that opens one balanced session per call:
/// the connector for hyper-util's pooled `Client` and tonic's
/// `Endpoint::connect_with_connector`. Cheap to clone (clones share the
/// configuration).
///
/// The `Uri` is ignored for finding the instance (see the [module
/// docs](self)). A call fails with [`ConnectError`] when no instance admits
/// the session within the configuration's rounds, which the pool reports as
/// its connect error.
///
/// hyper-util's pooled client over a cluster (here one instance serving
/// HTTP/1 with hyper on each accepted session):
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use std::sync::Arc;
///
/// use aos_cluster_tokio::registry::MemoryRegistry;
/// use aos_cluster_tokio::tower::BalancedConnector;
/// use aos_cluster_tokio::{ClientConfig, Endpoint, InstanceConfig, InstanceId, Server, ServerConfig, SessionInfo};
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Empty, Full};
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::{TokioExecutor, TokioIo};
///
/// let instance = InstanceConfig {
///     cluster: Some("demo".into()),
///     ..InstanceConfig::new(InstanceId(1), Endpoint::new("127.0.0.1", 1)?, 10)
/// };
/// let config = ServerConfig::new("127.0.0.1:0".parse()?, instance);
/// let mut server = Server::bind(config, Arc::new(MemoryRegistry::new())).await?;
/// // The seeds to ask, in order, and the cluster expected.
/// let client_config = ClientConfig {
///     cluster: Some("demo".into()),
///     ..ClientConfig::with_seeds(vec![server.endpoint().clone()])
/// };
/// tokio::spawn(async move {
///     while let Some(accepted) = server.accept().await {
///         let hello = hyper::service::service_fn(|_request| async {
///             Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from("hello"))))
///         });
///         let http = hyper::server::conn::http1::Builder::new();
///         tokio::spawn(http.serve_connection(TokioIo::new(accepted.stream), hello));
///     }
/// });
///
/// let connector = BalancedConnector::new(aos_cluster_tokio::Client::new(client_config))?;
/// let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
/// let response = client.get("http://aos-cluster/".parse()?).await?;
/// let on = response.extensions().get::<Arc<SessionInfo>>().and_then(|info| info.instance());
/// assert_eq!(on, Some(InstanceId(1)));
/// assert_eq!(response.into_body().collect().await?.to_bytes(), "hello");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BalancedConnector {
    client: Client,
}

impl BalancedConnector {
    /// Every connection a [`Client::connect`] of `client` (its TLS,
    /// allow-list, credential and randomness). Fails with
    /// [`ConnectError::Config`] for an invalid configuration (an empty seed
    /// list, a zero timeout...), which every dial would otherwise fail with.
    pub fn new(client: Client) -> Result<Self, ConnectError> {
        client.config().validate()?;
        Ok(BalancedConnector { client })
    }

    /// The client every call connects with.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// What a [`BalancedConnector`] call returns.
pub type Connecting = Pin<Box<dyn Future<Output = Result<BalancedStream, ConnectError>> + Send>>;

impl tower_service::Service<http::Uri> for BalancedConnector {
    type Response = BalancedStream;
    type Error = ConnectError;
    type Future = Connecting;

    /// Always ready: each call is an independent session.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let session = client.connect().await?;
            tracing::debug!(endpoint = %session.endpoint(), session = %session.session_id(), "pool connection is a balanced session");
            Ok(BalancedStream::from(session))
        })
    }
}

/// A balanced [`Session`] as hyper sees a connection: `hyper::rt::Read +
/// rt::Write` and hyper-util's `Connection`, whose [`Connected`] carries the
/// session's [`SessionInfo`] into every response's extensions (an
/// `Arc<SessionInfo>`: one reference count per response, no copy).
#[derive(Debug)]
pub struct BalancedStream {
    io: TokioIo<Session>,
    info: Arc<SessionInfo>,
}

impl BalancedStream {
    /// The session's details: the instance that admitted it, its endpoint,
    /// the attempt log.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// The session itself.
    pub fn session(&self) -> &Session {
        self.io.inner()
    }

    /// The session, for use outside hyper.
    pub fn into_session(self) -> Session {
        self.io.into_inner()
    }
}

impl From<Session> for BalancedStream {
    fn from(session: Session) -> Self {
        let info = Arc::new(session.info().clone());
        BalancedStream { io: TokioIo::new(session), info }
    }
}

impl Connection for BalancedStream {
    fn connected(&self) -> Connected {
        Connected::new().extra(self.info.clone())
    }
}

impl hyper::rt::Read for BalancedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for BalancedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        hyper::rt::Write::is_write_vectored(&self.io)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}
