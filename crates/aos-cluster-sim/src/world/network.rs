//! Transports between the parties: a connection per attempt, the network's
//! fate for each message, replies carried back, closes, and what happens to
//! a message sent to a process that is gone.

use std::time::{Duration, Instant};

use aos_cluster::client::{self, AttemptId};
use aos_cluster::instance::{self, ConnectionId};
use aos_cluster::wire::Message;
use aos_cluster::{Endpoint, InstanceId};

use super::state::{Conn, ConnKind, Ev, Target};
use super::Simulation;
use crate::net::{Fate, Link};
use crate::queue::EventQueue;
use crate::SimError;

impl Simulation {
    pub(super) fn new_conn(&mut self, conn: Conn) -> u64 {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(id, conn);
        id
    }

    /// Opens a transport for a client's attempt and sends `message` on it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_from_client(
        &mut self,
        now: Duration,
        client: u32,
        effort: u32,
        attempt: AttemptId,
        endpoint: &Endpoint,
        kind: ConnKind,
        message: Message,
    ) -> Result<(), SimError> {
        let refused = |sim: &mut Self, rtt: Duration| {
            let event = client::Event::TransportFailed { attempt, reason: "connection refused".into() };
            sim.queue.push(now + rtt, Ev::ToClient { client, effort, event });
        };
        let inst = match self.endpoints.get(endpoint).copied() {
            Some(Target::Instance(i)) => i,
            Some(Target::Refused) => {
                let rtt = self.client_rtt();
                refused(self, rtt);
                return Ok(());
            }
            Some(Target::Blackhole) | None => return Ok(()),
        };
        let s = &self.instances[inst as usize];
        let life = s.life;
        if s.host_down {
            return Ok(());
        }
        if s.machine.is_none() || s.refuse_clients {
            let rtt = self.client_rtt();
            refused(self, rtt);
            return Ok(());
        }
        match self.scenario.network.fate(now, Link::Client(inst), &mut self.net_rng) {
            Fate::Lost => {}
            Fate::Refused(rtt) => refused(self, rtt),
            Fate::Arrive(d) => {
                let attempt = Some(attempt);
                let conn = self.new_conn(Conn {
                    client,
                    effort,
                    attempt,
                    answered: false,
                    inst,
                    life,
                    kind,
                    session: None,
                });
                self.clients[client as usize].attempts.extend(attempt.map(|a| (a, conn)));
                let event = instance::Event::from_message(ConnectionId(conn), message)
                    .map_err(|e| SimError::Driver(e.to_string()))?;
                self.queue.push(now + d, Ev::ToInstance { inst, life, event });
            }
        }
        Ok(())
    }

    pub(super) fn client_rtt(&mut self) -> Duration {
        let l = &self.scenario.network.client_latency;
        l.sample(&mut self.net_rng) + l.sample(&mut self.net_rng)
    }

    /// The client closed an attempt's transport: the instance drops what waits
    /// on it, and a session it admitted there (the client never used) ends.
    pub(super) fn close_conn(&mut self, now: Duration, conn: u64) {
        let Some(c) = self.conns.remove(&conn) else { return };
        let latency = self.scenario.network.client_latency.sample(&mut self.net_rng);
        let (inst, life) = (c.inst, c.life);
        // Ends what waits there and the session it holds: the machine knows which.
        let event = instance::Event::ConnectionClosed { conn: ConnectionId(conn) };
        self.queue.push(now + latency, Ev::ToInstance { inst, life, event });
    }

    /// Instance `inst` wrote `message` on connection `conn_id`.
    pub(super) fn instance_reply(
        &mut self,
        now: Duration,
        inst: u32,
        conn_id: u64,
        message: Message,
    ) -> Result<(), SimError> {
        // A closed connection takes the reply with it (and its session, if
        // the reply admitted one, through its `ConnectionClosed`).
        let Some(conn) = self.conns.get_mut(&conn_id) else { return Ok(()) };
        conn.answered = true;
        match conn.kind {
            ConnKind::Peer { from, life, .. } => {
                self.conns.remove(&conn_id);
                let s = &self.instances[inst as usize];
                if s.silent_peers {
                    return Ok(());
                }
                let extra = s.slow_peers;
                // Only a report answers a query; the querying instance judges
                // nothing else (its query times out).
                let Ok(event) = instance::Event::from_peer_reply(message) else { return Ok(()) };
                if let Fate::Arrive(d) =
                    self.scenario.network.fate(now, Link::Peer(inst, from), &mut self.net_rng)
                {
                    self.queue.push(now + d + extra, Ev::ToInstance { inst: from, life, event });
                }
            }
            ConnKind::Handshake | ConnKind::Session => {
                let (client, effort) = (conn.client, conn.effort);
                let Some(attempt) = conn.attempt else { return Ok(()) };
                // A message kind that does not answer the request: the client's
                // Connector judges it (a malformed reply fails the attempt).
                let event = client::Event::from_message(attempt, message).unwrap_or_else(|unexpected| {
                    client::Event::TransportFailed { attempt, reason: unexpected.to_string() }
                });
                self.reply_to_client(now, inst, client, effort, event);
            }
            ConnKind::Hostile => self.hostile_reply(now, inst, conn_id),
        }
        Ok(())
    }

    fn reply_to_client(&mut self, now: Duration, inst: u32, client: u32, effort: u32, event: client::Event) {
        if let Fate::Arrive(d) = self.scenario.network.fate(now, Link::Client(inst), &mut self.net_rng) {
            self.queue.push(now + d, Ev::ToClient { client, effort, event });
        }
    }

    /// A message reached an instance whose process is gone: a new connection
    /// is refused (the opener learns it), anything else vanishes.
    pub(super) fn bounce(&mut self, now: Duration, event: instance::Event) {
        let conn = match &event {
            instance::Event::HandshakeRequest { conn, .. }
            | instance::Event::SessionRequest { conn, .. }
            | instance::Event::WorkloadQuery { conn, .. } => conn.0,
            _ => return,
        };
        let Some(c) = self.conns.remove(&conn) else { return };
        match c.kind {
            ConnKind::Peer { from, life, query_id } => {
                let event = instance::Event::PeerUnreachable {
                    query_id,
                    peer: InstanceId(c.inst),
                    reason: "connection refused".into(),
                };
                let d = self.scenario.network.peer_latency.sample(&mut self.net_rng);
                self.queue.push(now + d, Ev::ToInstance { inst: from, life, event });
            }
            ConnKind::Handshake | ConnKind::Session => {
                let Some(attempt) = c.attempt else { return };
                let event = client::Event::TransportFailed { attempt, reason: "connection refused".into() };
                let d = self.scenario.network.client_latency.sample(&mut self.net_rng);
                self.queue.push(now + d, Ev::ToClient { client: c.client, effort: c.effort, event });
            }
            // A hostile client learns nothing worth modelling: it moves on.
            ConnKind::Hostile => {}
        }
    }
}

/// Queues a machine's next deadline (as an offset from `epoch`, never before
/// `now`) when it moved; an unchanged deadline is already queued, and a timer
/// queued for an old deadline is skipped on arrival (it no longer matches).
pub(super) fn reschedule(
    queue: &mut EventQueue<Ev>,
    epoch: Instant,
    now: Duration,
    deadline: &mut Option<Duration>,
    next: Option<Instant>,
    timer: Ev,
) {
    let next = next.map(|t| t.saturating_duration_since(epoch).max(now));
    if next != *deadline {
        *deadline = next;
        if let Some(t) = next {
            queue.push(t, timer);
        }
    }
}
