//! The async client: finds a balanced session and hands over its byte stream.
//!
//! [`Client::connect`] drives the Sans-IO [`Connector`](aos_cluster::client::Connector)
//! (phases 1 and 3 of SPEC.md, with its rounds and backoff) over tokio TCP.
//! The dispatch of the machine's actions is shared with the blocking client
//! (`driver.rs`); this client adds only its I/O (`tasks.rs`): one task per
//! attempt, so staggered handshakes run concurrently, aborted when the
//! machine closes the attempt (its deadline included); and a wait for the
//! first task to finish or the machine's next deadline.
//!
//! Dropping the future returned by [`Client::connect`] aborts every attempt and
//! closes every transport it opened.
//!
//! The reply reader never reads past the reply frame, so the application
//! bytes an instance sends right after accepting (SPEC 3.6) are the first
//! bytes the [`Session`] reads.

mod allow;
pub(crate) mod driver;
mod error;
pub(crate) mod info;
mod options;
mod session;
mod tasks;

use tokio::time::{sleep_until, Instant as TokioInstant};

use aos_cluster::ClientConfig;

use self::driver::Driver;
use self::tasks::Tasks;
use crate::client_frames::reply_limits;

pub use self::allow::{AllowList, AllowListError};
pub use self::options::ClientOptions;
pub use self::session::Session;
pub use crate::transport::SessionStream;
pub use error::ConnectError;
pub use info::SessionInfo;

/// The async client: finds a balanced session and hands over its byte stream.
/// Cheap to clone (the configuration is shared); one client serves any
/// number of concurrent connects.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use aos_cluster_tokio::{Client, ClientConfig, ConnectError, Endpoint, RetryPolicy};
///
/// // Nothing listens on port 1 of loopback: the walk fails at once, and the
/// // error names every attempt.
/// let config = ClientConfig {
///     retry: RetryPolicy { max_rounds: 1, ..RetryPolicy::default() },
///     ..ClientConfig::with_seeds(vec![Endpoint::new("127.0.0.1", 1).unwrap()])
/// };
/// let client = Client::new(config);
/// let error: ConnectError = client.connect().await.unwrap_err();
/// assert_eq!(error.attempts().len(), 1, "{error}");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    config: std::sync::Arc<ClientConfig>,
    options: ClientOptions,
    connects: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Client {
    /// A client for the cluster `config` names: plain TCP, no allow-list, no
    /// credential.
    pub fn new(config: ClientConfig) -> Client {
        Client::with_options(config, ClientOptions::default())
    }

    /// A client with TLS, an allow-list, a credential or seeded randomness
    /// as `options` say.
    pub fn with_options(config: ClientConfig, options: ClientOptions) -> Client {
        Client { config: std::sync::Arc::new(config), options, connects: Default::default() }
    }

    /// The cluster's configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The options.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The seed of the next connect.
    pub(crate) fn next_seed(&self) -> u64 {
        let n = self.connects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.options.seed_for(n)
    }

    /// Finds and opens a session (phases 1 and 3, with the configured
    /// retries). With TLS every instance, seed or ranked entry, must present
    /// a certificate valid for its endpoint's host, and one that does not is
    /// a failed attempt (`certificate for HOST not valid: ...`); ranked
    /// entries outside the allow-list are skipped (a failed attempt too); the
    /// credential rides on every session request.
    ///
    /// Dropping the returned future aborts every attempt and closes every
    /// transport it opened.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    ///
    /// use aos_cluster_tokio::registry::MemoryRegistry;
    /// use aos_cluster_tokio::{Client, ClientConfig, Endpoint, InstanceConfig, InstanceId, Server, ServerConfig};
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// // An instance on loopback whose application echoes.
    /// let instance = InstanceConfig {
    ///     cluster: Some("demo".into()),
    ///     ..InstanceConfig::new(InstanceId(1), Endpoint::new("127.0.0.1", 1)?, 10)
    /// };
    /// let config = ServerConfig::new("127.0.0.1:0".parse()?, instance);
    /// let mut server = Server::bind(config, Arc::new(MemoryRegistry::new())).await?;
    /// // The seeds to ask, in order, and the cluster expected.
    /// let client = Client::new(ClientConfig {
    ///     cluster: Some("demo".into()),
    ///     ..ClientConfig::with_seeds(vec![server.endpoint().clone()])
    /// });
    /// tokio::spawn(async move {
    ///     while let Some(accepted) = server.accept().await {
    ///         let (mut from, mut to) = tokio::io::split(accepted.stream);
    ///         tokio::spawn(async move { tokio::io::copy(&mut from, &mut to).await });
    ///     }
    /// });
    ///
    /// // The session is a byte stream to the instance that admitted it.
    /// let mut session = client.connect().await?;
    /// session.write_all(b"hello").await?;
    /// let mut reply = [0; 5];
    /// session.read_exact(&mut reply).await?;
    /// assert_eq!(&reply, b"hello");
    /// assert_eq!(session.instance(), Some(InstanceId(1)));
    /// # Ok(()) }
    /// ```
    pub async fn connect(&self) -> Result<Session, ConnectError> {
        run(&self.config, &self.options, self.next_seed()).await
    }
}

/// One connect: the machine seeded with `rng_seed`, driven to its end.
async fn run(config: &ClientConfig, options: &ClientOptions, rng_seed: u64) -> Result<Session, ConnectError> {
    let mut driver = Driver::new(config, options, rng_seed)?;
    let mut tasks = Tasks::new(
        reply_limits(config),
        #[cfg(feature = "tls")]
        options.rustls().cloned(),
    );
    loop {
        if let Some(outcome) = driver.dispatch(&mut tasks) {
            // Dropping the tasks aborts any still running and closes its
            // transport; the machine has closed them all by now.
            return outcome.map(|(stream, info)| Session { stream, info });
        }
        let wake = driver.wake();
        tokio::select! {
            biased;
            Some(joined) = tasks.set.join_next(), if !tasks.set.is_empty() => {
                // An aborted task (its attempt closed) has nothing to report.
                let Ok(finished) = joined else { continue };
                driver.report(finished.attempt, finished.reply, finished.stream);
            }
            () = sleep_until(TokioInstant::from_std(wake)) => driver.timeout(),
        }
    }
}
