//! The actor: the one task that owns the [`Instance`](aos_cluster::Instance)
//! machine. Connection tasks, peer links, registry tasks and the handle talk
//! to it through one bounded channel; it feeds each input to the machine,
//! drains the machine's actions and sleeps until `poll_timeout`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use aos_cluster::instance::{self, Action, ConnectionId, Instance};
use aos_cluster::registry::Heartbeat;
use aos_cluster::wire::{Message, QueryId, SessionId};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant as TokioInstant};
use tracing::{debug, info, warn};

use super::conn::{stopped, ToConn};
use super::limits::{Counters, RateLimitedWarning};
use super::peer::PeerLinks;
use super::{
    Command, ConnectionStats, Input, PeerStats, RegistryStats, ServerError, ServerStats, SessionStats,
    Shared, Stop,
};
use crate::now;
use crate::registry::Registry;

pub(super) struct Actor {
    pub machine: Instance,
    pub shared: Arc<Shared>,
    pub inbox: mpsc::Sender<Input>,
    pub registry: Arc<dyn Registry>,
    /// Connections that sent a request and hold no session: where replies go.
    pub conns: HashMap<ConnectionId, mpsc::Sender<ToConn>>,
    pub peers: PeerLinks,
    pub heartbeats: Option<watch::Sender<Option<Heartbeat>>>,
    pub heartbeat_task: Option<JoinHandle<()>>,
    pub done: watch::Sender<bool>,
    /// When the last registry snapshot arrived (for `ServerStats::snapshot_age`).
    pub last_snapshot: Option<std::time::Instant>,
    /// Draining to stop ([`Command::Drain`]): the stop comes when no session
    /// is open, or at this deadline.
    pub stopping_at: Option<TokioInstant>,
}

impl Actor {
    pub async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let mut stop = self.shared.stop.subscribe();
        let mut saturated = self.shared.limiter.subscribe();
        let mut outbox: Vec<(ConnectionId, Message, Option<SessionId>)> = Vec::new();
        // Near the limit saturation may come and go often: say so at most every 5 s.
        let mut saturation_warning = RateLimitedWarning::new(std::time::Duration::from_secs(5));
        loop {
            self.drain(&mut outbox);
            if self.stopping_at.is_some() && self.machine.workload().connected == 0 {
                info!(id = %self.machine.id(), "drained: no session open; stopping");
                self.stop_gracefully();
            }
            let deadline = self.machine.poll_timeout();
            let stopping_at = self.stopping_at;
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => break,
                _ = sleep_until(stopping_at.unwrap_or_else(TokioInstant::now)), if stopping_at.is_some() => {
                    info!(id = %self.machine.id(), open = self.machine.workload().connected,
                        "shutdown grace over: closing the sessions left");
                    self.stop_gracefully();
                }
                Ok(()) = saturated.changed() => {
                    let saturated = *saturated.borrow_and_update();
                    if saturated {
                        if let Some(count) = saturation_warning.hit() {
                            warn!(id = %self.machine.id(), open = self.shared.limiter.open(), count,
                                "connection limit reached or accept failing: advertising accepting = false");
                        }
                    } else {
                        debug!(id = %self.machine.id(), "below the connection limit again: advertising as configured");
                    }
                    self.machine.set_saturated(saturated, now());
                }
                input = rx.recv() => match input {
                    Some(input) => self.handle(input),
                    None => break,
                },
                _ = sleep_until(TokioInstant::from_std(deadline.unwrap_or_else(now))), if deadline.is_some() => {
                    self.machine.handle_timeout(now());
                }
            }
        }
        let how = *stop.borrow();
        self.finish(how).await;
    }

    async fn finish(mut self, how: Stop) {
        // Connection tasks waiting on a reply see their channel close.
        self.conns.clear();
        self.heartbeats = None;
        let timeout = self.shared.config.instance.registry_timeout;
        if let Some(mut task) = self.heartbeat_task.take() {
            // The write in progress finishes first (within its deadline), so
            // the removal below is the last word.
            if how == Stop::Crash || tokio::time::timeout(timeout, &mut task).await.is_err() {
                task.abort();
            }
        }
        let registered =
            self.shared.registered && !self.shared.counters.registration_lost.load(Ordering::Relaxed);
        if how == Stop::Graceful && registered {
            let id = self.machine.id();
            match tokio::time::timeout(timeout, self.registry.remove(id, self.shared.incarnation)).await {
                Ok(Ok(true)) => info!(%id, "registry row removed"),
                Ok(Ok(false)) => warn!(%id, "registry row was no longer ours; left as is"),
                Ok(Err(e)) => {
                    self.shared.counters.registry_error("remove", e.kind());
                    warn!(%id, error = %e, "could not remove the registry row")
                }
                Err(_) => {
                    self.shared.counters.registry_error("remove", "timeout");
                    warn!(%id, "registry row removal timed out")
                }
            }
        }
        info!(id = %self.machine.id(), ?how, "instance stopped");
        self.done.send_replace(true);
    }

    fn feed(&mut self, event: instance::Event) {
        if let Err(e) = self.machine.handle_event(event, now()) {
            // A driver bug, not a peer's fault: say so and keep serving.
            warn!(error = %e, "instance refused an event");
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Request { conn, event, replies } => {
                if let Some(replies) = replies {
                    self.conns.insert(conn, replies);
                }
                self.feed(event);
            }
            Input::Closed { conn } => {
                self.conns.remove(&conn);
                self.feed(instance::Event::ConnectionClosed { conn });
            }
            Input::Event(event) => self.feed(event),
            Input::Snapshot { query_id, members } => {
                self.last_snapshot = Some(now());
                self.peers.follow(&members);
                self.feed(instance::Event::RegistrySnapshot { query_id, members });
            }
            Input::Command(command) => self.command(command),
        }
    }

    /// Tells every task to stop gracefully (the loop ends on it next).
    fn stop_gracefully(&mut self) {
        self.stopping_at = None;
        self.shared.stop.send_if_modified(|s| {
            let running = *s == Stop::Running;
            if running {
                *s = Stop::Graceful;
            }
            running
        });
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::SetAccepting(true, reply) if self.stopping_at.is_some() => {
                info!(id = %self.machine.id(), "draining to stop: not admitting again");
                let _ = reply.send(Err(ServerError::Stopping));
            }
            Command::SetAccepting(accepting, reply) => {
                self.machine.set_accepting(accepting, now());
                let _ = reply.send(Ok(()));
            }
            Command::Drain(grace) => {
                if self.stopping_at.is_none() {
                    let grace = grace.min(aos_cluster::config::MAX_DURATION);
                    let at = TokioInstant::now().checked_add(grace).unwrap_or_else(TokioInstant::now);
                    info!(id = %self.machine.id(), open = self.machine.workload().connected, ?grace,
                        "draining to stop: new sessions refused, open ones may end by themselves");
                    self.machine.set_accepting(false, now());
                    self.stopping_at = Some(at);
                }
            }
            Command::SetMaxSessions(max, reply) => {
                let result = self.machine.set_max_sessions(max, now()).map_err(ServerError::InvalidArgument);
                let _ = reply.send(result);
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
        }
    }

    fn stats(&self) -> ServerStats {
        let c = &self.shared.counters;
        ServerStats {
            id: self.machine.id(),
            endpoint: self.shared.endpoint.clone(),
            workload: self.machine.workload(),
            accepting: self.machine.accepting(),
            saturated: self.machine.saturated(),
            stopping: self.stopping_at.is_some(),
            connections: ConnectionStats {
                open: self.shared.limiter.open(),
                refused_at_cap: Counters::get(&c.refused_at_cap),
                refused_per_ip: Counters::get(&c.refused_per_ip),
                closed_first_frame_timeout: Counters::get(&c.closed_first_frame_timeout),
                closed_idle_timeout: Counters::get(&c.closed_idle_timeout),
                closed_write_timeout: Counters::get(&c.closed_write_timeout),
                malformed_frames: Counters::get(&c.malformed_frames),
                accept_errors: Counters::get(&c.accept_errors),
                tls_handshake_failures: Counters::get(&c.tls_handshake_failures),
            },
            sessions: SessionStats {
                handed_over: Counters::get(&c.sessions_handed_over),
                dropped_queue_full: Counters::get(&c.sessions_dropped_queue_full),
                rejected: c.sessions_rejected(),
                refused_per_address: Counters::get(&c.refused_sessions_per_ip),
                refused_by_hook: Counters::get(&c.refused_by_hook),
                admission_hook_timeouts: Counters::get(&c.admission_hook_timeouts),
            },
            peers: PeerStats {
                links: self.peers.len(),
                dials: Counters::get(&c.peer_dials),
                links_replaced: Counters::get(&c.peer_links_replaced),
                queries_refused: Counters::get(&c.peer_queries_refused),
            },
            registry: RegistryStats {
                heartbeat_failures: Counters::get(&c.heartbeat_failures),
                errors: c.registry_errors(),
                malformed_rows: self.registry.malformed_rows(),
                registration_lost: c.registration_lost.load(Ordering::Relaxed),
                snapshot_age: self.last_snapshot.map(|at| now().saturating_duration_since(at)),
            },
            instance: self.machine.stats(),
        }
    }

    /// Carries out every queued action. Replies are sent once the machine is
    /// drained, so a reply that opens a session travels with that news
    /// (`SessionOpened` follows its `Reply`) and the connection task never
    /// reads past the hand-off.
    fn drain(&mut self, outbox: &mut Vec<(ConnectionId, Message, Option<SessionId>)>) {
        loop {
            let mut unreachable = Vec::new();
            while let Some(action) = self.machine.poll_action() {
                match action {
                    Action::Reply { conn, message } => outbox.push((conn, message, None)),
                    Action::SessionOpened { conn, session_id } => {
                        match outbox.iter_mut().rev().find(|(c, ..)| *c == conn) {
                            Some(last) => last.2 = Some(session_id),
                            // The contract queues it right after its reply; if
                            // not, the session cannot be handed over: end it.
                            None => {
                                warn!(conn = conn.0, %session_id, "SessionOpened without its reply; closing");
                                self.conns.remove(&conn);
                                unreachable.push(instance::Event::ConnectionClosed { conn });
                            }
                        }
                    }
                    Action::QueryPeer { query_id, peer, endpoint, query } => {
                        if let Err(reason) = self.peers.query(peer, endpoint, query_id, query) {
                            unreachable.push(instance::Event::PeerUnreachable { query_id, peer, reason });
                        }
                    }
                    Action::QueryRegistry { query_id, cluster } => self.query_registry(query_id, cluster),
                    Action::PublishHeartbeat(heartbeat) => {
                        if let Some(heartbeats) = &self.heartbeats {
                            heartbeats.send_replace(Some(heartbeat));
                        }
                    }
                    // An action this driver predates: nothing it could carry out.
                    other => warn!(action = ?other, "unknown instance action ignored"),
                }
            }
            for (conn, message, opened) in outbox.drain(..) {
                let delivered = match self.conns.get(&conn) {
                    // Capacity 1 and one outstanding request: full means a bug
                    // or a gone task; either way that connection is done.
                    Some(tx) => tx.try_send(ToConn { message, opened }).is_ok(),
                    None => false,
                };
                if !delivered || opened.is_some() {
                    // A session's connection takes no more protocol replies.
                    self.conns.remove(&conn);
                }
                if !delivered {
                    // The connection went away while the machine worked on it.
                    self.feed(instance::Event::ConnectionClosed { conn });
                }
            }
            if unreachable.is_empty() {
                return;
            }
            for event in unreachable {
                self.feed(event);
            }
        }
    }

    fn query_registry(&self, query_id: QueryId, cluster: String) {
        let registry = self.registry.clone();
        let inbox = self.inbox.clone();
        let timeout = self.shared.config.instance.registry_timeout;
        let timing = crate::registry::MemberTiming::of(&self.shared.config.instance);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let input = match tokio::time::timeout(timeout, registry.snapshot(Some(&cluster), timing)).await {
                Ok(Ok(members)) => Input::Snapshot { query_id, members },
                Ok(Err(e)) => {
                    shared.counters.registry_error("snapshot", e.kind());
                    warn!(error = %e, "registry snapshot failed; ranking from the last one, marked stale");
                    Input::Event(instance::Event::RegistryFailed { query_id, reason: e.to_string() })
                }
                Err(_) => {
                    shared.counters.registry_error("snapshot", "timeout");
                    Input::Event(instance::Event::RegistryFailed {
                        query_id,
                        reason: "registry snapshot timed out".into(),
                    })
                }
            };
            let _ = inbox.send(input).await;
        });
    }
}
