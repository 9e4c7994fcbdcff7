//! The per-connection tasks: read one frame at a time under deadlines, hand each to the actor, write its reply,
//! and hand a connection that became a session to the application.

use std::net::SocketAddr;
use std::sync::Arc;

use aos_cluster::instance::{self, ConnectionId};
use aos_cluster::wire::{Message, RejectReason, SessionId, SessionOutcome, SessionReply, SessionRequest};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info_span, warn, Instrument};

use super::admission::{AdmissionRequest, Outcome, Verdict};
use super::limits::{ConnSlot, Counters};
use super::stream::AppStream;
use super::{AcceptInfo, Accepted, Input, Shared, Stop};
use crate::frames::{write_frame, FrameReader, ReadError, WriteError};
use crate::transport::ServerStream;

/// What the actor sends a connection task: the reply to its one outstanding
/// request, and whether that reply opened a session on it.
#[derive(Debug)]
pub(super) struct ToConn {
    pub message: Message,
    pub opened: Option<SessionId>,
}

/// Resolves once the server is told to stop (or is gone).
pub(super) async fn stopped(stop: &mut watch::Receiver<Stop>) {
    let _ = stop.wait_for(|s| *s != Stop::Running).await;
}

/// How a protocol connection ended.
enum End {
    Closed,
    Session,
}

pub(super) struct Connection {
    pub(super) conn: ConnectionId,
    pub(super) peer: SocketAddr,
    pub(super) shared: Arc<Shared>,
    pub(super) inbox: mpsc::Sender<Input>,
    pub(super) accepted: mpsc::Sender<Accepted>,
}

impl Connection {
    /// The TLS handshake when the server has TLS (bounded by
    /// `first_frame_timeout`, like a first frame); `None` when it failed or
    /// the server stopped (the connection is closed then).
    async fn open(&self, tcp: TcpStream, stop: &mut watch::Receiver<Stop>) -> Option<ServerStream> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.shared.tls {
            let deadline = Instant::now() + self.shared.config.first_frame_timeout;
            let handshake = tokio::time::timeout_at(deadline, tls.acceptor().accept(tcp));
            let result = tokio::select! {
                biased;
                _ = stopped(stop) => return None,
                result = handshake => result,
            };
            return match result {
                Ok(Ok(stream)) => Some(ServerStream::Tls(Box::new(stream))),
                Ok(Err(e)) => {
                    Counters::bump(&self.shared.counters.tls_handshake_failures);
                    debug!(conn = %self.conn.0, peer = %self.peer, error = %e, "TLS handshake failed; closing");
                    None
                }
                Err(_) => {
                    Counters::bump(&self.shared.counters.tls_handshake_failures);
                    debug!(conn = %self.conn.0, peer = %self.peer, "TLS handshake not done in time; closing");
                    None
                }
            };
        }
        let _ = stop;
        Some(ServerStream::Plain(tcp))
    }

    pub(super) async fn serve(self, tcp: TcpStream, slot: ConnSlot) {
        let _ = tcp.set_nodelay(true);
        let mut stop = self.shared.stop.subscribe();
        let Some(mut stream) = self.open(tcp, &mut stop).await else { return };
        // A workload query is answered only to a member of the cluster (SPEC
        // "Drivers: trust"): a client certificate chaining to the cluster CA.
        let may_query = !self.shared.tls_enabled() || stream.is_cluster_member();
        let config = &self.shared.config;
        let counters = &self.shared.counters;
        let limits = self.shared.limits;
        let mut reader = FrameReader::new(limits, config.first_frame_timeout);
        // Capacity 1 is enough: one outstanding request, one reply. The
        // sender goes to the actor with the first request and is kept nowhere
        // else, so if the actor forgets this connection the wait below ends.
        let (reply_tx, mut replies) = mpsc::channel::<ToConn>(1);
        let mut reply_tx = Some(reply_tx);
        let mut known = false;
        let mut first = true;
        let mut deadline = Instant::now() + config.first_frame_timeout;
        let mut scratch = Vec::new();
        let mut slot = Some(slot);
        let end = loop {
            let read = tokio::select! {
                biased;
                _ = stopped(&mut stop) => break End::Closed,
                read = reader.read_frame(&mut stream, Some(deadline)) => read,
            };
            let message = match read {
                Ok(message) => message,
                Err(ReadError::Timeout { partial }) => {
                    if first || partial {
                        Counters::bump(&counters.closed_first_frame_timeout);
                    } else {
                        Counters::bump(&counters.closed_idle_timeout);
                    }
                    debug!(conn = %self.conn.0, peer = %self.peer, partial, first, "read deadline passed; closing");
                    break End::Closed;
                }
                Err(ReadError::Decode(e)) => {
                    Counters::bump(&counters.malformed_frames);
                    debug!(conn = %self.conn.0, peer = %self.peer, error = %e, "malformed frame; closing");
                    break End::Closed;
                }
                Err(e) => {
                    debug!(conn = %self.conn.0, peer = %self.peer, error = %e, "connection ended");
                    break End::Closed;
                }
            };
            if !may_query && matches!(message, Message::WorkloadQuery(_)) {
                Counters::bump(&counters.peer_queries_refused);
                debug!(conn = %self.conn.0, peer = %self.peer, "workload query without a cluster certificate; closing");
                break End::Closed;
            }
            let event = match instance::Event::from_message(self.conn, message) {
                Ok(event) => event,
                Err(unexpected) => {
                    // A reply or report sent to an instance: not a client we understand.
                    Counters::bump(&counters.malformed_frames);
                    debug!(conn = %self.conn.0, peer = %self.peer, %unexpected, "unexpected message; closing");
                    break End::Closed;
                }
            };
            // The admission policy answers before the machine counts anything.
            let event = match event {
                instance::Event::SessionRequest { conn, request } => {
                    let Some(held) = slot.as_mut() else {
                        unreachable!("the slot is taken only at hand-over")
                    };
                    match self.admit(conn, request, &stream, held, &mut stop).await {
                        Some(event) => event,
                        None => break End::Closed,
                    }
                }
                other => other,
            };
            let replies_to = reply_tx.take();
            let handshake = matches!(event, instance::Event::HandshakeRequest { .. });
            let span = if handshake {
                info_span!("handshake", conn = self.conn.0, peer = %self.peer)
            } else if matches!(event, instance::Event::SessionRequest { .. }) {
                info_span!("session_request", conn = self.conn.0, peer = %self.peer)
            } else {
                tracing::Span::none()
            };
            let arrived = Instant::now();
            let sent = self
                .inbox
                .send(Input::Request { conn: self.conn, event, replies: replies_to })
                .instrument(span.clone())
                .await;
            if sent.is_err() {
                break End::Closed;
            }
            known = true;
            // One outstanding request: nothing more is read until this is written.
            let reply = tokio::select! {
                biased;
                _ = stopped(&mut stop) => break End::Closed,
                reply = replies.recv().instrument(span.clone()) => reply,
            };
            if handshake {
                // Arrival to reply queued for this connection: the time to rank.
                if let Some(observe) = self.shared.rank_observer.get() {
                    observe(arrived.elapsed());
                }
            }
            let Some(ToConn { message, opened }) = reply else { break End::Closed };
            if let Message::SessionReply(SessionReply { outcome: SessionOutcome::Rejected(reason), .. }) =
                &message
            {
                counters.session_rejected(*reason);
            }
            if opened.is_none() {
                // No session (rejected, or not a session request): an
                // address place taken for it goes back before the reply.
                if let Some(held) = slot.as_mut() {
                    held.give_back_session();
                }
            }
            let write_deadline = Instant::now() + config.write_timeout;
            match write_frame(&mut stream, &message, &limits, &mut scratch, write_deadline)
                .instrument(span)
                .await
            {
                Ok(()) => {}
                Err(WriteError::Timeout) => {
                    Counters::bump(&counters.closed_write_timeout);
                    debug!(conn = %self.conn.0, peer = %self.peer, "client does not read its replies; closing");
                    break End::Closed;
                }
                Err(e) => {
                    debug!(conn = %self.conn.0, peer = %self.peer, error = %e, "write failed");
                    break End::Closed;
                }
            }
            if let Some(session_id) = opened {
                let slot = slot.take().unwrap_or_else(|| unreachable!("the slot is taken only here"));
                self.hand_over(stream, reader, slot, session_id, stop).await;
                break End::Session;
            }
            first = false;
            deadline = Instant::now() + config.idle_timeout;
        };
        if matches!(end, End::Closed) {
            // Close the socket (and free its slot) before telling the actor.
            drop(slot);
        }
        if known {
            // Bounded and awaited: the machine must hear every close once.
            let _ = self.inbox.send(Input::Closed { conn: self.conn }).await;
        }
    }

    /// The admission policy on one session request (see `admission.rs`):
    /// the event for the machine, `SessionRequest` (this connection then
    /// holds one of its address's session places) or `SessionDenied`; `None`
    /// when the server stops meanwhile.
    async fn admit(
        &self,
        conn: ConnectionId,
        request: SessionRequest,
        stream: &ServerStream,
        slot: &mut ConnSlot,
        stop: &mut watch::Receiver<Stop>,
    ) -> Option<instance::Event> {
        let shared = &self.shared;
        let counters = &shared.counters;
        let deny = |request, reason| Some(instance::Event::SessionDenied { conn, request, reason });
        // At its cap already: refused without costing a hook call.
        if !shared.limiter.session_room(self.peer.ip()) {
            Counters::bump(&counters.refused_sessions_per_ip);
            debug!(conn = %conn.0, peer = %self.peer, "address at max_sessions_per_ip; session refused");
            return deny(request, RejectReason::AddressLimit);
        }
        if let Some(policy) = &shared.admission {
            let ask = AdmissionRequest {
                peer_addr: self.peer,
                client_certificate: stream.client_certificate(),
                credential: request.credential.clone(),
            };
            let outcome = tokio::select! {
                biased;
                _ = stopped(stop) => return None,
                outcome = policy.run(ask) => outcome,
            };
            let failure = match outcome {
                Outcome::Verdict(Verdict::Admit) => None,
                Outcome::Verdict(Verdict::Unauthorized) => {
                    Counters::bump(&counters.refused_by_hook);
                    debug!(conn = %conn.0, peer = %self.peer, "admission hook refused the session");
                    return deny(request, RejectReason::Unauthorized);
                }
                Outcome::TimedOut => Some(format!("did not answer within {:?}", policy.deadline())),
                Outcome::Failed(e) => Some(format!("failed: {e}")),
            };
            if let Some(failure) = failure {
                Counters::bump(&counters.refused_by_hook);
                Counters::bump(&counters.admission_hook_timeouts);
                let warn_now = shared.hook_warning.lock().unwrap_or_else(|e| e.into_inner()).hit();
                if let Some(count) = warn_now {
                    warn!(conn = %conn.0, peer = %self.peer, count,
                        "admission hook {failure}; session refused (Unauthorized)");
                }
                return deny(request, RejectReason::Unauthorized);
            }
        }
        // The check and the count in one step: parallel requests from one
        // address cannot pass the cap together.
        if !slot.take_session() {
            Counters::bump(&counters.refused_sessions_per_ip);
            debug!(conn = %conn.0, peer = %self.peer, "address at max_sessions_per_ip; session refused");
            return deny(request, RejectReason::AddressLimit);
        }
        Some(instance::Event::SessionRequest { conn, request })
    }

    /// The reply that accepted `session_id` is written: the connection is the
    /// application's now. Returns when the session has ended.
    async fn hand_over(
        &self,
        stream: ServerStream,
        reader: FrameReader,
        slot: ConnSlot,
        session_id: SessionId,
        mut stop: watch::Receiver<Stop>,
    ) {
        let config = &self.shared.config;
        if let Some(idle) = config.tcp_keepalive {
            let keepalive = socket2::TcpKeepalive::new().with_time(idle);
            if let Err(e) = socket2::SockRef::from(stream.tcp()).set_tcp_keepalive(&keepalive) {
                debug!(conn = %self.conn.0, error = %e, "could not set TCP keepalive");
            }
        }
        let (ended_tx, ended_rx) = oneshot::channel();
        let mut app_stop = stop.clone();
        let app_stopped = Box::pin(async move { stopped(&mut app_stop).await });
        let app = AppStream::new(stream, reader.into_leftover(), app_stopped, slot, ended_tx);
        let info =
            AcceptInfo { session_id, peer_addr: self.peer, conn: self.conn, accepted_at: crate::now() };
        match self.accepted.try_send(Accepted { info, stream: app }) {
            Ok(()) => {
                Counters::bump(&self.shared.counters.sessions_handed_over);
                tokio::select! {
                    // The application dropped the stream (the sender with it).
                    _ = ended_rx => {}
                    _ = stopped(&mut stop) => {}
                }
            }
            Err(e) => {
                // Nobody is accepting fast enough: end the session (the
                // connection closes with the dropped stream) rather than
                // letting the queue grow.
                Counters::bump(&self.shared.counters.sessions_dropped_queue_full);
                debug!(conn = %self.conn.0, session = %session_id, "accept queue full; session closed");
                drop(e);
            }
        }
    }
}
