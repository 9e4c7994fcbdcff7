//! A byte-level test pair, after quinn-proto's `tests/util.rs` `Pair`: one
//! [`Connector`] and N [`Instance`]s that talk only in ENCODED BYTES. Every
//! message goes through [`encode`] and comes out of the receiving end's own
//! per-connection [`Decoder`], then becomes an event through the machines' one
//! conversion (`Event::from_message`, `Event::from_peer_reply`). The registry
//! is a shared in-memory table of heartbeats, read as snapshots with ages.
//!
//! A step does the first of: carry out every queued action; deliver every
//! byte in flight (connections in the order they opened); jump time to the
//! smallest `poll_timeout` among the machines. Delivery takes no time.
//! [`Pair::drive`] and [`Pair::drive_until`] panic past their step bound, so
//! a test that loops forever fails instead.
//!
//! The pair holds no protocol knowledge: it opens a connection per attempt,
//! closes it on `Close` (the instance sees `ConnectionClosed`) and on nothing
//! else, and after `Connected` hands the session's connection to the test,
//! which plays the application. How it carries out the machines' actions
//! and delivers bytes: `carry.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aos_cluster::client::{self, AttemptId, Connector};
use aos_cluster::config::{ClientConfig, InstanceConfig};
use aos_cluster::endpoint::Endpoint;
use aos_cluster::instance::{self, ConnectionId, Instance};
use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::wire::{encode, Decoder, Message, SessionOutcome, SessionRequest};
use aos_cluster::workload::InstanceId;

mod carry;

/// Whether an instance's process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Runs and answers.
    Up,
    /// Not running: connecting to it is refused at once.
    Down,
    /// Crashed mid-flight: connections open, bytes vanish, nothing answers,
    /// its timers stop (so its heartbeat ages in the registry).
    Crashed,
}

/// One instance and its process state.
#[derive(Debug)]
pub struct Node {
    /// The machine.
    pub machine: Instance,
    /// Whether its process runs.
    pub health: Health,
}

/// Who dialled a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The Connector, for this attempt.
    Attempt(AttemptId),
    /// The test itself (a rival client, or the application on a session).
    Raw,
    /// Instance `from` asking a peer for its workload.
    Peer {
        /// The querying node's index.
        from: usize,
    },
}

/// One byte stream between a dialler and an instance.
#[derive(Debug)]
pub struct Conn {
    /// The instance it reaches (node index).
    pub node: usize,
    /// The instance's name for it.
    pub id: ConnectionId,
    /// Who dialled it.
    pub owner: Owner,
    /// Open until either side closes it.
    pub open: bool,
    /// The Connector's session now runs on it (after `Connected`).
    pub session: bool,
    /// Messages read by the dialler once the connection is the test's (raw
    /// connections, and the session's after the hand-off).
    pub inbox: Vec<Message>,
    to_instance: Vec<u8>,
    to_dialler: Vec<u8>,
    at_instance: Decoder,
    at_dialler: Decoder,
}

/// The pair: a Connector, N instances, their connections and the registry.
#[derive(Debug)]
pub struct Pair {
    /// Simulated time.
    pub now: Instant,
    /// The client, once started.
    pub client: Option<Connector>,
    /// The instances, by index.
    pub nodes: Vec<Node>,
    /// Every connection ever opened, in order.
    pub conns: Vec<Conn>,
    /// Every client action carried out, with its time.
    pub client_log: Vec<(Instant, client::Action)>,
    /// The registry: the last heartbeat of each member and when it was written.
    registry: BTreeMap<InstanceId, (Heartbeat, Instant)>,
    /// Attempts the pair could not connect (refused): no connection to close.
    refused: BTreeSet<AttemptId>,
    /// Attempts the Connector closed, to check each is closed once.
    closed: BTreeSet<AttemptId>,
    next_conn: u64,
    steps: usize,
}

impl Pair {
    /// Instances built from `configs` at `now`, every one up; no client yet.
    pub fn new(now: Instant, configs: Vec<InstanceConfig>) -> Pair {
        let nodes = configs
            .into_iter()
            .enumerate()
            .map(|(i, config)| Node {
                machine: Instance::new(config, now, 1000 + i as u64).expect("valid instance config"),
                health: Health::Up,
            })
            .collect();
        Pair {
            now,
            client: None,
            nodes,
            conns: Vec::new(),
            client_log: Vec::new(),
            registry: BTreeMap::new(),
            refused: BTreeSet::new(),
            closed: BTreeSet::new(),
            next_conn: 1,
            steps: 0,
        }
    }

    /// Starts the Connector now: its first handshake goes out on the next step.
    pub fn start_client(&mut self, config: ClientConfig, rng_seed: u64) {
        self.client = Some(Connector::new(config, self.now, rng_seed).expect("valid client config"));
    }

    /// The client.
    pub fn client(&self) -> &Connector {
        self.client.as_ref().expect("client started")
    }

    /// Members whose heartbeat is in the registry.
    pub fn registered(&self) -> usize {
        self.registry.len()
    }

    /// Steps until `done` holds; panics after `max_steps` steps.
    pub fn drive_until(&mut self, max_steps: usize, mut done: impl FnMut(&Pair) -> bool) {
        for _ in 0..max_steps {
            if done(self) {
                return;
            }
            self.step();
        }
        assert!(done(self), "not done after {max_steps} steps (now +{:?})", self.elapsed());
    }

    /// Steps until the client is connected, closed or failed and nothing is in
    /// flight; panics after `max_steps` steps.
    pub fn drive(&mut self, max_steps: usize) {
        self.drive_until(max_steps, |p| {
            let settled = p.client.as_ref().map_or(true, |c| {
                matches!(c.state(), client::State::Connected | client::State::Failed | client::State::Closed)
            });
            settled && p.quiet()
        });
    }

    /// Steps until `by` of simulated time has passed; panics after `max_steps`.
    pub fn run_for(&mut self, by: Duration, max_steps: usize) {
        let until = self.now + by;
        self.drive_until(max_steps, |p| p.now >= until);
    }

    /// Time since the pair's clock started counting steps (for messages).
    fn elapsed(&self) -> Duration {
        self.client_log.first().map_or(Duration::ZERO, |(t, _)| self.now.saturating_duration_since(*t))
    }

    /// No action queued and no byte in flight.
    fn quiet(&self) -> bool {
        // `poll_timeout` returns `now` exactly when actions are queued.
        let client_busy = self.client.as_ref().is_some_and(|c| c.poll_timeout() == Some(self.now));
        let node_busy = self.running().any(|i| self.nodes[i].machine.poll_timeout() == Some(self.now));
        let bytes =
            self.conns.iter().any(|c| c.open && !(c.to_instance.is_empty() && c.to_dialler.is_empty()));
        !client_busy && !node_busy && !bytes
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].health == Health::Up)
    }

    /// One step (see the module docs).
    pub fn step(&mut self) {
        self.steps += 1;
        if self.carry_out_actions() || self.deliver_bytes() {
            return;
        }
        let client = self.client.as_ref().and_then(Connector::poll_timeout);
        let next = self.running().filter_map(|i| self.nodes[i].machine.poll_timeout()).chain(client).min();
        let next = next.expect("some machine waits for a deadline");
        self.now = self.now.max(next);
        let now = self.now;
        if let Some(c) = self.client.as_mut() {
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
        }
        for i in self.running().collect::<Vec<_>>() {
            if self.nodes[i].machine.poll_timeout().is_some_and(|t| t <= now) {
                self.nodes[i].machine.handle_timeout(now);
            }
        }
    }

    // ----- the test as a rival client or as the application -----

    /// Opens a connection of the test's own to node `node`.
    pub fn open_raw(&mut self, node: usize) -> usize {
        assert_ne!(self.nodes[node].health, Health::Down, "connection refused");
        self.open(node, Owner::Raw)
    }

    /// Writes `message` on connection `conn`, from the dialler's side.
    pub fn write(&mut self, conn: usize, message: &Message) {
        assert!(self.conns[conn].open, "writing on a closed connection");
        encode(message, &mut self.conns[conn].to_instance).expect("encodable");
    }

    /// Closes connection `conn` from the dialler's side.
    pub fn close(&mut self, conn: usize) {
        let c = &mut self.conns[conn];
        if !c.open {
            return;
        }
        c.open = false;
        let (node, id) = (c.node, c.id);
        self.instance_event(node, instance::Event::ConnectionClosed { conn: id });
    }

    /// A rival client's session on node `node`: its connection.
    pub fn raw_session(&mut self, node: usize, max_steps: usize) -> usize {
        let conn = self.open_raw(node);
        self.write(conn, &Message::SessionRequest(SessionRequest { request_id: 1, credential: None }));
        self.drive_until(max_steps, |p| !p.conns[conn].inbox.is_empty());
        match &self.conns[conn].inbox[0] {
            Message::SessionReply(reply) if matches!(reply.outcome, SessionOutcome::Accepted { .. }) => conn,
            other => panic!("rival session not accepted: {other:?}"),
        }
    }

    /// The connection carrying the client's session.
    pub fn session_conn(&self) -> usize {
        let sessions: Vec<usize> = (0..self.conns.len()).filter(|&i| self.conns[i].session).collect();
        assert_eq!(sessions.len(), 1, "one session connection");
        sessions[0]
    }

    /// Every attempt's connection is closed except the session's, each by
    /// exactly one `Close` (checked as they come): the one rule of transports.
    pub fn assert_attempt_transports_closed(&self) {
        for conn in &self.conns {
            if let Owner::Attempt(attempt) = conn.owner {
                assert_eq!(conn.open, conn.session, "attempt {attempt}: open {}", conn.open);
                assert_eq!(self.closed.contains(&attempt), !conn.session, "attempt {attempt}");
            }
        }
    }

    /// The client actions carried out, without their times.
    pub fn client_actions(&self) -> Vec<&client::Action> {
        self.client_log.iter().map(|(_, a)| a).collect()
    }

    // ----- internals -----

    fn open(&mut self, node: usize, owner: Owner) -> usize {
        let id = ConnectionId(self.next_conn);
        self.next_conn += 1;
        self.conns.push(Conn {
            node,
            id,
            owner,
            open: true,
            session: false,
            inbox: Vec::new(),
            to_instance: Vec::new(),
            to_dialler: Vec::new(),
            at_instance: Decoder::new(),
            at_dialler: Decoder::new(),
        });
        self.conns.len() - 1
    }

    fn node_at(&self, endpoint: &Endpoint) -> Option<usize> {
        self.nodes.iter().position(|n| &n.machine.config().endpoint == endpoint)
    }

    fn client_event(&mut self, event: client::Event) {
        let now = self.now;
        self.client.as_mut().expect("client").handle_event(event, now).expect("a fitting client event");
    }

    fn instance_event(&mut self, node: usize, event: instance::Event) {
        if self.nodes[node].health != Health::Up {
            return;
        }
        let now = self.now;
        self.nodes[node].machine.handle_event(event, now).expect("a fitting instance event");
    }
}
