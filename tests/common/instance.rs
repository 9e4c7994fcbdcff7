//! A transcript harness for the instance machine: feed events at a simulated
//! time, then expect the actions one by one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use aos_cluster::config::InstanceConfig;
use aos_cluster::endpoint::Endpoint;
use aos_cluster::instance::{Action, ConnectionId, Event, Instance};
use aos_cluster::registry::MemberRecord;
use aos_cluster::wire::{
    HandshakeOutcome, HandshakeRequest, Message, QueryId, RankedList, RejectReason, SessionId,
    SessionOutcome, SessionRequest, WorkloadReport,
};
use aos_cluster::workload::{InstanceId, Role, Workload};

/// The cluster name every test instance uses.
pub const CLUSTER: &str = "prod";

/// The one base instant of a test run.
pub fn base() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

/// `aos<id>:2712`.
pub fn endpoint(id: u32) -> Endpoint {
    Endpoint::new(&format!("aos{id}"), 2712).expect("valid endpoint")
}

/// A clustered config for instance `id`.
pub fn config(id: u32, role: Role, max_sessions: u32) -> InstanceConfig {
    let mut c = InstanceConfig::new(InstanceId(id), endpoint(id), max_sessions);
    c.role = role;
    c.cluster = if role == Role::Standalone { None } else { Some(CLUSTER.to_owned()) };
    c
}

/// A registry row, heartbeat one second old.
pub fn member(id: u32, role: Role, connected: u32, max: u32) -> MemberRecord {
    MemberRecord {
        id: InstanceId(id),
        endpoint: endpoint(id),
        role,
        accepting: true,
        workload: Workload::new(connected, max),
        heartbeat_age: Duration::from_secs(1),
    }
}

/// A serving peer's report.
pub fn report(query_id: QueryId, id: u32, connected: u32, max: u32) -> WorkloadReport {
    WorkloadReport {
        query_id,
        id: InstanceId(id),
        role: Role::Serving,
        accepting: true,
        workload: Workload::new(connected, max),
    }
}

/// A load-balanced handshake naming the test cluster.
pub fn handshake(request_id: u64, salt: u64) -> HandshakeRequest {
    HandshakeRequest { request_id, salt, load_balance: true, cluster: Some(CLUSTER.to_owned()) }
}

/// An instance under test with its clock and its drained actions.
pub struct Harness {
    /// The machine.
    pub inst: Instance,
    /// The simulated time.
    pub now: Instant,
    /// Actions drained but not yet expected.
    pub queue: VecDeque<Action>,
}

impl Harness {
    /// A new instance at a fresh base time; its first heartbeat is left queued.
    pub fn new(config: InstanceConfig) -> Self {
        let now = base();
        let inst = Instance::new(config, now, 7).expect("valid config");
        let mut h = Harness { inst, now, queue: VecDeque::new() };
        h.drain();
        h
    }

    fn drain(&mut self) {
        while let Some(a) = self.inst.poll_action() {
            self.queue.push_back(a);
        }
    }

    /// Feeds one event now.
    pub fn event(&mut self, event: Event) {
        self.inst.handle_event(event, self.now).expect("usable event");
        self.drain();
    }

    /// The embedder's "Reject new clients" off (`true`) or on, now; drains.
    pub fn set_accepting(&mut self, accepting: bool) {
        self.inst.set_accepting(accepting, self.now);
        self.drain();
    }

    /// The embedder changes "Max concurrent sessions" now; drains.
    pub fn set_max_sessions(&mut self, max: u32) {
        self.inst.set_max_sessions(max, self.now).expect("a usable max");
        self.drain();
    }

    /// Moves time forward by `d` and fires due timers.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.inst.handle_timeout(self.now);
        self.drain();
    }

    /// The next action, which must exist.
    pub fn next(&mut self) -> Action {
        self.queue.pop_front().expect("an action")
    }

    /// Nothing queued.
    pub fn expect_idle(&mut self) {
        assert_eq!(self.queue.pop_front(), None, "expected no action");
    }

    /// The next action must be a heartbeat; returns its figures.
    pub fn expect_heartbeat(&mut self) -> (bool, Workload) {
        match self.next() {
            Action::PublishHeartbeat(hb) => (hb.accepting, hb.workload),
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }

    /// The next action must be a registry query; returns its id.
    pub fn expect_registry_query(&mut self) -> QueryId {
        match self.next() {
            Action::QueryRegistry { query_id, cluster } => {
                assert_eq!(cluster, CLUSTER);
                query_id
            }
            other => panic!("expected a registry query, got {other:?}"),
        }
    }

    /// The next action must query `peer`; returns the query id.
    pub fn expect_peer_query(&mut self, peer: u32) -> QueryId {
        match self.next() {
            Action::QueryPeer { query_id, peer: p, endpoint: e, query } => {
                assert_eq!(p, InstanceId(peer));
                assert_eq!(e, endpoint(peer));
                assert_eq!(query.query_id, query_id);
                query_id
            }
            other => panic!("expected a query to #{peer}, got {other:?}"),
        }
    }

    /// The next action must be a ranked handshake reply on `conn` for
    /// `request_id`; returns the list.
    pub fn expect_ranked(&mut self, conn: u64, request_id: u64) -> RankedList {
        match self.next() {
            Action::Reply { conn: c, message: Message::HandshakeReply(reply) } => {
                assert_eq!(c, ConnectionId(conn));
                assert_eq!(reply.request_id, request_id);
                match reply.outcome {
                    HandshakeOutcome::Ranked(list) => list,
                    other => panic!("expected a ranked list, got {other:?}"),
                }
            }
            other => panic!("expected a handshake reply, got {other:?}"),
        }
    }

    /// Sends a session request on `conn` and returns the verdict.
    pub fn session(&mut self, conn: u64, request_id: u64) -> SessionOutcome {
        self.event(Event::SessionRequest {
            conn: ConnectionId(conn),
            request: SessionRequest { request_id, credential: None },
        });
        let outcome = match self.next() {
            Action::Reply { conn: c, message: Message::SessionReply(reply) } => {
                assert_eq!(c, ConnectionId(conn));
                assert_eq!(reply.request_id, request_id);
                reply.outcome
            }
            other => panic!("expected a session reply, got {other:?}"),
        };
        // An acceptance hands the connection to the application, at once.
        if let SessionOutcome::Accepted { session_id } = outcome {
            assert_eq!(self.next(), Action::SessionOpened { conn: ConnectionId(conn), session_id });
        }
        outcome
    }

    /// Like [`session`](Self::session), but the verdict must be a rejection.
    pub fn rejected(&mut self, conn: u64, request_id: u64) -> RejectReason {
        match self.session(conn, request_id) {
            SessionOutcome::Rejected(reason) => reason,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    /// Like [`session`](Self::session), but the session must be admitted.
    pub fn accepted(&mut self, conn: u64, request_id: u64) -> SessionId {
        match self.session(conn, request_id) {
            SessionOutcome::Accepted { session_id } => session_id,
            other => panic!("expected an acceptance, got {other:?}"),
        }
    }
}

/// The ids of a ranked list, in order.
pub fn ids(list: &RankedList) -> Vec<u32> {
    list.entries.iter().map(|e| e.id.0).collect()
}
