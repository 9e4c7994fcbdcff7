//! The blocking client's I/O: one small thread per attempt in flight (see
//! the module docs of [`crate::blocking`] for why), reporting over one
//! bounded channel.

use std::collections::BTreeMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Instant;

use aos_cluster::client::AttemptId;
use aos_cluster::wire::{Limits, Message};
use aos_cluster::Endpoint;

use super::SessionStream;
use crate::client::driver::AttemptIo;
use crate::client_frames::{describe, encode_request, OneFrame};
use crate::now;

/// Reports waiting in the channel before an attempt thread blocks on it; the
/// calling thread drains it continually, so this only smooths bursts.
const MAX_QUEUED_REPORTS: usize = 64;

/// One attempt thread's result, with its transport when a reply came.
pub(super) struct Report {
    pub(super) attempt: AttemptId,
    pub(super) reply: Result<Message, String>,
    pub(super) stream: Option<SessionStream>,
}

/// How attempts reach instances: the reply limits, and TLS if configured.
#[derive(Clone)]
pub(super) struct Transport {
    pub(super) limits: Limits,
    #[cfg(feature = "tls")]
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
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

/// The attempt threads of one `connect`, by the attempts the machine has
/// not closed yet.
pub(super) struct Threads {
    transport: Transport,
    reports: SyncSender<Report>,
    live: BTreeMap<AttemptId, SharedSlot>,
}

impl Threads {
    /// Threads for a client with `seeds` seeds, and the channel their
    /// reports arrive on. This side holds a sender, so the channel never
    /// disconnects while the threads are in use.
    pub(super) fn new(transport: Transport, seeds: usize) -> (Self, Receiver<Report>) {
        let capacity = seeds.saturating_add(1).min(MAX_QUEUED_REPORTS);
        let (reports, receiver) = mpsc::sync_channel(capacity);
        (Threads { transport, reports, live: BTreeMap::new() }, receiver)
    }
}

impl AttemptIo for Threads {
    fn start(
        &mut self,
        attempt: AttemptId,
        endpoint: Endpoint,
        request: Message,
        deadline: Instant,
    ) -> Result<(), String> {
        let slot = SharedSlot::default();
        self.live.insert(attempt, Arc::clone(&slot));
        let reports = self.reports.clone();
        let transport = self.transport.clone();
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

    /// End-of-stream to the instance, and the socket dropped (its thread, if
    /// waiting, wakes and exits).
    fn close(&mut self, attempt: AttemptId) {
        if let Some(slot) = self.live.remove(&attempt) {
            let mut slot = lock(&slot);
            slot.closed = true;
            if let Some(stream) = slot.stream.take() {
                // Fails only when the peer already reset it; dropping closes it either way.
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    fn keep(&mut self, attempt: AttemptId) {
        self.live.remove(&attempt);
    }
}

impl Drop for Threads {
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
