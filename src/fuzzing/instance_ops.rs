//! Fuzz body `instance_ops`: arbitrary events and time advances against one
//! [`Instance`](crate::instance::Instance), with a simulated cluster around it (registry, peers, clients)
//! and a reference model checked after every step.
//!
//! The same `World` runs the property tests, which build `Op` sequences
//! with proptest instead of bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};

use crate::config::InstanceConfig;
use crate::endpoint::Endpoint;
use crate::error::UsageError;
use crate::instance::{Action, ConnectionId, Event, Instance};
use crate::registry::MemberRecord;
use crate::wire::{
    HandshakeOutcome, HandshakeRequest, Message, QueryId, RankedList, RefuseReason, SessionId,
    SessionOutcome, SessionRequest, WorkloadQuery, WorkloadReport,
};
use crate::workload::{rank, Candidate, InstanceId, Role, Workload};

/// The cluster every simulated member belongs to.
pub const CLUSTER: &str = "fuzz";

/// The shape of one simulated cluster.
#[derive(Debug, Clone, Arbitrary)]
pub struct Setup {
    /// The instance's role.
    pub role: Role,
    /// Herd control on or off.
    pub herd_control: bool,
    /// Its `max_sessions` (0 is raised to 1).
    pub max_sessions: u8,
    /// How many peers the registry lists (at most 6).
    pub peers: u8,
    /// Where the instance's id falls among the peers' ids.
    pub self_position: u8,
    /// `limits.max_pending_handshakes` (0 is raised to 1).
    pub max_pending: u8,
    /// `limits.max_members` (0 is raised to 1).
    pub max_members: u8,
    /// `limits.max_tracked_sessions` (0 is raised to 1).
    pub max_tracked: u8,
    /// `max_list_len` (0 is raised to 1).
    pub max_list_len: u8,
    /// The machine's rng seed.
    pub seed: u64,
}

/// Which cluster a handshake names.
#[derive(Debug, Clone, Copy, Arbitrary, PartialEq, Eq)]
pub enum ClusterChoice {
    /// None: any cluster will do.
    Unnamed,
    /// The instance's cluster.
    Ours,
    /// Some other cluster.
    Other,
}

/// One step of the simulated world.
#[derive(Debug, Clone, Arbitrary)]
pub enum Op {
    /// A new client connection sends a handshake.
    Handshake {
        /// The rotation salt.
        salt: u64,
        /// `false`: direct mode.
        load_balance: bool,
        /// The cluster named.
        cluster: ClusterChoice,
    },
    /// A client asks for a session.
    Session,
    /// An open session ends (`pick` chooses which); `twice` repeats the end.
    EndSession {
        /// Which open session.
        pick: u8,
        /// Send the end a second time.
        twice: bool,
    },
    /// A session end for an id the instance never handed out (probably).
    EndUnknown(SessionId),
    /// A waiting client hangs up.
    CloseConnection(u8),
    /// A peer asks for the instance's workload.
    PeerQuery(QueryId),
    /// The registry answers the outstanding query (`hide` masks rows out).
    RegistryAnswer {
        /// Bit i hides peer i's row.
        hide: u8,
        /// Duplicate the rows (the instance must dedupe).
        duplicate: bool,
    },
    /// The registry fails the outstanding query.
    RegistryFail,
    /// An answer for a registry query that is not outstanding.
    RegistryStray(QueryId),
    /// The peer of outstanding query `pick` reports its figures.
    Report {
        /// Which outstanding peer query.
        pick: u8,
        /// Report `connected > max`.
        contradictory: bool,
    },
    /// The peer of outstanding query `pick` cannot be reached.
    Unreachable(u8),
    /// A report nobody asked for.
    StrayReport {
        /// Its query id.
        query_id: QueryId,
        /// Who claims to report.
        id: u8,
    },
    /// Admin: drain or undrain.
    SetAccepting(bool),
    /// Admin: change `max_sessions` (0 must be refused).
    SetMaxSessions(u8),
    /// A peer's live figures change.
    SetPeer {
        /// Which peer.
        peer: u8,
        /// Its role.
        role: Role,
        /// Accepting or draining.
        accepting: bool,
        /// Sessions connected.
        connected: u8,
        /// Its max (may be 0).
        max: u8,
        /// Its heartbeat is too old to count as active.
        inactive: bool,
    },
    /// Time passes (timers fire at their deadlines on the way).
    Advance(u16),
}

#[derive(Debug, Clone)]
struct SimPeer {
    id: InstanceId,
    role: Role,
    accepting: bool,
    workload: Workload,
    inactive: bool,
}

#[derive(Debug, Clone)]
struct Waiting {
    arrived: Instant,
    request_id: u64,
    salt: u64,
    direct: bool,
    wrong_cluster: bool,
}

/// What the checker knows about the current query round.
#[derive(Debug, Default)]
struct RoundView {
    registry_queries: usize,
    queried: BTreeSet<InstanceId>,
    /// Peer query id -> peer, for queries not yet answered.
    outstanding: BTreeMap<QueryId, InstanceId>,
    /// Valid answers delivered while the round was in flight.
    answers: BTreeMap<InstanceId, Candidate>,
}

/// A simulated cluster around one [`Instance`], checking invariants after
/// every step and panicking on the first violation.
pub struct World {
    inst: Instance,
    base: Instant,
    now: Instant,
    peers: Vec<SimPeer>,
    /// The outstanding registry query and when the instance gives up on it.
    registry_query: Option<(QueryId, Instant)>,
    /// The last snapshot delivered: id -> (role, heartbeat age, when).
    delivered: BTreeMap<InstanceId, (Role, Duration, Instant)>,
    round: RoundView,
    waiting: BTreeMap<ConnectionId, Waiting>,
    open_sessions: Vec<SessionId>,
    ended_sessions: Vec<SessionId>,
    next_conn: u64,
    next_request: u64,
    max_pending: usize,
    bound: Duration,
    log: Option<Vec<(Duration, Action)>>,
    /// Handshake replies seen, for tests.
    pub replies: usize,
}

impl World {
    /// A world from a setup, starting at `base`; `record` keeps every action
    /// for determinism checks.
    pub fn new(setup: &Setup, base: Instant, record: bool) -> World {
        let peer_count = usize::from(setup.peers % 7);
        let self_index = u32::from(setup.self_position) % (peer_count as u32 + 1);
        let self_id = InstanceId(self_index * 10 + 5);
        let peers = (0..peer_count as u32)
            .map(|i| SimPeer {
                id: InstanceId(if i < self_index { i * 10 } else { (i + 1) * 10 }),
                role: Role::Serving,
                accepting: true,
                workload: Workload::new(i, 10),
                inactive: false,
            })
            .collect();
        let endpoint = endpoint_of(self_id);
        let mut config = InstanceConfig::new(self_id, endpoint, u32::from(setup.max_sessions.max(1)));
        config.role = setup.role;
        config.cluster = (setup.role != Role::Standalone).then(|| CLUSTER.to_owned());
        config.herd_control = setup.herd_control;
        config.max_list_len = usize::from(setup.max_list_len.max(1));
        config.limits.max_pending_handshakes = usize::from(setup.max_pending.max(1));
        config.limits.max_members = usize::from(setup.max_members.max(1));
        config.limits.max_tracked_sessions = usize::from(setup.max_tracked.max(1));
        let bound = config.registry_timeout + config.peer_timeout;
        let max_pending = config.limits.max_pending_handshakes;
        let inst = Instance::new(config, base, setup.seed).expect("the setup builds a valid config");
        let mut world = World {
            inst,
            base,
            now: base,
            peers,
            registry_query: None,
            delivered: BTreeMap::new(),
            round: RoundView::default(),
            waiting: BTreeMap::new(),
            open_sessions: Vec::new(),
            ended_sessions: Vec::new(),
            next_conn: 0,
            next_request: 0,
            max_pending,
            bound,
            log: record.then(Vec::new),
            replies: 0,
        };
        world.drain(None);
        world
    }

    /// The machine under test.
    pub fn instance(&self) -> &Instance {
        &self.inst
    }

    /// Every action so far with its time since the start (when recording).
    pub fn log(&self) -> &[(Duration, Action)] {
        self.log.as_deref().unwrap_or(&[])
    }

    /// Handshakes still waiting for a reply.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    fn peer_index(&self, id: InstanceId) -> Option<usize> {
        self.peers.iter().position(|p| p.id == id)
    }

    fn event(&mut self, event: Event, admission: Option<&mut Option<SessionOutcome>>) {
        let connected_before = self.inst.connected();
        match self.inst.handle_event(event.clone(), self.now) {
            Ok(()) => {}
            Err(UsageError::InvalidArgument { .. }) => {
                assert_eq!(event, Event::SetMaxSessions(0), "only a zero max is refused");
            }
            Err(other) => panic!("unexpected usage error {other:?} for {event:?}"),
        }
        self.drain(admission);
        if !matches!(event, Event::SessionRequest { .. }) {
            assert!(self.inst.connected() <= connected_before, "connected grew without an admission");
        }
    }

    /// Applies one op and checks every invariant.
    pub fn step(&mut self, op: &Op) {
        match *op {
            Op::Handshake { salt, load_balance, cluster } => {
                let conn = ConnectionId(self.next_conn);
                self.next_conn += 1;
                self.next_request += 1;
                let request_id = self.next_request;
                let cluster = match cluster {
                    ClusterChoice::Unnamed => None,
                    ClusterChoice::Ours => Some(CLUSTER.to_owned()),
                    ClusterChoice::Other => Some("elsewhere".to_owned()),
                };
                let direct = !load_balance || self.inst.config().role == Role::Standalone;
                let wrong_cluster =
                    cluster.as_ref().is_some_and(|c| self.inst.config().cluster.as_ref() != Some(c));
                let waiting = Waiting { arrived: self.now, request_id, salt, direct, wrong_cluster };
                self.waiting.insert(conn, waiting);
                let request = HandshakeRequest { request_id, salt, load_balance, cluster };
                self.event(Event::HandshakeRequest { conn, request }, None);
            }
            Op::Session => {
                let conn = ConnectionId(self.next_conn);
                self.next_conn += 1;
                let before = self.inst.connected();
                let (accepting, max, role) =
                    (self.inst.accepting(), self.inst.max_sessions(), self.inst.config().role);
                let mut outcome = None;
                let request = SessionRequest { request_id: 1 };
                self.event(Event::SessionRequest { conn, request }, Some(&mut outcome));
                let outcome = outcome.expect("a session request gets a reply at once");
                let may_admit = role != Role::LoadBalancerOnly && accepting && before < max;
                match outcome {
                    SessionOutcome::Accepted { session_id } => {
                        assert!(may_admit, "admitted against the rules");
                        assert_eq!(self.inst.connected(), before + 1);
                        assert!(self.inst.connected() <= self.inst.max_sessions());
                        assert!(!self.open_sessions.contains(&session_id), "session id reused");
                        assert!(!self.ended_sessions.contains(&session_id), "session id reused");
                        self.open_sessions.push(session_id);
                    }
                    SessionOutcome::Rejected(_) => assert_eq!(self.inst.connected(), before),
                }
            }
            Op::EndSession { pick, twice } => {
                if !self.open_sessions.is_empty() {
                    let i = usize::from(pick) % self.open_sessions.len();
                    let id = self.open_sessions.swap_remove(i);
                    self.ended_sessions.push(id);
                    self.event(Event::SessionEnded { session_id: id }, None);
                    if twice {
                        self.event(Event::SessionEnded { session_id: id }, None);
                    }
                } else if let Some(&id) = self.ended_sessions.last() {
                    self.event(Event::SessionEnded { session_id: id }, None);
                }
            }
            Op::EndUnknown(id) => {
                if !self.open_sessions.contains(&id) {
                    self.event(Event::SessionEnded { session_id: id }, None);
                }
            }
            Op::CloseConnection(pick) => {
                if !self.waiting.is_empty() {
                    let conn = *self
                        .waiting
                        .keys()
                        .nth(usize::from(pick) % self.waiting.len())
                        .unwrap_or(&ConnectionId(0));
                    self.waiting.remove(&conn);
                    self.event(Event::ConnectionClosed { conn }, None);
                }
            }
            Op::PeerQuery(query_id) => {
                let conn = ConnectionId(self.next_conn);
                self.next_conn += 1;
                self.inst
                    .handle_event(Event::WorkloadQuery { conn, query: WorkloadQuery { query_id } }, self.now)
                    .expect("a workload query is always usable");
                let expected = Message::WorkloadReport(WorkloadReport {
                    query_id,
                    id: self.inst.id(),
                    role: self.inst.config().role,
                    accepting: self.inst.accepting(),
                    workload: self.inst.workload(),
                });
                let reply = self.inst.poll_action();
                assert_eq!(reply, Some(Action::Reply { conn, message: expected }), "peer answered at once");
                if let (Some(log), Some(reply)) = (self.log.as_mut(), reply) {
                    log.push((self.now - self.base, reply));
                }
                self.drain(None);
            }
            Op::RegistryAnswer { hide, duplicate } => {
                if let Some((query_id, deadline)) = self.registry_query.take() {
                    let mut members: Vec<MemberRecord> = self
                        .peers
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| hide & (1 << i) == 0)
                        .map(|(_, p)| MemberRecord {
                            id: p.id,
                            endpoint: endpoint_of(p.id),
                            role: p.role,
                            accepting: p.accepting,
                            workload: p.workload,
                            heartbeat_age: if p.inactive {
                                Duration::from_secs(60)
                            } else {
                                Duration::from_secs(1)
                            },
                        })
                        .collect();
                    if duplicate {
                        let copy = members.clone();
                        members.extend(copy);
                    }
                    // The registry's row for the instance itself must not
                    // override its live figures.
                    members.push(MemberRecord {
                        id: self.inst.id(),
                        endpoint: endpoint_of(self.inst.id()),
                        role: Role::Serving,
                        accepting: true,
                        workload: Workload::new(0, 1000),
                        heartbeat_age: Duration::ZERO,
                    });
                    if self.now < deadline {
                        self.delivered =
                            members.iter().map(|m| (m.id, (m.role, m.heartbeat_age, self.now))).collect();
                    }
                    self.event(Event::RegistrySnapshot { query_id, members }, None);
                }
            }
            Op::RegistryFail => {
                if let Some((query_id, _)) = self.registry_query.take() {
                    self.event(Event::RegistryFailed { query_id, reason: "down".to_owned() }, None);
                }
            }
            Op::RegistryStray(query_id) => {
                if self.registry_query.map(|(q, _)| q) != Some(query_id) {
                    self.event(Event::RegistrySnapshot { query_id, members: Vec::new() }, None);
                }
            }
            Op::Report { pick, contradictory } => {
                if let Some((&query_id, &id)) =
                    self.round.outstanding.iter().nth(usize::from(pick) % self.round.outstanding.len().max(1))
                {
                    self.round.outstanding.remove(&query_id);
                    let peer = &self.peers[self.peer_index(id).expect("queried peers exist")];
                    let mut workload = peer.workload;
                    if contradictory {
                        workload =
                            Workload::new(workload.max_sessions.saturating_add(1), workload.max_sessions);
                    } else {
                        self.round.answers.insert(
                            id,
                            Candidate { role: peer.role, accepting: peer.accepting, fresh: true, workload },
                        );
                    }
                    let report =
                        WorkloadReport { query_id, id, role: peer.role, accepting: peer.accepting, workload };
                    self.event(Event::WorkloadReport { report }, None);
                }
            }
            Op::Unreachable(pick) => {
                if let Some((&query_id, &peer)) =
                    self.round.outstanding.iter().nth(usize::from(pick) % self.round.outstanding.len().max(1))
                {
                    self.round.outstanding.remove(&query_id);
                    self.event(Event::PeerUnreachable { query_id, peer, reason: "reset".to_owned() }, None);
                }
            }
            Op::StrayReport { query_id, id } => {
                if !self.round.outstanding.contains_key(&query_id) {
                    let report = WorkloadReport {
                        query_id,
                        id: InstanceId(u32::from(id)),
                        role: Role::Serving,
                        accepting: true,
                        workload: Workload::new(0, 1),
                    };
                    self.event(Event::WorkloadReport { report }, None);
                }
            }
            Op::SetAccepting(accepting) => self.event(Event::SetAccepting(accepting), None),
            Op::SetMaxSessions(max) => {
                let connected = self.inst.connected();
                self.event(Event::SetMaxSessions(u32::from(max)), None);
                assert_eq!(self.inst.connected(), connected, "changing the max keeps every session");
            }
            Op::SetPeer { peer, role, accepting, connected, max, inactive } => {
                if !self.peers.is_empty() {
                    let i = usize::from(peer) % self.peers.len();
                    let max = u32::from(max);
                    let p = &mut self.peers[i];
                    p.role = role;
                    p.accepting = accepting;
                    p.workload = Workload::new(u32::from(connected).min(max), max);
                    p.inactive = inactive;
                }
            }
            Op::Advance(ms) => self.advance(Duration::from_millis(u64::from(ms))),
        }
        self.check_quiet();
    }

    /// Moves time forward by `by`, stopping at every deadline on the way.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        while let Some(deadline) = self.inst.poll_timeout() {
            if deadline > target {
                break;
            }
            assert!(deadline >= self.now, "a deadline in the past");
            self.now = deadline;
            self.inst.handle_timeout(self.now);
            self.drain(None);
        }
        self.now = target;
        self.inst.handle_timeout(self.now);
        self.drain(None);
    }

    /// Lets every timer run out until the instance is idle (bounded).
    pub fn settle(&mut self) {
        for _ in 0..16 {
            if self.waiting.values().all(|w| w.direct) && !self.inst.round_in_flight() {
                break;
            }
            self.advance(self.bound);
        }
        self.check_quiet();
    }

    fn check_quiet(&self) {
        if let Some(deadline) = self.inst.poll_timeout() {
            assert!(deadline > self.now, "a due timer was left unfired");
        }
        assert_eq!(self.inst.connected() as usize, self.open_sessions.len(), "sessions counted exactly");
        for (conn, w) in &self.waiting {
            assert!(!w.direct, "direct handshake {conn:?} not answered at once");
            assert!(self.now <= w.arrived + self.bound, "handshake {conn:?} waited past the bound");
        }
        assert!(self.inst.pending_handshakes() <= self.inst.config().limits.max_pending_handshakes);
        assert!(self.inst.cached_members() <= self.inst.config().limits.max_members);
        assert!(self.inst.reservations() <= self.inst.config().limits.max_reservations);
    }

    fn drain(&mut self, mut admission: Option<&mut Option<SessionOutcome>>) {
        let mut previous: Option<RankedList> = None;
        while let Some(action) = self.inst.poll_action() {
            if let Some(log) = self.log.as_mut() {
                log.push((self.now - self.base, action.clone()));
            }
            match action {
                Action::SessionOpened { .. } => {}
                Action::PublishHeartbeat(hb) => {
                    assert_eq!(hb.id, self.inst.id());
                    assert!(hb.workload.connected <= hb.workload.max_sessions);
                }
                Action::QueryRegistry { query_id, cluster } => {
                    assert_eq!(cluster, CLUSTER);
                    self.round.registry_queries += 1;
                    assert_eq!(self.round.registry_queries, 1, "more than one registry query in a round");
                    self.registry_query = Some((query_id, self.now + self.inst.config().registry_timeout));
                }
                Action::QueryPeer { query_id, peer, endpoint, query } => {
                    assert_eq!(query.query_id, query_id);
                    assert_eq!(endpoint, endpoint_of(peer));
                    assert_ne!(peer, self.inst.id(), "queried itself");
                    let (role, age, at) =
                        *self.delivered.get(&peer).expect("only registry members are queried");
                    assert_eq!(role, Role::Serving, "queried a member that cannot serve");
                    let ttl = self.inst.config().member_ttl;
                    assert!(age + (self.now - at) < ttl, "queried an inactive member");
                    assert!(self.round.queried.insert(peer), "peer {peer} queried twice in a round");
                    self.round.outstanding.insert(query_id, peer);
                }
                Action::Reply { conn, message: Message::HandshakeReply(reply) } => {
                    let waiting = self.waiting.remove(&conn).expect("a reply for a waiting handshake, once");
                    assert_eq!(reply.request_id, waiting.request_id);
                    self.replies += 1;
                    let refused_cluster =
                        reply.outcome == HandshakeOutcome::Refused(RefuseReason::WrongCluster);
                    assert_eq!(
                        refused_cluster, waiting.wrong_cluster,
                        "WrongCluster iff another cluster was named"
                    );
                    match reply.outcome {
                        HandshakeOutcome::Refused(RefuseReason::WrongCluster) => {}
                        HandshakeOutcome::Refused(RefuseReason::Busy) => {
                            let lb_waiting = self.waiting.values().filter(|w| !w.direct).count();
                            assert!(lb_waiting >= self.max_pending, "Busy below the limit");
                        }
                        HandshakeOutcome::Ranked(list) if waiting.direct => self.check_direct(&list),
                        HandshakeOutcome::Ranked(list) => {
                            self.check_ranked(&list, waiting.salt, previous.as_ref());
                            previous = Some(list);
                        }
                    }
                }
                Action::Reply { message: Message::SessionReply(reply), .. } => {
                    let slot = admission.as_deref_mut().expect("a session reply only for a session request");
                    assert!(slot.is_none(), "two session replies");
                    *slot = Some(reply.outcome);
                }
                Action::Reply { message, .. } => panic!("unexpected reply {message:?}"),
            }
        }
        if !self.inst.round_in_flight() {
            self.round = RoundView::default();
            self.registry_query = None;
        }
    }

    fn self_candidate(&self) -> Candidate {
        Candidate {
            role: self.inst.config().role,
            accepting: self.inst.accepting(),
            fresh: true,
            workload: Workload::new(self.inst.connected(), self.inst.max_sessions()),
        }
    }

    fn check_direct(&self, list: &RankedList) {
        let own = self.self_candidate();
        let serves = own.role != Role::LoadBalancerOnly && own.accepting && !own.workload.is_full();
        let ids: Vec<InstanceId> = list.entries.iter().map(|e| e.id).collect();
        assert_eq!(ids, if serves { vec![self.inst.id()] } else { vec![] }, "direct reply");
    }

    /// The reference figures of this round: answered peers and self, by id.
    fn reference(&self) -> Vec<(InstanceId, Candidate)> {
        let mut all: Vec<(InstanceId, Candidate)> =
            self.round.answers.iter().map(|(&id, &c)| (id, c)).collect();
        all.push((self.inst.id(), self.self_candidate()));
        all.sort_by_key(|(id, _)| *id);
        all
    }

    fn check_ranked(&self, list: &RankedList, salt: u64, previous: Option<&RankedList>) {
        let reference = self.reference();
        let max_len = self.inst.config().max_list_len;
        assert!(list.entries.len() <= max_len, "list longer than max_list_len");
        let mut seen = BTreeSet::new();
        for pair in list.entries.windows(2) {
            assert_ne!(
                pair[0].workload.cmp_rank(pair[1].workload),
                std::cmp::Ordering::Greater,
                "list not sorted by (predicted) workload"
            );
        }
        for entry in &list.entries {
            assert!(seen.insert(entry.id), "{} listed twice", entry.id);
            assert_eq!(entry.endpoint, endpoint_of(entry.id));
            let (_, base) = reference
                .iter()
                .find(|(id, _)| *id == entry.id)
                .unwrap_or_else(|| panic!("{} listed but neither self nor answered this round", entry.id));
            assert!(base.role == Role::Serving && base.accepting, "{} cannot serve", entry.id);
            assert!(!entry.workload.is_full(), "{} listed while (predicted) full", entry.id);
            assert_eq!(entry.workload.max_sessions, base.workload.max_sessions);
            assert!(entry.workload.connected >= base.workload.connected, "prediction below the report");
        }
        if !self.inst.config().herd_control {
            let candidates: Vec<Candidate> = reference.iter().map(|(_, c)| *c).collect();
            let expected: Vec<(InstanceId, Workload)> = rank(&candidates, salt)
                .into_iter()
                .take(max_len)
                .map(|i| (reference[i].0, candidates[i].workload))
                .collect();
            let got: Vec<(InstanceId, Workload)> = list.entries.iter().map(|e| (e.id, e.workload)).collect();
            assert_eq!(got, expected, "herd control off: the reply is rank() of the reported figures");
        } else if let Some(previous) = previous {
            // Within a round, each reply adds exactly one prediction, on the
            // previous reply's first entry.
            if self.inst.config().limits.max_reservations >= 1 << 16 {
                let first = previous.entries.first().map(|e| e.id);
                for entry in &list.entries {
                    if let Some(before) = previous.entries.iter().find(|e| e.id == entry.id) {
                        let bump = u32::from(Some(entry.id) == first);
                        assert_eq!(
                            entry.workload.connected,
                            before.workload.connected + bump,
                            "prediction step"
                        );
                    }
                }
                for before in &previous.entries {
                    if !list.entries.iter().any(|e| e.id == before.id) && Some(before.id) != first {
                        // Only a cut by max_list_len can hide it.
                        assert_eq!(list.entries.len(), max_len, "{} vanished between replies", before.id);
                    }
                }
            }
        }
    }
}

/// The endpoint the simulated cluster gives member `id`.
pub fn endpoint_of(id: InstanceId) -> Endpoint {
    Endpoint::new(&format!("aos{}", id.0), 2712).unwrap_or_else(|_| unreachable!("a valid host name"))
}

/// The fuzz body: a setup, then ops until the bytes run out (at most 2 048),
/// then the world settles: every waiting handshake must get its reply.
/// Every time is an offset from `base`, which the caller (the fuzz target or
/// the corpus replay) reads from its clock: the library never does.
pub fn instance_ops(data: &[u8], base: Instant) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else { return };
    let mut world = World::new(&setup, base, false);
    for _ in 0..2048 {
        match Op::arbitrary(&mut u) {
            Ok(op) => world.step(&op),
            Err(_) => break,
        }
        if u.is_empty() {
            break;
        }
    }
    world.settle();
    assert_eq!(world.waiting(), 0, "every handshake is answered once the world settles");
}
