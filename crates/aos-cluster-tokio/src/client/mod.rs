//! The async client: finds a balanced session and hands over its byte stream.
//!
//! [`Client::connect`] drives the Sans-IO [`Connector`] (phases 1 and 3 of SPEC.md,
//! with its rounds and backoff) over tokio TCP. The machine decides
//! everything protocol; this driver only
//!
//! - runs one task per attempt the machine starts (resolve with tokio's
//!   resolver, TCP connect with `TCP_NODELAY`, write the request frame, read
//!   exactly one reply frame within the wire limits), so staggered
//!   handshakes run concurrently;
//! - feeds each reply to the machine through `client::Event::from_message`,
//!   and each transport failure as `Event::TransportFailed` with a reason
//!   such as `connect to aos2:2712: connection refused`;
//! - sleeps until the machine's `poll_timeout`, which holds every attempt's
//!   deadline (resolution and connect included: the task is aborted when the
//!   machine gives up on it);
//! - closes an attempt's transport when the machine says `Close`, and on
//!   nothing else, keeps the accepted one and returns it as the [`Session`].
//!
//! Dropping the future returned by [`Client::connect`] aborts every attempt and
//! closes every transport it opened.
//!
//! The reply reader never reads past the reply frame, so the application
//! bytes an instance sends right after accepting (SPEC 3.6) are the first
//! bytes the [`Session`] reads.

mod allow;
mod error;
mod info;
mod options;

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use aos_cluster::client::{Action, AttemptId, AttemptRecord, Connector, Event};
use aos_cluster::wire::{Limits, Message, SessionId};
use aos_cluster::{ClientConfig, Endpoint, InstanceId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{lookup_host, TcpStream};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{sleep_until, Instant as TokioInstant};

use crate::client_frames::{describe, encode_request, reply_limits, OneFrame};
use crate::now;

pub use self::allow::{AllowList, AllowListError};
pub use self::options::ClientOptions;
pub use crate::transport::SessionStream;
pub use error::ConnectError;
pub use info::SessionInfo;

/// How long the driver sleeps when the machine names no deadline: never in
/// a state this loop waits in, but an idle loop must not spin.
const IDLE_WAKE: Duration = Duration::from_secs(1);

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
    let started = now();
    let mut machine = Connector::new(config.clone(), started, rng_seed)?;
    machine.set_credential(options.credential.clone());
    let mut driver = Driver {
        #[cfg(feature = "tls")]
        tls: options.rustls().cloned(),
        limits: reply_limits(config),
        tasks: JoinSet::new(),
        running: BTreeMap::new(),
        open: BTreeMap::new(),
    };
    loop {
        while let Some(action) = machine.poll_action() {
            match action {
                Action::SendHandshake { attempt, endpoint, request, .. } => {
                    driver.start(attempt, endpoint, Message::HandshakeRequest(request));
                }
                Action::SendSessionRequest { attempt, endpoint, request, .. } => {
                    if let Some(reason) = options.refuse_target(config, &endpoint) {
                        feed(&mut machine, Event::TransportFailed { attempt, reason });
                        continue;
                    }
                    driver.start(attempt, endpoint, Message::SessionRequest(request));
                }
                Action::Connected { attempt, endpoint, instance, session_id } => {
                    // The accepting reply came with its transport, stored just before it was fed.
                    let Some(stream) = driver.open.remove(&attempt) else {
                        unreachable!("Connected names an attempt whose reply this driver delivered");
                    };
                    let info = SessionInfo {
                        instance,
                        endpoint,
                        session_id,
                        time_to_session: now().saturating_duration_since(started),
                        attempts: machine.attempts().to_vec(),
                    };
                    // Dropping the driver aborts any task still running and closes its
                    // transport; the machine has closed them all by now.
                    return Ok(Session { stream, info });
                }
                Action::RoundFailed { round, retry_at } => {
                    let backoff = retry_at.saturating_duration_since(now());
                    tracing::debug!(round, ?backoff, "round failed; backing off");
                }
                Action::Close { attempt } => driver.close(attempt),
                Action::Failed(error) => return Err(error.into()),
                // A session never closes inside `connect`: it returns at `Connected`.
                other => tracing::debug!(action = ?other, "not for this driver"),
            }
        }
        let wake = machine.poll_timeout().unwrap_or_else(|| now() + IDLE_WAKE);
        tokio::select! {
            biased;
            Some(joined) = driver.tasks.join_next(), if !driver.tasks.is_empty() => {
                // An aborted task (its attempt closed) has nothing to report.
                let Ok(finished) = joined else { continue };
                if let Some(event) = driver.finished(finished) {
                    feed(&mut machine, event);
                }
            }
            () = sleep_until(TokioInstant::from_std(wake)) => machine.handle_timeout(now()),
        }
    }
}

fn feed(machine: &mut Connector, event: Event) {
    // Errs only for a session end without a session; this driver sends none.
    if let Err(e) = machine.handle_event(event, now()) {
        tracing::debug!(error = %e, "event refused");
    }
}

/// A seed for the Connector's salts, shuffles and jitter: std's per-process
/// random hasher keys over the clock.
pub(crate) fn random_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(now())
}

/// The transports of one `connect`: running attempts and finished ones whose
/// transport the machine has not closed yet.
struct Driver {
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    limits: Limits,
    tasks: JoinSet<Finished>,
    running: BTreeMap<AttemptId, AbortHandle>,
    open: BTreeMap<AttemptId, SessionStream>,
}

/// What an attempt's task returns: its reply or why there is none, and its
/// transport if one was opened (closed only when the machine says).
struct Finished {
    attempt: AttemptId,
    stream: Option<SessionStream>,
    reply: Result<Message, String>,
}

impl Driver {
    fn start(&mut self, attempt: AttemptId, endpoint: Endpoint, request: Message) {
        let handle = self.tasks.spawn(exchange(
            attempt,
            endpoint,
            request,
            self.limits,
            #[cfg(feature = "tls")]
            self.tls.clone(),
        ));
        self.running.insert(attempt, handle);
    }

    /// The machine is done with `attempt`: stop its task, close its transport.
    fn close(&mut self, attempt: AttemptId) {
        if let Some(task) = self.running.remove(&attempt) {
            task.abort();
        }
        self.open.remove(&attempt);
    }

    /// An attempt's task ended: keep its transport, and say what happened
    /// (nothing when the machine closed the attempt meanwhile: the transport
    /// is dropped, which closes it).
    fn finished(&mut self, finished: Finished) -> Option<Event> {
        let Finished { attempt, stream, reply } = finished;
        self.running.remove(&attempt)?;
        if let Some(stream) = stream {
            self.open.insert(attempt, stream);
        }
        Some(reply_event(attempt, reply))
    }
}

/// What an attempt's reply (or its absence) means to the machine: a reply
/// through `Event::from_message`, anything else a failed transport.
pub(crate) fn reply_event(attempt: AttemptId, reply: Result<Message, String>) -> Event {
    match reply.and_then(|message| Event::from_message(attempt, message).map_err(|e| e.to_string())) {
        Ok(event) => event,
        Err(reason) => Event::TransportFailed { attempt, reason },
    }
}

/// One attempt: open a transport, send the request, read one reply frame.
async fn exchange(
    attempt: AttemptId,
    endpoint: Endpoint,
    request: Message,
    limits: Limits,
    #[cfg(feature = "tls")] tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Finished {
    let tcp = match open_transport(&endpoint).await {
        Ok(stream) => stream,
        Err(reason) => return Finished { attempt, stream: None, reply: Err(reason) },
    };
    let opened = SessionStream::handshake(
        tcp,
        endpoint.host(),
        #[cfg(feature = "tls")]
        tls.as_ref(),
    )
    .await;
    let mut stream = match opened {
        Ok(stream) => stream,
        Err(reason) => return Finished { attempt, stream: None, reply: Err(reason) },
    };
    let reply = request_reply(&mut stream, &endpoint, &request, limits).await;
    Finished { attempt, stream: Some(stream), reply }
}

/// Resolves `endpoint` and connects to its addresses in order, the first
/// that answers wins. No timeout here: the machine's deadline for the
/// attempt aborts this task.
async fn open_transport(endpoint: &Endpoint) -> Result<TcpStream, String> {
    let target = endpoint.socket_addr_string();
    let addrs = lookup_host(&target).await.map_err(|e| format!("resolve {target}: {}", describe(&e)))?;
    let mut last_error = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                stream
                    .set_nodelay(true)
                    .map_err(|e| format!("set TCP_NODELAY on {target}: {}", describe(&e)))?;
                return Ok(stream);
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(match last_error {
        Some(e) => format!("connect to {target}: {}", describe(&e)),
        None => format!("resolve {target}: no address"),
    })
}

async fn request_reply(
    stream: &mut SessionStream,
    endpoint: &Endpoint,
    request: &Message,
    limits: Limits,
) -> Result<Message, String> {
    let target = endpoint.socket_addr_string();
    let bytes = encode_request(request, &limits)?;
    stream.write_all(&bytes).await.map_err(|e| format!("send to {target}: {}", describe(&e)))?;
    let mut frame = OneFrame::new(limits);
    loop {
        let n = stream
            .read(frame.unfilled())
            .await
            .map_err(|e| format!("read from {target}: {}", describe(&e)))?;
        if n == 0 {
            let cut = if frame.started() { "in the middle of its reply" } else { "without replying" };
            return Err(format!("{target} closed the connection {cut}"));
        }
        if let Some(message) = frame.advance(n).map_err(|e| format!("{target}: {e}"))? {
            return Ok(message);
        }
    }
}

/// An open session: the application's byte stream to the instance that
/// admitted it (SPEC 3.6), read and written with tokio's `AsyncRead` and
/// `AsyncWrite`. The protocol sends nothing more on it.
///
/// The session ends when either side closes the stream: drop the `Session`,
/// or `shutdown()` it (`AsyncWriteExt::shutdown`, which sends end-of-stream
/// and lets the instance's last bytes still be read).
#[derive(Debug)]
pub struct Session {
    stream: SessionStream,
    info: SessionInfo,
}

impl Session {
    /// Everything below in one value.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// The instance that admitted the session, when known.
    pub fn instance(&self) -> Option<InstanceId> {
        self.info.instance
    }

    /// Where the session is.
    pub fn endpoint(&self) -> &Endpoint {
        &self.info.endpoint
    }

    /// The instance's name for the session.
    pub fn session_id(&self) -> SessionId {
        self.info.session_id
    }

    /// From the start of [`Client::connect`] to the accepting reply.
    pub fn time_to_session(&self) -> Duration {
        self.info.time_to_session
    }

    /// The attempt log: every attempt of every round, the accepted one last.
    pub fn attempts(&self) -> &[AttemptRecord] {
        &self.info.attempts
    }

    /// The underlying TCP stream, for socket options and addresses (under
    /// TLS, reading or writing it directly would break the session).
    pub fn get_ref(&self) -> &TcpStream {
        self.stream.get_ref()
    }

    /// Whether the session runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// The stream and the session's details, for callers that want to own
    /// the stream (the session lasts as long as the stream).
    pub fn into_parts(self) -> (SessionStream, SessionInfo) {
        (self.stream, self.info)
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
