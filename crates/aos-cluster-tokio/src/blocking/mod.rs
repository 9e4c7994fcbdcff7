//! The blocking client: the same [`Connector`] and the same session as
//! [`crate::client`], on `std::net` only. No async runtime is started.
//!
//! # Design: one small thread per attempt in flight
//!
//! A staggered walk needs several connects in flight, each with its own
//! deadline, so that a black-holed seed (its SYNs dropped) never holds up the
//! next seed. `std` has no readiness API (no `poll`), and neither has
//! `socket2`; a non-blocking connect could only be watched by spinning. So
//! each attempt the machine starts runs on a small thread of its own:
//! resolve, `TcpStream::connect_timeout` to each resolved address with the
//! time left until the attempt's deadline, write the request, read exactly
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

use std::collections::BTreeMap;
use std::io::{self, ErrorKind, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use aos_cluster::client::{Action, AttemptId, AttemptRecord, Connector, Event};
use aos_cluster::wire::{Limits, Message, SessionId};
use aos_cluster::{ClientConfig, Endpoint, InstanceId};

use crate::client::reply_event;
pub use crate::client::{ClientOptions, ConnectError, SessionInfo};
use crate::client_frames::{describe, encode_request, reply_limits, OneFrame};
use crate::now;

/// How long the caller sleeps when the machine names no deadline (never in a
/// state this loop waits in, but an idle loop must not spin).
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// Reports waiting in the channel before an attempt thread blocks on it; the
/// calling thread drains it continually, so this only smooths bursts.
const MAX_QUEUED_REPORTS: usize = 64;

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
    let started = now();
    let mut machine = Connector::new(config.clone(), started, rng_seed)?;
    machine.set_credential(options.credential.clone());
    let capacity = config.seeds.len().saturating_add(1).min(MAX_QUEUED_REPORTS);
    let (reports_tx, reports) = mpsc::sync_channel::<Report>(capacity);
    let mut attempts = Attempts::default();
    loop {
        while let Some(action) = machine.poll_action() {
            let (attempt, endpoint, request, timeout) = match action {
                Action::SendHandshake { attempt, endpoint, request, .. } => {
                    (attempt, endpoint, Message::HandshakeRequest(request), config.handshake_timeout)
                }
                Action::SendSessionRequest { attempt, endpoint, request, .. } => {
                    if let Some(reason) = options.refuse_target(config, &endpoint) {
                        deliver(&mut machine, Event::TransportFailed { attempt, reason });
                        continue;
                    }
                    (attempt, endpoint, Message::SessionRequest(request), config.connect_timeout)
                }
                Action::Connected { attempt, endpoint, instance, session_id } => {
                    let Some(stream) = attempts.take_transport(attempt) else {
                        unreachable!("Connected names an attempt whose reply came on its transport");
                    };
                    let info = SessionInfo {
                        instance,
                        endpoint,
                        session_id,
                        time_to_session: now().saturating_duration_since(started),
                        attempts: machine.attempts().to_vec(),
                    };
                    return Ok(Session { stream, info });
                }
                Action::RoundFailed { round, retry_at } => {
                    let backoff = retry_at.saturating_duration_since(now());
                    tracing::debug!(round, ?backoff, "round failed; backing off");
                    continue;
                }
                Action::Close { attempt } => {
                    attempts.close(attempt);
                    continue;
                }
                Action::Failed(error) => return Err(error.into()),
                // A session never closes inside `connect`: it returns at `Connected`.
                other => {
                    tracing::debug!(action = ?other, "not for this driver");
                    continue;
                }
            };
            let deadline = now() + timeout;
            if let Err(reason) = attempts.start(attempt, endpoint, request, deadline, &transport, &reports_tx)
            {
                deliver(&mut machine, Event::TransportFailed { attempt, reason });
            }
        }
        let at = now();
        let wait = match machine.poll_timeout() {
            Some(wake) if wake <= at => {
                machine.handle_timeout(at);
                continue;
            }
            Some(wake) => wake - at,
            None => IDLE_WAKE,
        };
        match reports.recv_timeout(wait) {
            Ok(Report { attempt, reply, stream }) => {
                // A report for an attempt the machine closed meanwhile is moot.
                if !attempts.live.contains_key(&attempt) {
                    continue;
                }
                if let Some(stream) = stream {
                    attempts.open.insert(attempt, stream);
                }
                deliver(&mut machine, reply_event(attempt, reply));
            }
            // This loop holds a sender, so the channel never disconnects.
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => machine.handle_timeout(now()),
        }
    }
}

fn deliver(machine: &mut Connector, event: Event) {
    // Errs only for a session end without a session; this driver sends none.
    if let Err(e) = machine.handle_event(event, now()) {
        tracing::debug!(error = %e, "event refused");
    }
}

/// One attempt thread's result, with its transport when a reply came.
struct Report {
    attempt: AttemptId,
    reply: Result<Message, String>,
    stream: Option<SessionStream>,
}

/// How attempts reach instances: the reply limits, and TLS if configured.
#[derive(Clone)]
struct Transport {
    limits: Limits,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// An attempt's transport as the calling thread holds it.
#[derive(Debug, Default)]
struct Slot {
    /// The machine closed the attempt: its thread must drop its socket.
    closed: bool,
    /// A clone of the attempt's socket once connected, to shut it down.
    stream: Option<TcpStream>,
}

type SharedSlot = Arc<Mutex<Slot>>;

fn lock(slot: &SharedSlot) -> MutexGuard<'_, Slot> {
    // Nothing panics while holding the lock; a poisoned slot is still valid.
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The attempts whose transport the machine has not closed yet.
#[derive(Default)]
struct Attempts {
    live: BTreeMap<AttemptId, SharedSlot>,
    /// Transports whose reply came (the thread handed them over).
    open: BTreeMap<AttemptId, SessionStream>,
}

impl Attempts {
    fn start(
        &mut self,
        attempt: AttemptId,
        endpoint: Endpoint,
        request: Message,
        deadline: Instant,
        transport: &Transport,
        reports: &SyncSender<Report>,
    ) -> Result<(), String> {
        let slot = SharedSlot::default();
        self.live.insert(attempt, Arc::clone(&slot));
        let reports = reports.clone();
        let transport = transport.clone();
        thread::Builder::new()
            .name(format!("aos-attempt-{attempt}"))
            .spawn(move || {
                if let Some(result) = exchange(&endpoint, &request, deadline, &transport, &slot) {
                    let (reply, stream) = match result {
                        Ok((message, stream)) => (Ok(message), Some(stream)),
                        Err(reason) => (Err(reason), None),
                    };
                    // Fails only once `connect` returned: nobody waits for this report.
                    let _ = reports.send(Report { attempt, reply, stream });
                }
            })
            .map(drop)
            .map_err(|e| format!("start attempt thread: {e}"))
    }

    /// The machine is done with `attempt`: end-of-stream to the instance, and
    /// the socket dropped (its thread, if waiting, wakes and exits).
    fn close(&mut self, attempt: AttemptId) {
        if let Some(slot) = self.live.remove(&attempt) {
            let mut slot = lock(&slot);
            slot.closed = true;
            if let Some(stream) = slot.stream.take() {
                // Fails only when the peer already reset it; dropping closes it either way.
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        self.open.remove(&attempt);
    }

    /// The accepted attempt's transport: the session.
    fn take_transport(&mut self, attempt: AttemptId) -> Option<SessionStream> {
        self.live.remove(&attempt)?;
        self.open.remove(&attempt)
    }
}

impl Drop for Attempts {
    /// `connect` returned: the machine closed every other transport by now;
    /// whatever is left is closed too.
    fn drop(&mut self) {
        let open: Vec<AttemptId> = self.live.keys().copied().collect();
        for attempt in open {
            self.close(attempt);
        }
    }
}

/// An attempt thread's work. `None`: its deadline passed or the machine
/// closed it; the machine accounts for both on its own.
fn exchange(
    endpoint: &Endpoint,
    request: &Message,
    deadline: Instant,
    transport: &Transport,
    slot: &SharedSlot,
) -> Option<Result<(Message, SessionStream), String>> {
    let limits = transport.limits;
    let target = endpoint.socket_addr_string();
    let addrs = match target.to_socket_addrs() {
        Ok(addrs) => addrs,
        Err(e) => return Some(Err(format!("resolve {target}: {}", describe(&e)))),
    };
    let mut last_error = None;
    let mut connected = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(now());
        if left.is_zero() || lock(slot).closed {
            return None;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => {
                connected = Some(stream);
                break;
            }
            Err(e) if e.kind() == ErrorKind::TimedOut => return None,
            Err(e) => last_error = Some(e),
        }
    }
    let Some(tcp) = connected else {
        return Some(Err(match last_error {
            Some(e) => format!("connect to {target}: {}", describe(&e)),
            None => format!("resolve {target}: no address"),
        }));
    };
    let io_failure = |what: &str, e: io::Error| -> Option<Result<(Message, SessionStream), String>> {
        let gone = lock(slot).closed || deadline <= now();
        (!gone).then(|| Err(format!("{what} {target}: {}", describe(&e))))
    };
    if let Err(e) = tcp.set_nodelay(true) {
        return io_failure("set TCP_NODELAY on", e);
    }
    {
        let mut slot = lock(slot);
        if slot.closed {
            return None;
        }
        match tcp.try_clone() {
            Ok(clone) => slot.stream = Some(clone),
            Err(e) => return Some(Err(format!("clone socket to {target}: {}", describe(&e)))),
        }
    }
    #[cfg(feature = "tls")]
    let mut stream = match &transport.tls {
        None => SessionStream::Plain(tcp),
        Some(config) => match tls_handshake(config, endpoint.host(), tcp, deadline, slot) {
            Some(Ok(stream)) => SessionStream::Tls(Box::new(stream)),
            Some(Err(reason)) => return Some(Err(reason)),
            None => return None,
        },
    };
    #[cfg(not(feature = "tls"))]
    let mut stream = SessionStream::Plain(tcp);
    let bytes = match encode_request(request, &limits) {
        Ok(bytes) => bytes,
        Err(reason) => return Some(Err(reason)),
    };
    let left = deadline.saturating_duration_since(now());
    if left.is_zero() {
        return None;
    }
    let sent = stream
        .get_ref()
        .set_write_timeout(Some(left))
        .and_then(|()| stream.write_all(&bytes))
        .and_then(|()| stream.flush());
    if let Err(e) = sent {
        return io_failure("send to", e);
    }
    let mut frame = OneFrame::new(limits);
    let message = loop {
        let left = deadline.saturating_duration_since(now());
        if left.is_zero() {
            return None;
        }
        if let Err(e) = stream.get_ref().set_read_timeout(Some(left)) {
            return io_failure("set read timeout on", e);
        }
        match stream.read(frame.unfilled()) {
            Ok(0) => {
                if lock(slot).closed {
                    return None;
                }
                let cut = if frame.started() { "in the middle of its reply" } else { "without replying" };
                return Some(Err(format!("{target} closed the connection {cut}")));
            }
            Ok(n) => match frame.advance(n) {
                Ok(Some(message)) => break message,
                Ok(None) => {}
                Err(e) => return Some(Err(format!("{target}: {e}"))),
            },
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => return io_failure("read from", e),
        }
    };
    // The socket may become the session: it must carry no timeout of ours.
    let tcp = stream.get_ref();
    if let Err(e) = tcp.set_read_timeout(None).and_then(|()| tcp.set_write_timeout(None)) {
        return io_failure("clear timeouts on", e);
    }
    Some(Ok((message, stream)))
}

/// The TLS handshake on an attempt's thread, within its deadline. `None`:
/// the deadline passed or the machine closed the attempt.
#[cfg(feature = "tls")]
fn tls_handshake(
    config: &Arc<rustls::ClientConfig>,
    host: &str,
    mut tcp: TcpStream,
    deadline: Instant,
    slot: &SharedSlot,
) -> Option<Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String>> {
    let name = match crate::tls::server_name(host) {
        Ok(name) => name,
        Err(reason) => return Some(Err(reason)),
    };
    let mut conn = match rustls::ClientConnection::new(config.clone(), name) {
        Ok(conn) => conn,
        Err(e) => return Some(Err(format!("TLS with {host}: {e}"))),
    };
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(now());
        if left.is_zero() || lock(slot).closed {
            return None;
        }
        if let Err(e) = tcp.set_read_timeout(Some(left)).and_then(|()| tcp.set_write_timeout(Some(left))) {
            return Some(Err(format!("set timeouts on {host}: {}", describe(&e))));
        }
        match conn.complete_io(&mut tcp) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                if lock(slot).closed {
                    return None;
                }
                return Some(Err(crate::tls::handshake_failure(host, &e)));
            }
        }
    }
    Some(Ok(rustls::StreamOwned::new(conn, tcp)))
}

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
        self.info.instance()
    }

    /// Where the session is.
    pub fn endpoint(&self) -> &Endpoint {
        self.info.endpoint()
    }

    /// The instance's name for the session.
    pub fn session_id(&self) -> SessionId {
        self.info.session_id()
    }

    /// From the start of [`Client::connect`] to the accepting reply.
    pub fn time_to_session(&self) -> Duration {
        self.info.time_to_session()
    }

    /// The attempt log: every attempt of every round, the accepted one last.
    pub fn attempts(&self) -> &[AttemptRecord] {
        self.info.attempts()
    }

    /// Ends the session: end-of-stream both ways (the instance sees it at once).
    pub fn shutdown(&self) -> io::Result<()> {
        self.stream.get_ref().shutdown(Shutdown::Both)
    }

    /// The underlying TCP stream, for socket options (timeouts) and addresses.
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
