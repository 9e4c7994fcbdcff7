//! Fuzz body `instance_ops`: arbitrary events and time advances against one
//! [`Instance`](crate::instance::Instance), with a simulated cluster around it
//! (registry, peers, clients on many connections) and a reference model that
//! predicts every output exactly, checked after every step.
//!
//! The model predicts: each handshake's outcome (`WrongCluster`, direct
//! reply, `Busy`, or its ranked list entry for entry, predicted-full tail
//! included, see [`model`]); each session request's verdict
//! (`AlreadyInSession`, `NotServing`, `Draining`, `Full`, `Busy`, in that
//! order of precedence, else accepted and followed at once by
//! `SessionOpened` on the same connection); which peers a round queries and
//! whether it asks the registry; every workload report and heartbeat; and
//! every counter of [`InstanceStats`](crate::instance::InstanceStats).
//! `connected` must equal the number of connections holding a session.
//!
//! The same `World` runs the property tests, which build `Op` sequences
//! with proptest instead of bytes.

mod model;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};

use self::model::{expected_reply, predicted, HerdModel, ReplyInput};
use crate::config::InstanceConfig;
use crate::endpoint::Endpoint;
use crate::error::UsageError;
use crate::instance::{Action, ConnectionId, Event, Instance, InstanceStats};
use crate::registry::MemberRecord;
use crate::wire::{
    HandshakeOutcome, HandshakeRequest, Message, QueryId, RankedEntry, RankedList, RefuseReason,
    RejectReason, SessionId, SessionOutcome, SessionRequest, WorkloadQuery, WorkloadReport,
};
use crate::workload::{Candidate, InstanceId, Role, Workload};

/// The cluster every simulated member belongs to.
pub const CLUSTER: &str = "fuzz";

/// Heartbeat age of an active peer's registry row.
const ACTIVE_AGE: Duration = Duration::from_secs(1);
/// Heartbeat age of an inactive peer's registry row (above any drawn `member_ttl`).
const INACTIVE_AGE: Duration = Duration::from_secs(60);

/// The instance's timers, in milliseconds, each mapped into a sane range by
/// [`Timers::apply`].
#[derive(Debug, Clone, Copy, Default, Arbitrary)]
pub struct Timers {
    /// `peer_timeout`: 1 ms to 2 s.
    pub peer_timeout_ms: u16,
    /// `registry_timeout`: 1 ms to 3 s.
    pub registry_timeout_ms: u16,
    /// `snapshot_ttl`: 0 (never reused) to 5 s.
    pub snapshot_ttl_ms: u16,
    /// `reservation_ttl`: 1 ms to about 65 s.
    pub reservation_ttl_ms: u16,
    /// `member_ttl`: 0.5 s to 50.5 s (active rows are 1 s old, inactive 60 s).
    pub member_ttl_ms: u16,
    /// `heartbeat_interval`: 250 ms up to just below `member_ttl` (shorter
    /// ones only make long advances slow: hundreds of heartbeats per second).
    pub heartbeat_interval_ms: u16,
}

impl Timers {
    /// Writes the mapped timers into `config`.
    pub fn apply(&self, config: &mut InstanceConfig) {
        let ms = |n: u64| Duration::from_millis(n);
        config.peer_timeout = ms(1 + u64::from(self.peer_timeout_ms) % 2_000);
        config.registry_timeout = ms(1 + u64::from(self.registry_timeout_ms) % 3_000);
        config.snapshot_ttl = ms(u64::from(self.snapshot_ttl_ms) % 5_001);
        config.reservation_ttl = ms(1 + u64::from(self.reservation_ttl_ms));
        let member_ttl = 500 + u64::from(self.member_ttl_ms) % 50_001;
        config.member_ttl = ms(member_ttl);
        config.heartbeat_interval = ms(250 + u64::from(self.heartbeat_interval_ms) % (member_ttl - 250));
    }
}

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
    /// `limits.max_reservations` (0 is allowed: nothing is ever reserved).
    pub max_reservations: u8,
    /// `max_list_len` (0 is raised to 1).
    pub max_list_len: u8,
    /// The timers.
    pub timers: Timers,
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

/// One step of the simulated world. A `conn` of `None` opens a new client
/// connection; `Some(k)` reuses the k-th open one (modulo their number), so
/// one connection carries many requests.
#[derive(Debug, Clone, Arbitrary)]
pub enum Op {
    /// A client sends a handshake.
    Handshake {
        /// On which connection.
        conn: Option<u8>,
        /// The rotation salt.
        salt: u64,
        /// `false`: direct mode.
        load_balance: bool,
        /// The cluster named.
        cluster: ClusterChoice,
    },
    /// A client asks for a session.
    Session {
        /// On which connection.
        conn: Option<u8>,
    },
    /// An open session ends explicitly (`pick` chooses which); `twice`
    /// repeats the end.
    EndSession {
        /// Which open session.
        pick: u8,
        /// Send the end a second time.
        twice: bool,
    },
    /// A session end for an id that is not open.
    EndUnknown(SessionId),
    /// An open client connection closes (`pick` chooses which).
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
    /// The driver reaches or leaves its connection limit.
    SetSaturated(bool),
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
    /// A call with a time `ms` earlier than the last one: a timeout check,
    /// and with `query` a workload query too. Both are clamped and counted.
    Backwards {
        /// How far back.
        ms: u16,
        /// Also send a workload query at that time.
        query: bool,
    },
}

#[derive(Debug, Clone)]
struct SimPeer {
    id: InstanceId,
    role: Role,
    accepting: bool,
    workload: Workload,
    inactive: bool,
}

/// What a handshake must get.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// Refused at once: another cluster was named.
    WrongCluster,
    /// Refused at once: too many waiting.
    Busy,
    /// Answered at once with exactly this (standalone or `load_balance: false`).
    Direct(RankedList),
    /// Queued for the round; answered in arrival order when it ends.
    Ranked,
}

#[derive(Debug, Clone)]
struct Waiting {
    conn: ConnectionId,
    arrived: Instant,
    salt: u64,
    expect: Expect,
}

/// The reply a session request must get.
#[derive(Debug, Clone, Copy)]
struct SessionExpect {
    conn: ConnectionId,
    request_id: u64,
    /// `None`: accepted.
    reject: Option<RejectReason>,
}

/// What the model knows about the current query round.
#[derive(Debug, Default)]
struct RoundView {
    /// A round is in flight.
    active: bool,
    /// Its finish (purge of expired reservations) was applied.
    finished: bool,
    /// Registry queries expected at its start (0 or 1) and seen.
    registry_expected: usize,
    registry_queries: usize,
    /// Built from an old snapshot (or none) after registry trouble.
    stale: bool,
    /// When the peer queries went out, and to whom they must go.
    asked_at: Option<Instant>,
    expected_peers: Option<BTreeSet<InstanceId>>,
    queried: BTreeSet<InstanceId>,
    /// Peer query id -> peer, for queries not yet answered.
    outstanding: BTreeMap<QueryId, InstanceId>,
    /// Valid answers delivered while the round was in flight.
    answers: BTreeMap<InstanceId, Candidate>,
}

/// The admin state of the instance, as the model keeps it.
#[derive(Debug, Clone, Copy)]
struct Admin {
    accepting: bool,
    saturated: bool,
    max_sessions: u32,
}

/// A simulated cluster around one [`Instance`], checking the reference model
/// after every step and panicking on the first difference.
pub struct World {
    inst: Instance,
    base: Instant,
    now: Instant,
    peers: Vec<SimPeer>,
    admin: Admin,
    /// The outstanding registry query and when the instance gives up on it.
    registry_query: Option<(QueryId, Instant)>,
    /// The snapshot the instance keeps: when, and the kept members' ages.
    snapshot: Option<(Instant, BTreeMap<InstanceId, Duration>)>,
    round: RoundView,
    /// Handshakes not yet answered, by request id.
    waiting: BTreeMap<u64, Waiting>,
    /// Request ids of the load-balanced handshakes queued in the machine.
    pending: VecDeque<u64>,
    /// Open client connections and the session each holds.
    conns: BTreeMap<ConnectionId, Option<SessionId>>,
    /// Open sessions and their connection.
    sessions: BTreeMap<SessionId, ConnectionId>,
    /// Every session id ever handed out and since ended.
    ended: BTreeSet<SessionId>,
    session_expect: Option<SessionExpect>,
    herd: HerdModel,
    expect: InstanceStats,
    next_conn: u64,
    next_request: u64,
    bound: Duration,
    log: Option<Vec<(Duration, Action)>>,
    /// Handshake replies seen, for tests.
    pub replies: usize,
    /// Session requests rejected with `AlreadyInSession`, for tests.
    pub already_in_session: usize,
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
        let mut config =
            InstanceConfig::new(self_id, endpoint_of(self_id), u32::from(setup.max_sessions.max(1)));
        config.role = setup.role;
        config.cluster = (setup.role != Role::Standalone).then(|| CLUSTER.to_owned());
        config.herd_control = setup.herd_control;
        config.max_list_len = usize::from(setup.max_list_len.max(1));
        config.limits.max_pending_handshakes = usize::from(setup.max_pending.max(1));
        config.limits.max_members = usize::from(setup.max_members.max(1));
        config.limits.max_tracked_sessions = usize::from(setup.max_tracked.max(1));
        config.limits.max_reservations = usize::from(setup.max_reservations);
        setup.timers.apply(&mut config);
        let bound = config.registry_timeout + config.peer_timeout;
        let admin = Admin { accepting: true, saturated: false, max_sessions: config.max_sessions };
        let inst = Instance::new(config, base, setup.seed).expect("the setup builds a valid config");
        let mut world = World {
            inst,
            base,
            now: base,
            peers,
            admin,
            registry_query: None,
            snapshot: None,
            round: RoundView::default(),
            waiting: BTreeMap::new(),
            pending: VecDeque::new(),
            conns: BTreeMap::new(),
            sessions: BTreeMap::new(),
            ended: BTreeSet::new(),
            session_expect: None,
            herd: HerdModel::default(),
            expect: InstanceStats::default(),
            next_conn: 0,
            next_request: 0,
            bound,
            log: record.then(Vec::new),
            replies: 0,
            already_in_session: 0,
        };
        let heartbeats = world.drain();
        assert_eq!(
            heartbeats,
            usize::from(setup.role != Role::Standalone),
            "a first heartbeat unless standalone"
        );
        world.check_quiet();
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

    /// Open client connections, by the model.
    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }

    /// Open client connections holding a session, by the model.
    pub fn connections_in_session(&self) -> usize {
        self.conns.values().filter(|s| s.is_some()).count()
    }

    fn config(&self) -> &InstanceConfig {
        self.inst.config()
    }

    fn advertised(&self) -> bool {
        self.admin.accepting && !self.admin.saturated
    }

    fn connected(&self) -> u32 {
        u32::try_from(self.sessions.len()).unwrap_or(u32::MAX)
    }

    fn peer_index(&self, id: InstanceId) -> Option<usize> {
        self.peers.iter().position(|p| p.id == id)
    }

    /// A new connection (`None`, or none open) or the k-th open one.
    fn pick_conn(&mut self, pick: Option<u8>) -> ConnectionId {
        if let Some(k) = pick.filter(|_| !self.conns.is_empty()) {
            let n = usize::from(k) % self.conns.len();
            return *self.conns.keys().nth(n).unwrap_or_else(|| unreachable!("n < len"));
        }
        let conn = ConnectionId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(conn, None);
        conn
    }

    /// Feeds one event now and drains; returns the heartbeats published.
    fn event(&mut self, event: Event) -> usize {
        self.event_at(event, self.now)
    }

    fn event_at(&mut self, event: Event, at: Instant) -> usize {
        match self.inst.handle_event(event.clone(), at) {
            Ok(()) => {}
            Err(UsageError::InvalidArgument { .. }) => {
                assert_eq!(event, Event::SetMaxSessions(0), "only a zero max is refused");
            }
            Err(other) => panic!("unexpected usage error {other:?} for {event:?}"),
        }
        self.drain()
    }

    /// Applies one op and checks every invariant.
    pub fn step(&mut self, op: &Op) {
        match *op {
            Op::Handshake { conn, salt, load_balance, cluster } => {
                self.handshake(conn, salt, load_balance, cluster)
            }
            Op::Session { conn } => self.session(conn),
            Op::EndSession { pick, twice } => {
                if let Some((&id, &conn)) =
                    self.sessions.iter().nth(usize::from(pick) % self.sessions.len().max(1))
                {
                    self.sessions.remove(&id);
                    self.conns.insert(conn, None);
                    self.ended.insert(id);
                    self.expect.sessions_ended += 1;
                    self.event(Event::SessionEnded { session_id: id });
                    if twice {
                        self.expect.ignored_session_ends += 1;
                        self.event(Event::SessionEnded { session_id: id });
                    }
                } else if let Some(&id) = self.ended.iter().next_back() {
                    self.expect.ignored_session_ends += 1;
                    self.event(Event::SessionEnded { session_id: id });
                }
            }
            Op::EndUnknown(id) => {
                if !self.sessions.contains_key(&id) {
                    self.expect.ignored_session_ends += 1;
                    self.event(Event::SessionEnded { session_id: id });
                }
            }
            Op::CloseConnection(pick) => {
                if let Some(&conn) = self.conns.keys().nth(usize::from(pick) % self.conns.len().max(1)) {
                    if let Some(Some(id)) = self.conns.remove(&conn) {
                        self.sessions.remove(&id);
                        self.ended.insert(id);
                        self.expect.sessions_ended += 1;
                    }
                    let waiting = &mut self.waiting;
                    let before = self.pending.len();
                    self.pending.retain(|r| !waiting.get(r).is_some_and(|w| w.conn == conn));
                    self.expect.abandoned_handshakes += (before - self.pending.len()) as u64;
                    waiting.retain(|_, w| w.conn != conn);
                    self.event(Event::ConnectionClosed { conn });
                }
            }
            Op::PeerQuery(query_id) => self.peer_query(query_id, self.now),
            Op::RegistryAnswer { hide, duplicate } => self.registry_answer(hide, duplicate),
            Op::RegistryFail => {
                if let Some((query_id, _)) = self.registry_query.take() {
                    self.registry_trouble();
                    self.event(Event::RegistryFailed { query_id, reason: "down".to_owned() });
                }
            }
            Op::RegistryStray(query_id) => {
                if self.registry_query.map(|(q, _)| q) != Some(query_id) {
                    self.expect.ignored_replies += 1;
                    self.event(Event::RegistrySnapshot { query_id, members: Vec::new() });
                }
            }
            Op::Report { pick, contradictory } => {
                let n = usize::from(pick) % self.round.outstanding.len().max(1);
                if let Some((&query_id, &id)) = self.round.outstanding.iter().nth(n) {
                    self.round.outstanding.remove(&query_id);
                    let peer = &self.peers[self.peer_index(id).expect("queried peers exist")];
                    let mut workload = peer.workload;
                    let (role, accepting) = (peer.role, peer.accepting);
                    if contradictory {
                        workload =
                            Workload::new(workload.max_sessions.saturating_add(1), workload.max_sessions);
                        self.expect.contradictory_reports += 1;
                        self.expect.peer_unreachable += 1;
                    } else {
                        self.expect.peer_reports += 1;
                        self.round.answers.insert(id, Candidate { role, accepting, fresh: true, workload });
                        let asked_at = self.round.asked_at.expect("queries went out");
                        self.herd.cover(id, asked_at);
                    }
                    let report = WorkloadReport { query_id, id, role, accepting, workload };
                    self.event(Event::WorkloadReport { report });
                }
            }
            Op::Unreachable(pick) => {
                let n = usize::from(pick) % self.round.outstanding.len().max(1);
                if let Some((&query_id, &peer)) = self.round.outstanding.iter().nth(n) {
                    self.round.outstanding.remove(&query_id);
                    self.expect.peer_unreachable += 1;
                    self.event(Event::PeerUnreachable { query_id, peer, reason: "reset".to_owned() });
                }
            }
            Op::StrayReport { query_id, id } => {
                if !self.round.outstanding.contains_key(&query_id) {
                    self.expect.ignored_replies += 1;
                    let report = WorkloadReport {
                        query_id,
                        id: InstanceId(u32::from(id)),
                        role: Role::Serving,
                        accepting: true,
                        workload: Workload::new(0, 1),
                    };
                    self.event(Event::WorkloadReport { report });
                }
            }
            Op::SetAccepting(accepting) => {
                let changed = accepting != self.admin.accepting;
                self.admin.accepting = accepting;
                let heartbeats = self.event(Event::SetAccepting(accepting));
                self.expect_heartbeat(changed, heartbeats);
            }
            Op::SetMaxSessions(max) => {
                let changed = max != 0 && u32::from(max) != self.admin.max_sessions;
                if max != 0 {
                    self.admin.max_sessions = u32::from(max);
                }
                let heartbeats = self.event(Event::SetMaxSessions(u32::from(max)));
                self.expect_heartbeat(changed, heartbeats);
            }
            Op::SetSaturated(saturated) => {
                let changed = saturated != self.admin.saturated;
                self.admin.saturated = saturated;
                self.inst.set_saturated(saturated, self.now);
                let heartbeats = self.drain();
                self.expect_heartbeat(changed, heartbeats);
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
            Op::Backwards { ms, query } => {
                let at = self
                    .now
                    .checked_sub(Duration::from_millis(u64::from(ms)))
                    .unwrap_or(self.base)
                    .max(self.base);
                let clamped = u64::from(at < self.now);
                self.expect.clamped += clamped;
                self.inst.handle_timeout(at);
                assert_eq!(self.drain(), 0, "a clamped timeout fires nothing");
                if query {
                    self.expect.clamped += clamped;
                    self.peer_query(QueryId(u64::from(ms)), at);
                }
            }
        }
        self.check_quiet();
    }

    fn expect_heartbeat(&self, changed: bool, heartbeats: usize) {
        let expected = usize::from(changed && self.config().role != Role::Standalone);
        assert_eq!(heartbeats, expected, "an admin change publishes one heartbeat, nothing else none");
    }

    fn handshake(&mut self, conn: Option<u8>, salt: u64, load_balance: bool, cluster: ClusterChoice) {
        let conn = self.pick_conn(conn);
        self.next_request += 1;
        let request_id = self.next_request;
        let cluster = match cluster {
            ClusterChoice::Unnamed => None,
            ClusterChoice::Ours => Some(CLUSTER.to_owned()),
            ClusterChoice::Other => Some("elsewhere".to_owned()),
        };
        self.expect.handshakes += 1;
        let wrong_cluster = cluster.as_ref().is_some_and(|c| self.config().cluster.as_ref() != Some(c));
        let expect = if wrong_cluster {
            self.expect.refused_wrong_cluster += 1;
            Expect::WrongCluster
        } else if !load_balance || self.config().role == Role::Standalone {
            self.expect.direct_replies += 1;
            Expect::Direct(self.direct_list())
        } else if self.pending.len() >= self.config().limits.max_pending_handshakes {
            self.expect.refused_busy += 1;
            Expect::Busy
        } else {
            self.pending.push_back(request_id);
            if !self.round.active {
                self.start_round();
            }
            Expect::Ranked
        };
        self.waiting.insert(request_id, Waiting { conn, arrived: self.now, salt, expect });
        let request = HandshakeRequest { request_id, salt, load_balance, cluster };
        self.event(Event::HandshakeRequest { conn, request });
    }

    fn start_round(&mut self) {
        self.expect.rounds += 1;
        self.round = RoundView { active: true, ..RoundView::default() };
        let fresh = self.snapshot.as_ref().is_some_and(|(at, _)| self.now - *at < self.config().snapshot_ttl);
        if fresh {
            self.enter_peer_phase(false);
        } else {
            self.round.registry_expected = 1;
            self.expect.registry_queries += 1;
        }
    }

    /// The round moves to its peer queries now: every kept member still
    /// active must be asked, and nobody else.
    fn enter_peer_phase(&mut self, stale: bool) {
        self.round.stale = stale;
        self.round.asked_at = Some(self.now);
        let ttl = self.config().member_ttl;
        let expected: BTreeSet<InstanceId> = match &self.snapshot {
            Some((at, members)) => {
                members.iter().filter(|&(_, &age)| age + (self.now - *at) < ttl).map(|(&id, _)| id).collect()
            }
            None => BTreeSet::new(),
        };
        self.expect.peer_queries += expected.len() as u64;
        self.round.expected_peers = Some(expected);
    }

    fn registry_trouble(&mut self) {
        self.expect.registry_failures += 1;
        self.enter_peer_phase(true);
    }

    fn registry_answer(&mut self, hide: u8, duplicate: bool) {
        let Some((query_id, _)) = self.registry_query.take() else { return };
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
                heartbeat_age: if p.inactive { INACTIVE_AGE } else { ACTIVE_AGE },
            })
            .collect();
        if duplicate {
            let copy = members.clone();
            members.extend(copy);
        }
        // The registry's row for the instance itself must not override its
        // live figures.
        members.push(MemberRecord {
            id: self.inst.id(),
            endpoint: endpoint_of(self.inst.id()),
            role: Role::Serving,
            accepting: true,
            workload: Workload::new(0, 1000),
            heartbeat_age: Duration::ZERO,
        });
        let ttl = self.config().member_ttl;
        let mut kept: BTreeMap<InstanceId, Duration> = BTreeMap::new();
        for m in &members {
            if m.role == Role::Serving && m.id != self.inst.id() && m.heartbeat_age < ttl {
                let age = kept.entry(m.id).or_insert(m.heartbeat_age);
                *age = (*age).min(m.heartbeat_age);
            }
        }
        let cap = self.config().limits.max_members;
        self.expect.members_dropped += kept.len().saturating_sub(cap) as u64;
        let kept = kept.into_iter().take(cap).collect();
        self.snapshot = Some((self.now, kept));
        self.enter_peer_phase(false);
        self.event(Event::RegistrySnapshot { query_id, members });
    }

    fn peer_query(&mut self, query_id: QueryId, at: Instant) {
        let conn = ConnectionId(u64::MAX - u64::from(self.round.queried.len() as u32));
        self.expect.workload_queries_answered += 1;
        self.inst
            .handle_event(Event::WorkloadQuery { conn, query: WorkloadQuery { query_id } }, at)
            .expect("a workload query is always usable");
        let expected = Message::WorkloadReport(WorkloadReport {
            query_id,
            id: self.inst.id(),
            role: self.config().role,
            accepting: self.advertised(),
            workload: self.own_workload(),
        });
        let reply = self.inst.poll_action();
        assert_eq!(reply, Some(Action::Reply { conn, message: expected }), "peer answered at once");
        if let (Some(log), Some(reply)) = (self.log.as_mut(), reply) {
            log.push((self.now - self.base, reply));
        }
        assert_eq!(self.drain(), 0, "a workload query publishes nothing else");
    }

    /// What reports and heartbeats say: `connected` capped at the max.
    fn own_workload(&self) -> Workload {
        Workload::new(self.connected().min(self.admin.max_sessions), self.admin.max_sessions)
    }

    fn session(&mut self, conn: Option<u8>) {
        let conn = self.pick_conn(conn);
        self.next_request += 1;
        let request_id = self.next_request;
        // SPEC 3.2, 3.5, in the machine's order of precedence.
        let reject = if self.conns.get(&conn).copied().flatten().is_some() {
            self.expect.rejected_already_in_session += 1;
            self.already_in_session += 1;
            Some(RejectReason::AlreadyInSession)
        } else if self.config().role == Role::LoadBalancerOnly {
            Some(RejectReason::NotServing)
        } else if !self.admin.accepting {
            Some(RejectReason::Draining)
        } else if self.connected() >= self.admin.max_sessions {
            Some(RejectReason::Full)
        } else if self.sessions.len() >= self.config().limits.max_tracked_sessions {
            Some(RejectReason::Busy)
        } else {
            None
        };
        match reject {
            Some(_) => self.expect.sessions_rejected += 1,
            None => {
                self.expect.sessions_accepted += 1;
                self.herd.admitted(self.inst.id(), self.now);
            }
        }
        self.session_expect = Some(SessionExpect { conn, request_id, reject });
        self.event(Event::SessionRequest { conn, request: SessionRequest { request_id } });
        assert!(self.session_expect.is_none(), "a session request gets its reply at once");
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
            self.timeout();
        }
        self.now = target;
        self.timeout();
    }

    fn timeout(&mut self) {
        if let Some((_, deadline)) = self.registry_query {
            if deadline <= self.now {
                self.registry_query = None;
                self.registry_trouble();
            }
        }
        self.inst.handle_timeout(self.now);
        self.drain();
    }

    /// Lets every timer run out until the instance is idle (bounded).
    pub fn settle(&mut self) {
        for _ in 0..16 {
            if self.waiting.is_empty() && !self.inst.round_in_flight() {
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
        let in_session = self.connections_in_session();
        assert_eq!(self.inst.connected() as usize, in_session, "connected = connections holding a session");
        assert_eq!(in_session, self.sessions.len());
        assert_eq!(self.inst.accepting(), self.admin.accepting);
        assert_eq!(self.inst.saturated(), self.admin.saturated);
        assert_eq!(self.inst.advertised_accepting(), self.advertised());
        assert_eq!(self.inst.max_sessions(), self.admin.max_sessions);
        assert_eq!(self.inst.workload(), self.own_workload());
        for (request_id, w) in &self.waiting {
            assert_eq!(w.expect, Expect::Ranked, "handshake {request_id} not answered at once");
            assert!(self.now <= w.arrived + self.bound, "handshake {request_id} waited past the bound");
        }
        assert_eq!(self.inst.pending_handshakes(), self.pending.len(), "the pending handshakes");
        assert_eq!(self.inst.round_in_flight(), self.round.active, "a round in flight");
        assert_eq!(self.inst.cached_members(), self.snapshot.as_ref().map_or(0, |(_, m)| m.len()));
        assert_eq!(self.inst.reservations(), self.herd.held(), "reservations held");
        assert!(self.inst.reservations() <= self.config().limits.max_reservations);
        let mut expect = self.expect.clone();
        expect.reservations_made = self.herd.made;
        expect.reservations_replaced = self.herd.replaced;
        expect.reservations_expired_unused = self.herd.expired_unused;
        expect.reservations_dropped = self.herd.dropped;
        assert_eq!(self.inst.stats(), &expect, "every counter");
    }

    /// Drains and checks every action; returns the heartbeats published.
    fn drain(&mut self) -> usize {
        let mut heartbeats = 0;
        let mut opened: Option<(ConnectionId, SessionId)> = None;
        while let Some(action) = self.inst.poll_action() {
            if let Some(log) = self.log.as_mut() {
                log.push((self.now - self.base, action.clone()));
            }
            if let Some((conn, session_id)) = opened.take() {
                assert_eq!(
                    action,
                    Action::SessionOpened { conn, session_id },
                    "SessionOpened after acceptance"
                );
                continue;
            }
            match action {
                Action::SessionOpened { .. } => panic!("SessionOpened without an acceptance: {action:?}"),
                Action::PublishHeartbeat(hb) => {
                    assert_ne!(self.config().role, Role::Standalone, "a standalone instance has no registry");
                    assert_eq!(hb.id, self.inst.id());
                    assert_eq!(hb.endpoint, endpoint_of(hb.id));
                    assert_eq!(hb.cluster.as_deref(), Some(CLUSTER));
                    assert_eq!(hb.role, self.config().role);
                    assert_eq!(hb.accepting, self.advertised());
                    assert_eq!(hb.workload, self.own_workload());
                    heartbeats += 1;
                    self.expect.heartbeats += 1;
                }
                Action::QueryRegistry { query_id, cluster } => {
                    assert_eq!(cluster, CLUSTER);
                    self.round.registry_queries += 1;
                    assert!(
                        self.round.registry_queries <= self.round.registry_expected,
                        "unexpected registry query"
                    );
                    self.registry_query = Some((query_id, self.now + self.config().registry_timeout));
                }
                Action::QueryPeer { query_id, peer, endpoint, query } => {
                    assert_eq!(query.query_id, query_id);
                    assert_eq!(endpoint, endpoint_of(peer));
                    assert!(self.round.queried.insert(peer), "peer {peer} queried twice in a round");
                    self.round.outstanding.insert(query_id, peer);
                }
                Action::Reply { conn, message: Message::HandshakeReply(reply) } => {
                    let waiting = self
                        .waiting
                        .remove(&reply.request_id)
                        .expect("a reply for a waiting handshake, once");
                    assert_eq!(conn, waiting.conn, "the reply goes to the handshake's connection");
                    self.replies += 1;
                    match waiting.expect {
                        Expect::WrongCluster => {
                            assert_eq!(reply.outcome, HandshakeOutcome::Refused(RefuseReason::WrongCluster));
                        }
                        Expect::Busy => {
                            assert_eq!(reply.outcome, HandshakeOutcome::Refused(RefuseReason::Busy))
                        }
                        Expect::Direct(list) => assert_eq!(reply.outcome, HandshakeOutcome::Ranked(list)),
                        Expect::Ranked => {
                            assert_eq!(
                                self.pending.pop_front(),
                                Some(reply.request_id),
                                "answered in arrival order"
                            );
                            self.finish_round();
                            let HandshakeOutcome::Ranked(list) = reply.outcome else {
                                panic!("a queued handshake gets a ranked list, got {:?}", reply.outcome)
                            };
                            self.check_ranked(conn, waiting.salt, &list);
                        }
                    }
                }
                Action::Reply { conn, message: Message::SessionReply(reply) } => {
                    let expect =
                        self.session_expect.take().expect("a session reply only for a session request");
                    assert_eq!(conn, expect.conn);
                    assert_eq!(reply.request_id, expect.request_id);
                    match (expect.reject, reply.outcome) {
                        (None, SessionOutcome::Accepted { session_id }) => {
                            assert!(!self.ended.contains(&session_id), "session id reused");
                            assert!(self.sessions.insert(session_id, conn).is_none(), "session id reused");
                            self.conns.insert(conn, Some(session_id));
                            opened = Some((conn, session_id));
                        }
                        (Some(want), SessionOutcome::Rejected(got)) => {
                            assert_eq!(got, want, "rejection reason")
                        }
                        (want, got) => panic!("session verdict: want reject {want:?}, got {got:?}"),
                    }
                }
                Action::Reply { message, .. } => panic!("unexpected reply {message:?}"),
            }
        }
        assert_eq!(opened, None, "SessionOpened must follow the accepting reply");
        if let Some(expected) = &self.round.expected_peers {
            assert_eq!(&self.round.queried, expected, "the round queries every active kept member");
        }
        assert_eq!(
            self.round.registry_queries, self.round.registry_expected,
            "registry query at round start"
        );
        if self.round.active && !self.inst.round_in_flight() {
            self.finish_round();
            assert!(self.pending.is_empty(), "a finished round answers every waiting handshake");
            self.round = RoundView::default();
            self.registry_query = None;
        }
        heartbeats
    }

    /// The round's end, once: peers still silent are counted, and with herd
    /// control the candidates' expired reservations go.
    fn finish_round(&mut self) {
        if self.round.finished {
            return;
        }
        self.round.finished = true;
        self.expect.peer_silent += self.round.outstanding.len() as u64;
        if self.config().herd_control {
            let ids: Vec<InstanceId> = self.candidates().iter().map(|&(id, _)| id).collect();
            let (ttl, max_members) = (self.config().reservation_ttl, self.config().limits.max_members);
            self.herd.finish_round(&ids, self.now, ttl, max_members);
        }
    }

    fn own_candidate(&self) -> Candidate {
        Candidate {
            role: self.config().role,
            accepting: self.advertised(),
            fresh: true,
            workload: Workload::new(self.connected(), self.admin.max_sessions),
        }
    }

    fn direct_list(&self) -> RankedList {
        let own = self.own_candidate();
        let serves = own.role != Role::LoadBalancerOnly && own.accepting && !own.workload.is_full();
        let entries = if serves {
            vec![RankedEntry {
                id: self.inst.id(),
                endpoint: endpoint_of(self.inst.id()),
                workload: own.workload,
            }]
        } else {
            Vec::new()
        };
        RankedList { stale: false, entries }
    }

    /// This round's candidates: answered peers and self, by id.
    fn candidates(&self) -> Vec<(InstanceId, Candidate)> {
        let mut all: Vec<(InstanceId, Candidate)> =
            self.round.answers.iter().map(|(&id, &c)| (id, c)).collect();
        all.push((self.inst.id(), self.own_candidate()));
        all.sort_by_key(|(id, _)| *id);
        all
    }

    fn check_ranked(&mut self, conn: ConnectionId, salt: u64, list: &RankedList) {
        let candidates = self.candidates();
        let herd_control = self.config().herd_control;
        let (now, ttl) = (self.now, self.config().reservation_ttl);
        let predicted = predicted(&self.herd, &candidates, herd_control, now, ttl);
        let members: Vec<(InstanceId, Candidate, Workload)> =
            candidates.iter().zip(&predicted).map(|(&(id, c), p)| (id, c, p.workload)).collect();
        check_list_rules(&members, list, self.config().max_list_len);
        self.expect.ranked_replies += 1;
        self.expect.stale_replies += u64::from(self.round.stale);
        let input = ReplyInput {
            candidates: &candidates,
            herd_control: self.config().herd_control,
            salt,
            conn,
            now: self.now,
            reservation_ttl: self.config().reservation_ttl,
            max_reservations: self.config().limits.max_reservations,
            max_list_len: self.config().max_list_len,
            stale: self.round.stale,
        };
        let expected = expected_reply(&mut self.herd, &input);
        assert_eq!(list, &expected, "the reply differs from the reference model");
    }
}

/// The rules any ranked list obeys, stated on their own (SPEC 2.4, 2.5,
/// 2.7); `members` holds self and the peers that answered this round, each
/// with its reported candidate and predicted workload (reported plus live
/// reservations). No duplicates; only members that can serve by their
/// reports; first the members not predicted full, listed with and sorted by
/// their predicted figures; then the members predicted full, listed with and
/// sorted by their reported figures; every reported-free member listed (never
/// dropped) unless `max_list_len` cut the list.
fn check_list_rules(members: &[(InstanceId, Candidate, Workload)], list: &RankedList, max_len: usize) {
    assert!(list.entries.len() <= max_len, "list longer than max_list_len");
    let mut seen = BTreeSet::new();
    let mut previous: Option<(bool, Workload)> = None;
    for entry in &list.entries {
        assert!(seen.insert(entry.id), "{} listed twice", entry.id);
        assert_eq!(entry.endpoint, endpoint_of(entry.id));
        let &(_, reported, predicted) = members
            .iter()
            .find(|(id, _, _)| *id == entry.id)
            .unwrap_or_else(|| panic!("{} listed but neither self nor answered this round", entry.id));
        assert!(reported.is_eligible(), "{} listed but cannot serve by its report", entry.id);
        let tail = predicted.is_full();
        let shown = if tail { reported.workload } else { predicted };
        assert_eq!(entry.workload, shown, "{} listed with the wrong figures", entry.id);
        if let Some((previous_tail, previous)) = previous {
            assert!(
                previous_tail <= tail,
                "{} predicted free listed after the predicted-full tail",
                entry.id
            );
            if previous_tail == tail {
                assert_ne!(
                    previous.cmp_rank(shown),
                    std::cmp::Ordering::Greater,
                    "list not sorted in its part"
                );
            }
        }
        previous = Some((tail, shown));
    }
    let free = members.iter().filter(|(_, c, _)| c.is_eligible()).count();
    assert_eq!(list.entries.len(), free.min(max_len), "a reported-free member was dropped");
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
