//! The instance server: an [`aos_cluster::Instance`] machine on a
//! TCP listener, hardened for the open internet, that hands each admitted
//! session's connection to the application.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! use aos_cluster_tokio::registry::MemoryRegistry;
//! use aos_cluster_tokio::server::{Server, ServerConfig};
//! use aos_cluster_tokio::{Endpoint, InstanceConfig, InstanceId};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let instance = InstanceConfig {
//!     cluster: Some("prod".into()),
//!     ..InstanceConfig::new(InstanceId(1), Endpoint::new("127.0.0.1", 1)?, 500)
//! };
//! // Port 0: the system picks one and the advertised endpoint follows. A real
//! // instance listens on `0.0.0.0:2712`, advertises the name clients reach,
//! // and shares a registry with its peers (`registry::open(url)`).
//! let config = ServerConfig::new("127.0.0.1:0".parse()?, instance);
//! let mut server = Server::bind(config, Arc::new(MemoryRegistry::new())).await?;
//!
//! // A client, so that there is a session to accept; then it stops the server.
//! let (seeds, handle) = (vec![server.endpoint().clone()], server.handle());
//! let client = tokio::spawn(async move {
//!     let said = ping(seeds).await;
//!     handle.shutdown().await;
//!     said
//! });
//!
//! while let Some(accepted) = server.accept().await {
//!     let mut stream = accepted.stream;
//!     tokio::spawn(async move {
//!         // The application's own bytes, both ways (here: an echo service).
//!         let mut buf = [0u8; 1024];
//!         while let Ok(n @ 1..) = stream.read(&mut buf).await {
//!             if stream.write_all(&buf[..n]).await.is_err() { break }
//!         }
//!         // Dropping the stream ends the session.
//!     });
//! }
//! // `accept` says `None` once the server has stopped.
//! assert_eq!(client.await?, Ok(b"ping".to_vec()));
//! # Ok(()) }
//! # async fn ping(seeds: Vec<aos_cluster_tokio::Endpoint>) -> Result<Vec<u8>, String> {
//! #     let config = aos_cluster_tokio::ClientConfig {
//! #         cluster: Some("prod".into()),
//! #         ..aos_cluster_tokio::ClientConfig::with_seeds(seeds)
//! #     };
//! #     use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! #     let mut session = aos_cluster_tokio::Client::new(config).connect().await.map_err(|e| e.to_string())?;
//! #     session.write_all(b"ping").await.map_err(|e| e.to_string())?;
//! #     let mut reply = vec![0; 4];
//! #     session.read_exact(&mut reply).await.map_err(|e| e.to_string())?;
//! #     Ok(reply)
//! # }
//! ```
//!
//! # Inside
//!
//! One actor task owns the machine (`actor`); one task per connection reads
//! one frame at a time under deadlines and writes its reply (`conn`); peer
//! links carry workload queries (`peer`); a writer keeps the registry row
//! fresh. Every channel is bounded, so memory is a function of the
//! configuration (connections x one frame), never of what clients send.
//!
//! # Trust (SPEC "Drivers: trust"; feature `tls`)
//!
//! [`Server::bind_with`] with [`ServerOptions::with_tls`]: every inbound
//! connection is TLS (the handshake within `first_frame_timeout`); a client
//! certificate is asked for, not required, and must chain to the cluster CA
//! when presented; a `WorkloadQuery` on a connection without one closes it
//! (`peers.queries_refused`); peer links present this instance's certificate.
//!
//! # Admission policy (SPEC "Drivers: admission policy")
//!
//! `max_sessions_per_ip` ([`ServerConfig`], off by default) and an
//! application hook ([`ServerOptions::with_admission`], an
//! [`AdmissionPolicy`] with a deadline) may refuse a session request before
//! it counts: the client gets `AddressLimit` or `Unauthorized`, and no
//! session slot, workload figure or registry figure ever shows it. The hook
//! sees the peer address, the TLS client certificate and the request's
//! credential (see [`AdmissionRequest`]).
//!
//! # Limits (SPEC "Drivers: limits")
//!
//! - One outstanding request per connection: the next frame is not read
//!   until the reply is written; a reply the client does not take within
//!   `write_timeout` closes the connection.
//! - `first_frame_timeout`: no complete frame within it of opening (or of a
//!   frame's first byte) closes the connection; `idle_timeout`: no session
//!   and nothing sent for it after the last reply closes the connection.
//! - `max_connections` and `max_connections_per_ip`: beyond them a new
//!   connection is accepted and closed at once. At the global cap, or while
//!   `accept` fails (out of descriptors), the instance is *saturated*: it
//!   advertises `accepting = false` (heartbeats, workload reports, its own
//!   rankings) until it is 5 % below the cap (at least one connection) or
//!   `accept` works again. Accept errors back off (`accept_error_backoff`,
//!   doubling to `accept_error_backoff_max`) and warn at most every 5 s.
//! - The registry: an incarnation per start; a live row of the same id
//!   refuses the start ([`ServerError::Registry`] with `IdInUse`); a
//!   heartbeat answered `Superseded` stops this process's heartbeats for
//!   good (logged as an error) instead of overwriting the other's row.

mod actor;
mod admission;
mod config;
mod conn;
mod limits;
mod peer;
mod stats;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use aos_cluster::instance::{self, ConnectionId};
use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::wire::{self, QueryId, SessionId};
use aos_cluster::{Endpoint, Instance, Role, UsageError, Workload};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::info;

use self::actor::{publish_heartbeats, Actor};
pub use self::admission::{AdmissionHook, AdmissionPolicy, AdmissionRequest, Verdict};
pub use self::config::ServerConfig;
#[cfg(feature = "admin")]
pub(crate) use self::limits::snake_case;
use self::limits::{Counters, Limiter};
pub use self::stats::{ConnectionStats, PeerStats, RegistryStats, ServerStats, SessionStats};
pub use self::stream::AppStream;
use crate::registry::{Incarnation, Registry, RegistryError};

/// Inputs queued to the actor (bounded: every sender waits when it is full).
const INBOX: usize = 1024;
/// The listener's accept queue: `TcpListener::bind` uses 128, which a burst
/// of clients overflows, costing each a one-second SYN retransmission.
const BACKLOG: u32 = 1024;

/// Why the server could not start, or a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is invalid (every problem listed).
    #[error("invalid server configuration: {0}")]
    Config(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Registration failed; `IdInUse` means another live process has this id.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Registration did not answer within `registry_timeout`.
    #[error("the registry did not answer the registration in time")]
    RegistryTimeout,
    /// The server has stopped.
    #[error("the server has stopped")]
    Stopped,
    /// A graceful stop is draining the server: it does not admit again.
    #[error("the server is stopping (draining); it does not admit new sessions again")]
    Stopping,
    /// The machine refused a command (for example `max_sessions` 0).
    #[error(transparent)]
    InvalidArgument(#[from] UsageError),
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

/// How the server stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    /// Close everything and remove this incarnation's registry row.
    Graceful,
    /// Vanish as a crashed process would: the row stays until it goes stale.
    Crash,
}

/// What everyone inside the server shares.
struct Shared {
    config: ServerConfig,
    limits: wire::Limits,
    counters: Counters,
    limiter: Arc<Limiter>,
    stop: watch::Sender<Stop>,
    endpoint: Endpoint,
    incarnation: Incarnation,
    /// Whether a registry row was written (not for a standalone instance).
    registered: bool,
    /// Told each handshake's time to rank (see [`ServerHandle::set_rank_observer`]).
    rank_observer: std::sync::OnceLock<RankObserver>,
    /// The application's admission hook, if any.
    admission: Option<AdmissionPolicy>,
    /// Hooks that miss their deadline are logged at most every 5 s.
    hook_warning: std::sync::Mutex<limits::RateLimitedWarning>,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::ServerTls>,
}

impl Shared {
    fn tls_enabled(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }
}

/// What a server adds to its [`ServerConfig`] beyond the protocol: TLS
/// (feature `tls`) and an admission hook. The default is plain TCP and no
/// hook, exactly [`Server::bind`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Every inbound connection over TLS; mutual TLS between instances.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::ServerTls>,
    /// The application's say on each session request, before it counts.
    pub admission: Option<AdmissionPolicy>,
}

impl ServerOptions {
    /// Plain TCP.
    pub fn new() -> Self {
        ServerOptions::default()
    }

    /// Every inbound connection over TLS, peer links with mutual TLS.
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, tls: crate::tls::ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Asks `policy`'s hook about every session request (see
    /// [`AdmissionPolicy`]): a request it refuses, or does not answer in
    /// time, is rejected `Unauthorized` and never counts.
    pub fn with_admission(mut self, policy: AdmissionPolicy) -> Self {
        self.admission = Some(policy);
        self
    }
}

/// Receives the time from a handshake's arrival (its frame decoded) to its
/// reply being queued for the connection: the time to rank, registry and
/// peer queries included. Called on the connection's task; keep it cheap.
pub type RankObserver = Arc<dyn Fn(std::time::Duration) + Send + Sync>;

enum Input {
    /// A decoded request from a connection; `replies` the first time.
    Request {
        conn: ConnectionId,
        event: instance::Event,
        replies: Option<mpsc::Sender<conn::ToConn>>,
    },
    /// A connection that sent requests closed (or its session ended).
    Closed {
        conn: ConnectionId,
    },
    /// A registry snapshot (peer links follow it).
    Snapshot {
        query_id: QueryId,
        members: Vec<MemberRecord>,
    },
    /// Any other event for the machine (peer reports, registry failures).
    Event(instance::Event),
    Command(Command),
}

enum Command {
    SetAccepting(bool, oneshot::Sender<Result<(), ServerError>>),
    /// Stop admitting, then stop once no session is open or at the deadline.
    Drain(std::time::Duration),
    SetMaxSessions(u32, oneshot::Sender<Result<(), ServerError>>),
    Stats(oneshot::Sender<ServerStats>),
}

/// A running instance server. [`accept`](Self::accept) yields the admitted
/// sessions; [`handle`](Self::handle) controls it from anywhere. Dropping it
/// shuts the server down gracefully.
pub struct Server {
    accepted: mpsc::Receiver<Accepted>,
    handle: ServerHandle,
    local_addr: SocketAddr,
}

/// Controls a running server; cheap to clone.
#[derive(Clone)]
pub struct ServerHandle {
    inbox: mpsc::Sender<Input>,
    shared: Arc<Shared>,
    done: watch::Receiver<bool>,
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // Each RandomState is freshly keyed from the OS's randomness (per process,
    // then stepped per call): enough for an incarnation, no extra dependency.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Claims this instance's registry row. A live row of another incarnation
/// whose endpoint no longer answers belongs to a process that is gone (a
/// crash, `kill -9`, a program that returned without stopping its server): it
/// is taken over at once instead of after `member_ttl`. One that answers is
/// another live process with this id: the start is refused.
async fn register(registry: &Arc<dyn Registry>, shared: &Shared) -> Result<(), ServerError> {
    let instance = &shared.config.instance;
    let heartbeat = Heartbeat {
        id: instance.id,
        endpoint: instance.endpoint.clone(),
        cluster: instance.cluster.clone(),
        role: instance.role,
        accepting: instance.accepting,
        workload: Workload::new(0, instance.max_sessions),
    };
    let timeout = instance.registry_timeout;
    let register = registry.register(&heartbeat, shared.incarnation, instance.member_ttl);
    let in_use =
        match tokio::time::timeout(timeout, register).await.map_err(|_| ServerError::RegistryTimeout)? {
            Ok(()) => return Ok(()),
            Err(in_use @ RegistryError::IdInUse { .. }) => in_use,
            Err(other) => return Err(other.into()),
        };
    let RegistryError::IdInUse { holder, endpoint: ref holder_endpoint, .. } = in_use else {
        return Err(in_use.into());
    };
    let Ok(old) = holder_endpoint.parse::<Endpoint>() else {
        // An endpoint nobody can dial: nothing would ever answer there.
        return take_over(registry, &heartbeat, shared, holder, holder_endpoint).await;
    };
    let deadline = tokio::time::Instant::now() + instance.peer_timeout;
    if peer::still_answers(&old, shared, deadline).await {
        return Err(in_use.into());
    }
    take_over(registry, &heartbeat, shared, holder, holder_endpoint).await
}

async fn take_over(
    registry: &Arc<dyn Registry>,
    heartbeat: &Heartbeat,
    shared: &Shared,
    holder: Incarnation,
    holder_endpoint: &str,
) -> Result<(), ServerError> {
    let take_over = registry.take_over(heartbeat, shared.incarnation, holder);
    tokio::time::timeout(shared.config.instance.registry_timeout, take_over)
        .await
        .map_err(|_| ServerError::RegistryTimeout)??;
    tracing::warn!(
        id = %heartbeat.id,
        previous = %holder,
        "took over the registry row of instance {}: its previous process at {holder_endpoint} does not answer",
        heartbeat.id
    );
    Ok(())
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

impl Server {
    /// Validates `config`, binds its listener (backlog 1024), registers this
    /// process start (a fresh incarnation) and starts serving. A live
    /// registry row with the same id and another incarnation is
    /// [`RegistryError::IdInUse`]: the server does not start. The [module
    /// docs](self) show a server binding and accepting.
    pub async fn bind(config: ServerConfig, registry: Arc<dyn Registry>) -> Result<Server, ServerError> {
        Server::bind_with(config, registry, ServerOptions::default()).await
    }

    /// [`bind`](Self::bind) with `options`: with TLS every inbound connection
    /// is TLS, a `WorkloadQuery` is answered only on a connection whose client
    /// certificate chains to the cluster CA, and peer links present this
    /// instance's certificate.
    pub async fn bind_with(
        mut config: ServerConfig,
        registry: Arc<dyn Registry>,
        options: ServerOptions,
    ) -> Result<Server, ServerError> {
        config.validate()?;
        if let Some(policy) = &options.admission {
            policy.validate().map_err(ServerError::Config)?;
        }
        let listener =
            listen(config.listen).map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        if config.listen.port() == 0 {
            let endpoint = &config.instance.endpoint;
            config.instance.endpoint =
                Endpoint::with_instance(endpoint.instance(), endpoint.host(), local_addr.port())
                    .map_err(|e| ServerError::Config(format!("instance.endpoint: {e}")))?;
        }
        let instance = &config.instance;
        let incarnation = Incarnation(random_u64());
        let registered = instance.role != Role::Standalone;
        let machine = Instance::new(config.instance.clone(), crate::now(), random_u64())
            .map_err(|e| ServerError::Config(e.to_string()))?;
        let limits = wire::Limits::default().with_max_list_len(config.instance.max_list_len);
        let shared = Arc::new(Shared {
            limits,
            counters: Counters::default(),
            limiter: Arc::new(Limiter::new(
                config.max_connections,
                config.max_connections_per_ip,
                config.max_sessions_per_ip,
            )),
            stop: watch::Sender::new(Stop::Running),
            endpoint: config.instance.endpoint.clone(),
            incarnation,
            registered,
            rank_observer: std::sync::OnceLock::new(),
            admission: options.admission,
            hook_warning: std::sync::Mutex::new(limits::RateLimitedWarning::new(
                std::time::Duration::from_secs(5),
            )),
            config,
            #[cfg(feature = "tls")]
            tls: options.tls,
        });
        if registered {
            register(&registry, &shared).await?;
        }
        let (inbox, rx) = mpsc::channel(INBOX);
        let (accepted_tx, accepted) = mpsc::channel(shared.config.accept_queue);
        let (done_tx, done) = watch::channel(false);
        let (heartbeats, heartbeat_task) = if registered {
            let (tx, rx) = watch::channel(None);
            (Some(tx), Some(tokio::spawn(publish_heartbeats(registry.clone(), shared.clone(), rx))))
        } else {
            (None, None)
        };
        let actor = Actor {
            machine,
            shared: shared.clone(),
            inbox: inbox.clone(),
            registry,
            conns: Default::default(),
            peers: peer::PeerLinks::new(shared.clone(), inbox.clone()),
            heartbeats,
            heartbeat_task,
            done: done_tx,
            last_snapshot: None,
            stopping_at: None,
        };
        tokio::spawn(actor.run(rx));
        tokio::spawn(conn::accept_loop(listener, shared.clone(), inbox.clone(), accepted_tx));
        let instance = &shared.config.instance;
        info!(id = %instance.id, endpoint = %shared.endpoint, %local_addr, max_sessions = instance.max_sessions,
            incarnation = incarnation.0, tls = shared.tls_enabled(), max_sessions_per_ip = ?shared.config.max_sessions_per_ip,
            admission_hook = shared.admission.is_some(), "instance serving");
        Ok(Server { accepted, handle: ServerHandle { inbox, shared, done }, local_addr })
    }

    /// The next admitted session; `None` once the server has stopped.
    /// Sessions admitted while nobody calls this wait in a queue of
    /// `accept_queue`; beyond it they are closed.
    pub async fn accept(&mut self) -> Option<Accepted> {
        let mut done = self.handle.done.clone();
        tokio::select! {
            biased;
            accepted = self.accepted.recv() => accepted,
            _ = done.wait_for(|d| *d) => None,
        }
    }

    /// A handle to control the server from elsewhere.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The endpoint the instance advertises.
    pub fn endpoint(&self) -> &Endpoint {
        &self.handle.shared.endpoint
    }

    /// This process start's incarnation (the registry row's owner tag).
    pub fn incarnation(&self) -> Incarnation {
        self.handle.shared.incarnation
    }
}

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

impl Drop for Server {
    fn drop(&mut self) {
        self.handle.shared.stop.send_if_modified(|s| {
            let running = *s == Stop::Running;
            if running {
                *s = Stop::Graceful;
            }
            running
        });
    }
}

impl ServerHandle {
    async fn send(&self, command: Command) -> Result<(), ServerError> {
        self.inbox.send(Input::Command(command)).await.map_err(|_| ServerError::Stopped)
    }

    /// Admit new sessions (`true`) or drain (`false`: "Reject new clients");
    /// published at once in a heartbeat. [`ServerError::Stopping`] for
    /// `true` while [`shutdown_graceful`](Self::shutdown_graceful) drains.
    pub async fn set_accepting(&self, accepting: bool) -> Result<(), ServerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::SetAccepting(accepting, tx)).await?;
        rx.await.map_err(|_| ServerError::Stopped)?
    }

    /// Changes "Max concurrent sessions" (at least 1); existing sessions stay.
    pub async fn set_max_sessions(&self, max: u32) -> Result<(), ServerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::SetMaxSessions(max, tx)).await?;
        rx.await.map_err(|_| ServerError::Stopped)?
    }

    /// The machine's and the driver's figures.
    pub async fn stats(&self) -> Result<ServerStats, ServerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Stats(tx)).await?;
        rx.await.map_err(|_| ServerError::Stopped)
    }

    /// The address clients and peers are told.
    pub fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    /// Installs the observer of each handshake's time to rank (for metrics).
    /// One per server: `false` if one was installed already.
    pub fn set_rank_observer(&self, observer: RankObserver) -> bool {
        self.shared.rank_observer.set(observer).is_ok()
    }

    /// Stops gracefully and waits: no new connections, open connections and
    /// sessions end at once, and this incarnation's registry row is removed.
    pub async fn shutdown(&self) {
        self.stop(Stop::Graceful).await
    }

    /// Stops gracefully after a drain, and waits: new sessions are refused
    /// at once (`Draining`; the instance advertises `accepting = false`, so
    /// peers stop ranking it), open sessions keep working until they end by
    /// themselves or `grace` has passed (at most a year), then whatever is
    /// left is closed and this incarnation's registry row is removed, as by
    /// [`shutdown`](Self::shutdown). A [`shutdown`](Self::shutdown) during
    /// the drain stops at once. While draining, `set_accepting(true)` fails
    /// with [`ServerError::Stopping`].
    pub async fn shutdown_graceful(&self, grace: std::time::Duration) {
        // A server that has stopped, or is stopping, is simply awaited.
        let _ = self.send(Command::Drain(grace)).await;
        self.stopped().await
    }

    /// Completes once the server has fully stopped (its registry row
    /// removed on a graceful stop), however it was stopped. Independent of
    /// this handle: it may be awaited from anywhere.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut done = self.done.clone();
        async move {
            let _ = done.wait_for(|d| *d).await;
        }
    }

    /// Stops as a crashed process would (for tests and fault drills):
    /// connections drop and heartbeats stop, but the registry row stays
    /// until it goes stale.
    pub async fn crash(&self) {
        self.stop(Stop::Crash).await
    }

    async fn stop(&self, how: Stop) {
        self.shared.stop.send_if_modified(|s| {
            let running = *s == Stop::Running;
            if running {
                *s = how;
            }
            running
        });
        self.stopped().await
    }

    /// Whether the server has stopped.
    pub fn is_stopped(&self) -> bool {
        *self.done.borrow()
    }
}
