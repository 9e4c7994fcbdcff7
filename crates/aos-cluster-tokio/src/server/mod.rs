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
//! One actor task owns the machine (`actor`); the listener accepts under the
//! caps (`accept`); one task per connection reads one frame at a time under
//! deadlines and writes its reply (`conn`); peer links carry workload
//! queries (`peer`); a writer keeps the registry row fresh (`membership`).
//! Every channel is bounded, so memory is a function of the configuration
//! (connections x one frame), never of what clients send.
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

mod accept;
mod actor;
mod admission;
mod config;
mod conn;
mod error;
mod handle;
#[cfg(any(feature = "tower", feature = "tonic"))]
mod incoming;
mod limits;
mod membership;
mod peer;
mod stats;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;

use aos_cluster::instance::{self, ConnectionId};
use aos_cluster::registry::MemberRecord;
use aos_cluster::wire::{self, QueryId};
use aos_cluster::{Endpoint, Instance, Role};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::info;

use self::actor::Actor;
pub use self::admission::{AdmissionHook, AdmissionPolicy, AdmissionRequest, Verdict};
pub use self::config::{ServerConfig, ServerOptions};
pub use self::error::ServerError;
#[cfg(feature = "tower")]
pub use self::incoming::Incoming;
#[cfg(feature = "admin")]
pub(crate) use self::limits::snake_case;
use self::limits::{Counters, Limiter};
use self::membership::{publish_heartbeats, random_u64, register};
pub use self::stats::{ConnectionStats, PeerStats, RegistryStats, ServerStats, SessionStats};
pub use self::stream::{AcceptInfo, Accepted, AppStream};
use crate::registry::{Incarnation, Registry};

/// Inputs queued to the actor (bounded: every sender waits when it is full).
const INBOX: usize = 1024;

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

impl Server {
    /// Validates `config`, binds its listener (backlog 1024), registers this
    /// process start (a fresh incarnation) and starts serving. A live
    /// registry row with the same id and another incarnation is
    /// [`RegistryError::IdInUse`](crate::registry::RegistryError::IdInUse): the server does not start. The [module
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
        let listener = accept::listen(config.listen)
            .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
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
            register(&registry, &shared, machine.heartbeat()).await?;
        }
        let (inbox, rx) = mpsc::channel(INBOX);
        let (accepted_tx, accepted) = mpsc::channel(shared.config.accept_queue);
        let (done_tx, done) = watch::channel(false);
        let (heartbeats, heartbeat_task) = if registered {
            let (tx, rx) = watch::channel(None);
            let writer = publish_heartbeats(registry.clone(), shared.clone(), rx, machine.purge_horizon());
            (Some(tx), Some(tokio::spawn(writer)))
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
        tokio::spawn(accept::accept_loop(listener, shared.clone(), inbox.clone(), accepted_tx));
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
