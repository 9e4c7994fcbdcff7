//! The blocking client: the same [`Connector`](aos_cluster::client::Connector),
//! the same dispatch and the same session as [`crate::client`], on
//! `std::net` only. No async runtime is started.
//!
//! # Design: one small thread per attempt in flight
//!
//! A staggered walk needs several connects in flight, each with its own
//! deadline, so that a black-holed seed (its SYNs dropped) never holds up the
//! next seed. `std` has no readiness API (no `poll`), and neither has
//! `socket2`; a non-blocking connect could only be watched by spinning. So
//! each attempt the machine starts runs on a small thread of its own
//! (`threads.rs`): resolve, `TcpStream::connect_timeout` to each resolved
//! address with the time left until the attempt's deadline (which the
//! machine's action carries), write the request, read exactly
//! one reply frame with a read timeout at that deadline. Its reply or failure
//! comes back over one bounded channel, on which the calling thread waits
//! until the machine's `poll_timeout`. Hence:
//!
//! - threads alive at once are at most the attempts in flight (at most one
//!   per seed in phase 1, one in phase 3) plus attempts already closed whose
//!   thread is still inside `connect` (it ends by that attempt's deadline);
//! - every thread ends by its attempt's deadline at the latest, and at once
//!   when the machine closes an attempt that is waiting for its reply;
//! - threads are never joined: [`Client::connect`] returns as soon as a session is
//!   accepted or the machine gives up, and a straggler's late report finds
//!   the channel closed.
//!
//! # Closing transports
//!
//! The calling thread keeps a clone of every attempt's socket as soon as it
//! is connected, and the machine's `Close` shuts it down (both directions)
//! and drops it: the instance sees end-of-stream then, and the attempt's
//! thread, woken from its read, exits. A thread still inside `connect` when
//! its attempt is closed finds the close recorded when `connect` returns and
//! drops the socket. An attempt's thread never closes a transport the
//! machine has not closed; at its deadline it only stops waiting (the
//! machine times the attempt out at that same deadline).

mod session;
mod threads;

use std::sync::mpsc::RecvTimeoutError;

use aos_cluster::ClientConfig;

use self::threads::{Report, Threads, Transport};
use crate::client::driver::Driver;
pub use crate::client::{ClientOptions, ConnectError, SessionInfo};
use crate::client_frames::reply_limits;
use crate::now;

pub use self::session::{Session, SessionStream};

/// The blocking client: [`crate::Client`] on `std::net`, no async runtime.
/// Cheap to clone; one client serves any number of threads.
///
/// ```
/// use aos_cluster_tokio::blocking::{Client, ConnectError};
/// use aos_cluster_tokio::{ClientConfig, Endpoint, RetryPolicy};
///
/// // Nothing listens on port 1 of loopback: the walk fails at once.
/// let config = ClientConfig {
///     retry: RetryPolicy { max_rounds: 1, ..RetryPolicy::default() },
///     ..ClientConfig::with_seeds(vec![Endpoint::new("127.0.0.1", 1).unwrap()])
/// };
/// let error: ConnectError = Client::new(config).connect().unwrap_err();
/// assert_eq!(error.attempts().len(), 1, "{error}");
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: crate::client::Client,
}

impl Client {
    /// A client for the cluster `config` names: plain TCP, no allow-list, no
    /// credential.
    pub fn new(config: ClientConfig) -> Client {
        Client { inner: crate::client::Client::new(config) }
    }

    /// A client with TLS, an allow-list, a credential or seeded randomness
    /// as `options` say.
    pub fn with_options(config: ClientConfig, options: ClientOptions) -> Client {
        Client { inner: crate::client::Client::with_options(config, options) }
    }

    /// The cluster's configuration.
    pub fn config(&self) -> &ClientConfig {
        self.inner.config()
    }

    /// The options.
    pub fn options(&self) -> &ClientOptions {
        self.inner.options()
    }

    /// Finds and opens a session as [`crate::Client::connect`] does,
    /// blocking the calling thread until a session is accepted or the
    /// machine gives up; the TLS handshake runs on each attempt's thread
    /// within the attempt's deadline.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::io::{Read, Write};
    /// use std::sync::Arc;
    ///
    /// use aos_cluster_tokio::registry::MemoryRegistry;
    /// use aos_cluster_tokio::{blocking, ClientConfig, Endpoint, InstanceConfig, InstanceId, Server, ServerConfig};
    ///
    /// // An instance on loopback whose application echoes, on a tokio runtime of its own.
    /// let runtime = tokio::runtime::Runtime::new()?;
    /// let instance = InstanceConfig {
    ///     cluster: Some("demo".into()),
    ///     ..InstanceConfig::new(InstanceId(1), Endpoint::new("127.0.0.1", 1)?, 10)
    /// };
    /// let config = ServerConfig::new("127.0.0.1:0".parse()?, instance);
    /// let mut server = runtime.block_on(Server::bind(config, Arc::new(MemoryRegistry::new())))?;
    /// let client = blocking::Client::new(ClientConfig {
    ///     cluster: Some("demo".into()),
    ///     ..ClientConfig::with_seeds(vec![server.endpoint().clone()])
    /// });
    /// runtime.spawn(async move {
    ///     while let Some(accepted) = server.accept().await {
    ///         let (mut from, mut to) = tokio::io::split(accepted.stream);
    ///         tokio::spawn(async move { tokio::io::copy(&mut from, &mut to).await });
    ///     }
    /// });
    ///
    /// // The client: std only, no async runtime.
    /// let mut session = client.connect()?;
    /// session.write_all(b"hello")?;
    /// let mut reply = [0; 5];
    /// session.read_exact(&mut reply)?;
    /// assert_eq!(&reply, b"hello");
    /// assert_eq!(session.instance(), Some(InstanceId(1)));
    /// # Ok(()) }
    /// ```
    pub fn connect(&self) -> Result<Session, ConnectError> {
        run(self.inner.config(), self.inner.options(), self.inner.next_seed())
    }
}

/// One connect: the machine seeded with `rng_seed`, driven to its end.
fn run(config: &ClientConfig, options: &ClientOptions, rng_seed: u64) -> Result<Session, ConnectError> {
    let transport = Transport {
        limits: reply_limits(config),
        #[cfg(feature = "tls")]
        tls: options.rustls().cloned(),
    };
    let mut driver = Driver::new(config, options, rng_seed)?;
    let (mut threads, reports) = Threads::new(transport, config.seeds.len());
    loop {
        if let Some(outcome) = driver.dispatch(&mut threads) {
            return outcome.map(|(stream, info)| Session { stream, info });
        }
        let (wake, at) = (driver.wake(), now());
        if wake <= at {
            driver.timeout();
            continue;
        }
        match reports.recv_timeout(wake - at) {
            Ok(Report { attempt, reply, stream }) => driver.report(attempt, reply, stream),
            // `threads` holds a sender, so the channel never disconnects.
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => driver.timeout(),
        }
    }
}
