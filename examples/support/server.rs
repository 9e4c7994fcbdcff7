//! A tokio instance server around the Sans-IO [`Instance`] machine.
//!
//! One actor task owns the machine. Everything else talks to it through one
//! channel: connection tasks forward decoded requests, peer links forward
//! workload reports, registry tasks forward snapshots, and the handle sends
//! admin commands. The actor feeds each input to the machine, drains its
//! actions and sleeps until `poll_timeout`. A session lives as long as its
//! TCP connection: when the connection closes, the actor reports
//! `SessionEnded`. The server decides no protocol; it only moves bytes,
//! events and actions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use aos_cluster::instance::{self, ConnectionId, Instance};
use aos_cluster::registry::Heartbeat;
use aos_cluster::wire::{Message, WorkloadQuery};
use aos_cluster::{ConfigError, Endpoint, InstanceConfig, InstanceId, Workload};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant as TokioInstant};
use tracing::{info, warn};

use super::connection::accept_loop;
use super::now;
use super::outbound::{peer_link, publish_heartbeats};
use super::registry::Registry;

/// What the handle can ask of a running server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    Running,
    /// Close everything and remove this instance from the registry.
    Graceful,
    /// Vanish: no goodbye, the registry row stays until it goes stale.
    Crash,
}

/// A running server's figures: the machine's, plus what only the driver sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// This instance.
    pub id: InstanceId,
    /// Sessions open now, and the configured maximum.
    pub workload: Workload,
    /// Admitting new sessions (not draining).
    pub accepting: bool,
    /// Sessions admitted since start.
    pub admitted: u64,
    /// Handshakes received.
    pub handshakes: u64,
    /// Connections closed because of a malformed frame.
    pub malformed: u64,
}

pub(super) enum Input {
    Event(instance::Event),
    Opened { conn: ConnectionId, writer: mpsc::UnboundedSender<Message> },
    Closed { conn: ConnectionId },
    Stats(oneshot::Sender<Stats>),
    Malformed,
}

/// A running instance server.
pub struct InstanceServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its registry id.
    pub id: InstanceId,
    inbox: mpsc::UnboundedSender<Input>,
    stop: watch::Sender<Stop>,
    actor: JoinHandle<()>,
    listener: JoinHandle<()>,
}

/// A listener on `addr` with a 1024-connection accept queue. `TcpListener::bind`
/// uses 128, which a burst of clients overflows; each overflow costs the
/// client a one-second SYN retransmission.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Binds `127.0.0.1:0` and points `config.endpoint` at the port it got.
pub fn bind_loopback(config: &mut InstanceConfig) -> std::io::Result<TcpListener> {
    let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let port = listener.local_addr()?.port();
    config.endpoint = Endpoint::new("127.0.0.1", port).expect("a loopback endpoint is valid");
    Ok(listener)
}

impl InstanceServer {
    /// Starts serving `listener` as the instance `config` describes.
    pub fn start(
        config: InstanceConfig,
        listener: TcpListener,
        registry: Arc<Registry>,
        rng_seed: u64,
    ) -> Result<Self, ConfigError> {
        let addr = listener.local_addr().expect("a bound listener has an address");
        let id = config.id;
        let max_sessions = config.max_sessions;
        let machine = Instance::new(config, now(), rng_seed)?;
        let (inbox, rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(Stop::Running);
        let (heartbeats, heartbeat_rx) = watch::channel(None);
        let heartbeat_task = tokio::spawn(publish_heartbeats(registry.clone(), heartbeat_rx));
        let actor = Actor {
            machine,
            inbox: inbox.clone(),
            conns: HashMap::new(),
            peers: HashMap::new(),
            registry,
            heartbeats: Some(heartbeats),
            heartbeat_task,
            stop: stop_rx.clone(),
            malformed: 0,
        };
        let actor = tokio::spawn(actor.run(rx));
        let listener = tokio::spawn(accept_loop(listener, inbox.clone(), stop_rx));
        info!(%id, %addr, max_sessions, "instance serving");
        Ok(InstanceServer { addr, id, inbox, stop, actor, listener })
    }

    /// Starts or stops admitting new sessions ("Reject new clients").
    pub fn set_accepting(&self, accepting: bool) {
        let _ = self.inbox.send(Input::Event(instance::Event::SetAccepting(accepting)));
    }

    /// The machine's figures and the driver's counters; `None` once stopped.
    pub async fn stats(&self) -> Option<Stats> {
        let (tx, rx) = oneshot::channel();
        self.inbox.send(Input::Stats(tx)).ok()?;
        rx.await.ok()
    }

    /// Stops at once as a crashed process would: sockets close, heartbeats
    /// stop, and the registry row is left to go stale.
    pub async fn crash(self) {
        self.finish(Stop::Crash).await;
    }

    /// Stops, closing every connection, and removes the registry row.
    pub async fn shutdown(self) {
        self.finish(Stop::Graceful).await;
    }

    async fn finish(self, how: Stop) {
        let _ = self.stop.send(how);
        let _ = self.listener.await;
        let _ = self.actor.await;
        info!(id = %self.id, ?how, "instance stopped");
    }
}

struct Connection {
    writer: mpsc::UnboundedSender<Message>,
}

struct Actor {
    machine: Instance,
    inbox: mpsc::UnboundedSender<Input>,
    conns: HashMap<ConnectionId, Connection>,
    peers: HashMap<InstanceId, mpsc::UnboundedSender<WorkloadQuery>>,
    registry: Arc<Registry>,
    heartbeats: Option<watch::Sender<Option<Heartbeat>>>,
    heartbeat_task: JoinHandle<()>,
    stop: watch::Receiver<Stop>,
    malformed: u64,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        loop {
            self.drain_actions();
            let deadline = self.machine.poll_timeout();
            tokio::select! {
                _ = self.stop.changed() => break,
                input = rx.recv() => match input {
                    Some(input) => self.handle(input),
                    None => break,
                },
                _ = sleep_until(TokioInstant::from_std(deadline.unwrap_or_else(now))), if deadline.is_some() => {
                    self.machine.handle_timeout(now());
                }
            }
        }
        // Dropping the sender stops the writer after the write in progress,
        // so a graceful stop's row removal is the last word.
        self.heartbeats = None;
        let _ = (&mut self.heartbeat_task).await;
        if *self.stop.borrow() == Stop::Graceful {
            if let Err(e) = self.registry.remove(self.machine.id()).await {
                warn!(id = %self.machine.id(), error = %e, "could not remove the registry row");
            }
        }
    }

    fn feed(&mut self, event: instance::Event) {
        if let Err(e) = self.machine.handle_event(event, now()) {
            // A driver bug, not a peer's fault: say so and keep serving.
            warn!(error = %e, "instance refused an event");
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Event(event) => self.feed(event),
            Input::Opened { conn, writer } => {
                self.conns.insert(conn, Connection { writer });
            }
            Input::Closed { conn } => {
                if self.conns.remove(&conn).is_some() {
                    // The machine ends the session the connection held.
                    self.feed(instance::Event::ConnectionClosed { conn });
                }
            }
            Input::Stats(reply) => {
                let _ = reply.send(Stats {
                    id: self.machine.id(),
                    workload: self.machine.workload(),
                    accepting: self.machine.accepting(),
                    admitted: self.machine.stats().sessions_accepted,
                    handshakes: self.machine.stats().handshakes,
                    malformed: self.malformed,
                });
            }
            Input::Malformed => self.malformed += 1,
        }
    }

    fn drain_actions(&mut self) {
        while let Some(action) = self.machine.poll_action() {
            match action {
                instance::Action::Reply { conn, message } => self.reply(conn, message),
                instance::Action::QueryPeer { peer, endpoint, query, .. } => {
                    let link = self.peers.entry(peer).or_insert_with(|| {
                        let (tx, rx) = mpsc::unbounded_channel();
                        let inbox = self.inbox.clone();
                        let report = move |event| drop(inbox.send(Input::Event(event)));
                        tokio::spawn(peer_link(peer, endpoint, rx, report));
                        tx
                    });
                    // A link that died (its peer endpoint changed) is replaced on the next query.
                    if let Err(mpsc::error::SendError(query)) = link.send(query) {
                        self.peers.remove(&peer);
                        let _ = self.inbox.send(Input::Event(instance::Event::PeerUnreachable {
                            query_id: query.query_id,
                            peer,
                            reason: "peer link ended".into(),
                        }));
                    }
                }
                instance::Action::QueryRegistry { query_id, cluster } => {
                    let registry = self.registry.clone();
                    let inbox = self.inbox.clone();
                    tokio::spawn(async move {
                        let event = match registry.snapshot(Some(&cluster)).await {
                            Ok(snapshot) => {
                                for skipped in &snapshot.skipped {
                                    warn!(%skipped, "registry row ignored");
                                }
                                instance::Event::RegistrySnapshot { query_id, members: snapshot.members }
                            }
                            Err(e) => {
                                warn!(error = %e, "registry query failed");
                                instance::Event::RegistryFailed { query_id, reason: e.to_string() }
                            }
                        };
                        let _ = inbox.send(Input::Event(event));
                    });
                }
                instance::Action::PublishHeartbeat(heartbeat) => {
                    if let Some(heartbeats) = &self.heartbeats {
                        heartbeats.send_replace(Some(heartbeat));
                    }
                }
                // The example keeps reading protocol frames on a session's
                // connection; the machine rejects a second session there.
                _ => {}
            }
        }
    }

    fn reply(&mut self, conn: ConnectionId, message: Message) {
        // A connection that closed while the machine worked on it takes the
        // reply with it; its `ConnectionClosed` already ended any session.
        if let Some(connection) = self.conns.get_mut(&conn) {
            let _ = connection.writer.send(message);
        }
    }
}
