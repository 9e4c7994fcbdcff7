//! Fuzz body `bounded_ops`: one [`Instance`] in a simulated cluster of 20 to
//! 80 peers with a drawn bounded fan-out, so most rounds are bounded (issue
//! 13). Unlike `instance_ops` there is no exact reference model: the lists
//! and whom a round asks depend on herd control's predictions, so the world
//! checks the fan-out's invariants instead, after every step:
//!
//! - a bounded round asks at most `live` + (active members with stale or
//!   contradictory registry figures) + (answers this round that were
//!   unreachable or contradictory) peers, each a member of the snapshot and
//!   each at most once; a full round asks each active member at most once;
//! - a list holds no duplicates, at most `max_list_len` entries, only
//!   members of the snapshot active when the round asked (and the instance
//!   itself only when `Serving`), never one this round found unreachable,
//!   contradictory or silent;
//! - after `PeerUnreachable` for M at t, a bounded round over a snapshot
//!   whose row for M shows a heartbeat at or before t neither asks nor lists
//!   M (the machine forgets the failure once a bounded round sees a later
//!   heartbeat, and so does the world);
//! - every handshake gets exactly one reply, within `registry_timeout +
//!   peer_timeout`, none after its connection closed;
//! - counters agree with the actions seen, and the memory footprint stays
//!   below a bound derived from the limits;
//! - the same input gives the same actions twice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};

use crate::config::{FanOut, InstanceConfig};
use crate::endpoint::Endpoint;
use crate::instance::{Action, ConnectionId, Event, Instance};
use crate::registry::MemberRecord;
use crate::wire::{
    HandshakeOutcome, HandshakeRequest, Message, QueryId, RefuseReason, SessionOutcome, SessionRequest,
    WorkloadReport,
};
use crate::workload::{Candidate, InstanceId, Role, Workload};

/// The cluster every simulated member belongs to.
pub const CLUSTER: &str = "bounded";

/// The instance's shape and limits, each mapped into a small range.
#[derive(Debug, Clone, Arbitrary)]
pub struct Setup {
    /// `Serving` (true) or `LoadBalancerOnly`.
    pub serving: bool,
    /// Herd control on or off.
    pub herd_control: bool,
    /// Peers: 20 to 80.
    pub peers: u8,
    /// Where the instance's id falls among the peers' ids.
    pub self_position: u8,
    /// `fan_out.live`: 1 to 10.
    pub live: u8,
    /// `fan_out.full_up_to`: 0 to 40.
    pub full_up_to: u8,
    /// `fan_out.max_figure_age`: 1 to 20 s.
    pub max_figure_age_s: u8,
    /// `max_list_len`: 1 to 64.
    pub max_list_len: u8,
    /// `limits.max_pending_handshakes`: 1 to 16.
    pub max_pending: u8,
    /// `limits.max_reservations`: 1 to 64.
    pub max_reservations: u8,
    /// `peer_timeout`: 1 ms to 2 s; `registry_timeout`: 1 ms to 3 s.
    pub peer_timeout_ms: u16,
    /// See `peer_timeout_ms`.
    pub registry_timeout_ms: u16,
    /// `snapshot_ttl`: 0 to 5 s.
    pub snapshot_ttl_ms: u16,
    /// `member_ttl`: 5 to 40 s.
    pub member_ttl_s: u8,
    /// The machine's rng seed.
    pub seed: u64,
}

/// One peer's registry row as drawn: small numbers, so ties and full
/// members are common.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct RowDraw {
    /// Sessions connected (mod 6, capped at max unless contradictory).
    pub connected: u8,
    /// Max sessions (mod 5: 0 makes it full).
    pub max: u8,
    /// Bits: serving (7 in 8), accepting (7 in 8), contradictory (1 in 8).
    pub flags: u8,
    /// Heartbeat age in seconds (mod 25).
    pub age_s: u8,
}

impl RowDraw {
    fn figures(self) -> (bool, bool, Workload) {
        let serving = self.flags & 7 != 0;
        let accepting = (self.flags >> 3) & 3 != 0;
        let max = u32::from(self.max % 5);
        let connected = if self.flags >> 5 == 7 {
            max + 1 + u32::from(self.connected % 2)
        } else {
            u32::from(self.connected % 6).min(max)
        };
        (serving, accepting, Workload::new(connected, max))
    }
}

/// How the registry's row for one peer changes before the next answer.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum RowChange {
    /// A heartbeat now, with new figures.
    Beat(RowDraw),
    /// The row's heartbeat moves this many seconds (mod 16) into the past.
    Older(u8),
    /// The row is removed, or comes back.
    Toggle,
}

/// One step of the world.
#[derive(Debug, Clone, Arbitrary)]
pub enum Op {
    /// A load-balanced handshake for the right cluster on a new connection.
    Handshake(u64),
    /// The registry answers the outstanding query; `duplicate` adds an older
    /// copy of one row with other figures (the instance keeps the freshest).
    RegistryAnswer {
        /// Which row to duplicate, if any.
        duplicate: Option<u8>,
    },
    /// The registry fails the outstanding query.
    RegistryFail,
    /// Peer `peer`'s registry row changes.
    Row {
        /// Which peer.
        peer: u8,
        /// How.
        change: RowChange,
    },
    /// The peer of outstanding query `pick` reports (figures as a row draw,
    /// sometimes contradictory).
    Report {
        /// Which outstanding query.
        pick: u8,
        /// Its figures.
        figures: RowDraw,
    },
    /// The peer of outstanding query `pick` cannot be reached.
    Unreachable(u8),
    /// An open connection closes.
    Close(u8),
    /// A session request on an open connection (or a new one).
    Session(Option<u8>),
    /// Time passes: up to 3 s, timers firing at their deadlines.
    Advance(u16),
}

#[derive(Debug, Clone, Copy)]
struct Row {
    present: bool,
    serving: bool,
    accepting: bool,
    workload: Workload,
    /// Heartbeat time, ms from `base` (may be negative).
    beat_ms: i64,
}

/// A kept snapshot row: `Serving`, not the instance, active when received.
#[derive(Debug, Clone, Copy)]
struct SnapRow {
    beat_ms: i64,
    age: Duration,
    figures: Candidate,
}

#[derive(Debug)]
struct Snap {
    at: Duration,
    rows: BTreeMap<InstanceId, SnapRow>,
}

/// The round's peer phase as the world sees it.
#[derive(Debug, Default)]
struct Phase {
    bounded: bool,
    active: BTreeSet<InstanceId>,
    /// Active members a bounded round must neither ask nor list.
    excluded: BTreeSet<InstanceId>,
    stale_or_contradictory: usize,
    queried: BTreeSet<InstanceId>,
    outstanding: BTreeMap<QueryId, InstanceId>,
    answered: BTreeSet<InstanceId>,
    /// Unreachable or contradictory this round.
    failed: BTreeSet<InstanceId>,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    conn: ConnectionId,
    arrived: Duration,
    /// Refused `Busy` at once.
    busy: bool,
}

/// The simulated cluster around one [`Instance`], checking the invariants
/// after every step and panicking on the first broken one.
pub struct World {
    inst: Instance,
    base: Instant,
    now: Duration,
    peers: Vec<(InstanceId, Row)>,
    snap: Option<Snap>,
    /// A round is in flight; `phase` once it asked (or skipped) the peers.
    round: bool,
    registry_expected: bool,
    registry_query: Option<(QueryId, Duration)>,
    phase: Option<Phase>,
    /// Member -> when a live query found it unreachable (ms from `base`).
    failures: BTreeMap<InstanceId, i64>,
    waiting: BTreeMap<u64, Waiting>,
    conns: BTreeSet<ConnectionId>,
    session_expect: Option<(ConnectionId, u64)>,
    next_id: u64,
    peer_queries: u64,
    ranked: u64,
    memory_bound: usize,
    bound: Duration,
    log: Vec<(Duration, Action)>,
}

/// The endpoint the simulated cluster gives member `id`.
pub fn endpoint_of(id: InstanceId) -> Endpoint {
    Endpoint::new(&format!("m{}", id.0), 2712).unwrap_or_else(|_| unreachable!("a valid host name"))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The fuzz body: a setup, one row per peer, then ops until the bytes run
/// out (at most 1 024); the world then settles (every handshake answered).
/// It runs twice and the two action logs must be equal. Times are offsets
/// from `base`, which the caller reads from its clock.
pub fn bounded_ops(data: &[u8], base: Instant) {
    let first = run(data, base);
    let second = run(data, base);
    assert!(first == second, "the same input gave different actions");
}

fn run(data: &[u8], base: Instant) -> Vec<(Duration, Action)> {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else { return Vec::new() };
    let mut world = World::new(&setup, &mut u, base);
    for _ in 0..1024 {
        match Op::arbitrary(&mut u) {
            Ok(op) => world.step(&op),
            Err(_) => break,
        }
        if u.is_empty() {
            break;
        }
    }
    world.settle();
    world.log
}

impl World {
    /// A world from a setup and rows drawn from `u` (missing bytes give
    /// default rows), starting at `base`.
    pub fn new(setup: &Setup, u: &mut Unstructured<'_>, base: Instant) -> World {
        let count = 20 + u32::from(setup.peers) % 61;
        let own = u32::from(setup.self_position) % (count + 1);
        let self_id = InstanceId(own * 2 + 1);
        let peers = (0..count)
            .map(|i| {
                let draw =
                    RowDraw::arbitrary(u).unwrap_or(RowDraw { connected: 0, max: 4, flags: 9, age_s: 0 });
                let (serving, accepting, workload) = draw.figures();
                let id = InstanceId(if i < own { i * 2 } else { i * 2 + 2 });
                let beat_ms = -1000 * i64::from(draw.age_s % 25);
                (id, Row { present: true, serving, accepting, workload, beat_ms })
            })
            .collect();
        let mut config = InstanceConfig::new(self_id, endpoint_of(self_id), 4);
        config.role = if setup.serving { Role::Serving } else { Role::LoadBalancerOnly };
        config.cluster = Some(CLUSTER.to_owned());
        config.herd_control = setup.herd_control;
        config.max_list_len = 1 + usize::from(setup.max_list_len % 64);
        config.fan_out = FanOut {
            live: 1 + usize::from(setup.live % 10),
            full_up_to: usize::from(setup.full_up_to % 41),
            max_figure_age: Duration::from_secs(1 + u64::from(setup.max_figure_age_s % 20)),
        };
        config.peer_timeout = Duration::from_millis(1 + u64::from(setup.peer_timeout_ms) % 2_000);
        config.registry_timeout = Duration::from_millis(1 + u64::from(setup.registry_timeout_ms) % 3_000);
        config.snapshot_ttl = Duration::from_millis(u64::from(setup.snapshot_ttl_ms) % 5_001);
        config.member_ttl = Duration::from_secs(5 + u64::from(setup.member_ttl_s) % 36);
        config.heartbeat_interval = Duration::from_secs(2);
        config.reservation_ttl = Duration::from_secs(5);
        config.limits.max_pending_handshakes = 1 + usize::from(setup.max_pending % 16);
        config.limits.max_reservations = 1 + usize::from(setup.max_reservations % 64);
        config.limits.max_tracked_sessions = 8;
        config.limits.max_members = 128;
        // Generous: every collection the machine keeps is bounded by the
        // members it knows, the handshakes waiting, the reservations and the
        // sessions, plus the queues it keeps after a burst (256 entries).
        let per_item = 1024;
        let items = 2 * (count as usize + 1)
            + config.limits.max_pending_handshakes
            + config.limits.max_reservations
            + config.limits.max_tracked_sessions;
        let memory_bound = 64 * 1024 + 256 * 512 + items * per_item;
        let bound = config.registry_timeout + config.peer_timeout;
        let inst = Instance::new(config, base, setup.seed).expect("the setup builds a valid config");
        let mut world = World {
            inst,
            base,
            now: Duration::ZERO,
            peers,
            snap: None,
            round: false,
            registry_expected: false,
            registry_query: None,
            phase: None,
            failures: BTreeMap::new(),
            waiting: BTreeMap::new(),
            conns: BTreeSet::new(),
            session_expect: None,
            next_id: 0,
            peer_queries: 0,
            ranked: 0,
            memory_bound,
            bound,
            log: Vec::new(),
        };
        world.drain();
        world.check();
        world
    }

    fn at(&self) -> Instant {
        self.base + self.now
    }

    fn config(&self) -> &InstanceConfig {
        self.inst.config()
    }

    /// Applies one op and checks every invariant.
    pub fn step(&mut self, op: &Op) {
        match *op {
            Op::Handshake(salt) => self.handshake(salt),
            Op::RegistryAnswer { duplicate } => self.registry_answer(duplicate),
            Op::RegistryFail => {
                if let Some((query_id, _)) = self.registry_query.take() {
                    self.enter_peer_phase();
                    self.event(Event::RegistryFailed { query_id, reason: "down".to_owned() });
                }
            }
            Op::Row { peer, change } => {
                let now = ms(self.now);
                let i = usize::from(peer) % self.peers.len();
                let row = &mut self.peers[i].1;
                match change {
                    RowChange::Beat(draw) => {
                        (row.serving, row.accepting, row.workload) = draw.figures();
                        row.beat_ms = now;
                    }
                    RowChange::Older(s) => row.beat_ms -= 1000 * i64::from(s % 16),
                    RowChange::Toggle => row.present = !row.present,
                }
            }
            Op::Report { pick, figures } => {
                if let Some((query_id, id)) = self.pick_outstanding(pick) {
                    let (_, accepting, workload) = figures.figures();
                    let phase = self.phase.as_mut().unwrap_or_else(|| unreachable!("outstanding"));
                    if workload.connected > workload.max_sessions {
                        phase.failed.insert(id);
                    } else {
                        phase.answered.insert(id);
                    }
                    let report = WorkloadReport { query_id, id, role: Role::Serving, accepting, workload };
                    self.event(Event::WorkloadReport { report });
                }
            }
            Op::Unreachable(pick) => {
                if let Some((query_id, peer)) = self.pick_outstanding(pick) {
                    if let Some(phase) = self.phase.as_mut() {
                        phase.failed.insert(peer);
                    }
                    self.failures.insert(peer, ms(self.now));
                    self.event(Event::PeerUnreachable { query_id, peer, reason: "reset".to_owned() });
                }
            }
            Op::Close(pick) => {
                if let Some(&conn) = self.conns.iter().nth(usize::from(pick) % self.conns.len().max(1)) {
                    self.conns.remove(&conn);
                    self.waiting.retain(|_, w| w.conn != conn);
                    self.event(Event::ConnectionClosed { conn });
                }
            }
            Op::Session(pick) => {
                let open = pick.and_then(|k| self.conns.iter().nth(usize::from(k) % self.conns.len().max(1)));
                let conn = match open {
                    Some(&conn) => conn,
                    None => self.new_conn(),
                };
                self.next_id += 1;
                self.session_expect = Some((conn, self.next_id));
                let request = SessionRequest { request_id: self.next_id };
                self.event(Event::SessionRequest { conn, request });
                assert!(self.session_expect.is_none(), "a session request gets its reply at once");
            }
            Op::Advance(step) => self.advance(Duration::from_millis(u64::from(step) % 3_001)),
        }
        self.check();
    }

    fn new_conn(&mut self) -> ConnectionId {
        self.next_id += 1;
        let conn = ConnectionId(self.next_id);
        self.conns.insert(conn);
        conn
    }

    fn pick_outstanding(&mut self, pick: u8) -> Option<(QueryId, InstanceId)> {
        let outstanding = &mut self.phase.as_mut()?.outstanding;
        let n = usize::from(pick) % outstanding.len().max(1);
        let (&query_id, &id) = outstanding.iter().nth(n)?;
        outstanding.remove(&query_id);
        Some((query_id, id))
    }

    fn handshake(&mut self, salt: u64) {
        let conn = self.new_conn();
        self.next_id += 1;
        let request_id = self.next_id;
        let busy = self.inst.pending_handshakes() >= self.config().limits.max_pending_handshakes;
        if !busy && !self.round {
            self.round = true;
            let fresh = self.snap.as_ref().is_some_and(|s| self.now - s.at < self.config().snapshot_ttl);
            if fresh {
                self.enter_peer_phase();
            } else {
                self.registry_expected = true;
            }
        }
        self.waiting.insert(request_id, Waiting { conn, arrived: self.now, busy });
        let request =
            HandshakeRequest { request_id, salt, load_balance: true, cluster: Some(CLUSTER.to_owned()) };
        self.event(Event::HandshakeRequest { conn, request });
        if busy {
            assert!(!self.waiting.contains_key(&request_id), "a handshake over the limit is refused at once");
        }
    }

    fn registry_answer(&mut self, duplicate: Option<u8>) {
        let Some((query_id, _)) = self.registry_query.take() else { return };
        let now = ms(self.now);
        let age = |beat_ms: i64| Duration::from_millis(u64::try_from(now - beat_ms).unwrap_or(0));
        let record = |id: InstanceId, row: &Row| MemberRecord {
            id,
            endpoint: endpoint_of(id),
            role: if row.serving { Role::Serving } else { Role::LoadBalancerOnly },
            accepting: row.accepting,
            workload: row.workload,
            heartbeat_age: age(row.beat_ms),
        };
        let mut members: Vec<MemberRecord> =
            self.peers.iter().filter(|(_, r)| r.present).map(|(id, r)| record(*id, r)).collect();
        if let Some(k) = duplicate.filter(|_| !members.is_empty()) {
            let mut copy = members[usize::from(k) % members.len()].clone();
            copy.heartbeat_age += Duration::from_secs(3);
            copy.workload = Workload::new(0, 9);
            members.push(copy);
        }
        // The registry's row for the instance itself never counts as a peer.
        let own = self.inst.id();
        members.push(MemberRecord {
            id: own,
            endpoint: endpoint_of(own),
            role: Role::Serving,
            accepting: true,
            workload: Workload::new(0, 100),
            heartbeat_age: Duration::ZERO,
        });
        let ttl = self.config().member_ttl;
        let rows = self
            .peers
            .iter()
            .filter(|(_, r)| r.present && r.serving && age(r.beat_ms) < ttl)
            .map(|&(id, r)| {
                let figures = Candidate { role: Role::Serving, accepting: r.accepting, workload: r.workload };
                (id, SnapRow { beat_ms: r.beat_ms, age: age(r.beat_ms), figures })
            })
            .collect();
        self.snap = Some(Snap { at: self.now, rows });
        self.enter_peer_phase();
        self.event(Event::RegistrySnapshot { query_id, members });
    }

    /// The round moves to its peer queries now: what the world expects of
    /// them (mirrors which members count as active, stale and excluded).
    fn enter_peer_phase(&mut self) {
        let mut phase = Phase::default();
        let fan_out = self.config().fan_out;
        let ttl = self.config().member_ttl;
        if let Some(snap) = &self.snap {
            let since = self.now - snap.at;
            phase.active = snap.rows.iter().filter(|(_, r)| r.age + since < ttl).map(|(&id, _)| id).collect();
            phase.bounded = !fan_out.is_full_for(phase.active.len());
            if phase.bounded {
                for id in &phase.active {
                    let row = &snap.rows[id];
                    if let Some(&failed_at) = self.failures.get(id) {
                        if row.beat_ms <= failed_at {
                            phase.excluded.insert(*id);
                            continue;
                        }
                        self.failures.remove(id);
                    }
                    let w = row.figures.workload;
                    let stale = row.age + since > fan_out.max_figure_age;
                    phase.stale_or_contradictory += usize::from(stale || w.connected > w.max_sessions);
                }
            }
        }
        self.phase = Some(phase);
    }

    fn event(&mut self, event: Event) {
        if let Err(e) = self.inst.handle_event(event.clone(), self.at()) {
            panic!("a valid event was refused: {e:?} for {event:?}");
        }
        self.drain();
    }

    /// Moves time forward by `by`, stopping at every deadline on the way.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        while let Some(deadline) = self.inst.poll_timeout() {
            let deadline = deadline.saturating_duration_since(self.base);
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
        if self.registry_query.is_some_and(|(_, deadline)| deadline <= self.now) {
            self.registry_query = None;
            self.enter_peer_phase();
        }
        self.inst.handle_timeout(self.at());
        self.drain();
    }

    /// Lets the timers run out until every handshake is answered.
    pub fn settle(&mut self) {
        for _ in 0..4 {
            if self.waiting.is_empty() && !self.inst.round_in_flight() {
                break;
            }
            self.advance(self.bound);
        }
        self.check();
        assert!(self.waiting.is_empty(), "every handshake is answered once the world settles");
    }

    /// Drains every action, checking each.
    fn drain(&mut self) {
        let mut opened = None;
        while let Some(action) = self.inst.poll_action() {
            self.log.push((self.now, action.clone()));
            if let Some((conn, session_id)) = opened.take() {
                assert_eq!(
                    action,
                    Action::SessionOpened { conn, session_id },
                    "SessionOpened after acceptance"
                );
                continue;
            }
            match action {
                Action::PublishHeartbeat(_) => {}
                Action::QueryRegistry { query_id, .. } => {
                    assert!(std::mem::take(&mut self.registry_expected), "an unexpected registry query");
                    self.registry_query = Some((query_id, self.now + self.config().registry_timeout));
                }
                Action::QueryPeer { query_id, peer, endpoint, query } => {
                    self.peer_queries += 1;
                    assert_eq!((query.query_id, endpoint), (query_id, endpoint_of(peer)));
                    let live = self.config().fan_out.live;
                    let phase = self.phase.as_mut().expect("peer queries only in a round's peer phase");
                    assert!(phase.active.contains(&peer), "{peer} queried but not an active snapshot member");
                    assert!(phase.queried.insert(peer), "{peer} queried twice in one round");
                    phase.outstanding.insert(query_id, peer);
                    if phase.bounded {
                        assert!(!phase.excluded.contains(&peer), "{peer} queried though found unreachable");
                        let allowed = live + phase.stale_or_contradictory + phase.failed.len();
                        assert!(
                            phase.queried.len() <= allowed,
                            "{} queries in a bounded round, at most {live} + {} stale + {} failed",
                            phase.queried.len(),
                            phase.stale_or_contradictory,
                            phase.failed.len()
                        );
                    }
                }
                Action::Reply { conn, message: Message::HandshakeReply(reply) } => {
                    let w = self
                        .waiting
                        .remove(&reply.request_id)
                        .expect("a reply for a waiting handshake, once");
                    assert_eq!(conn, w.conn, "the reply goes to the handshake's connection");
                    assert!(self.now <= w.arrived + self.bound, "handshake answered past the bound");
                    match reply.outcome {
                        HandshakeOutcome::Refused(RefuseReason::Busy) => assert!(w.busy, "refused Busy"),
                        HandshakeOutcome::Ranked(list) => {
                            assert!(!w.busy, "over the limit but ranked");
                            self.ranked += 1;
                            self.check_list(&list.entries);
                        }
                        other => panic!("unexpected handshake outcome {other:?}"),
                    }
                }
                Action::Reply { conn, message: Message::SessionReply(reply) } => {
                    let expect = self.session_expect.take().expect("a session reply only for a request");
                    assert_eq!((conn, reply.request_id), expect, "session reply to the request");
                    if let SessionOutcome::Accepted { session_id } = reply.outcome {
                        opened = Some((conn, session_id));
                    }
                }
                other => panic!("unexpected action {other:?}"),
            }
        }
        assert_eq!(opened, None, "SessionOpened must follow the accepting reply");
        if self.round && !self.inst.round_in_flight() {
            assert_eq!(self.inst.pending_handshakes(), 0, "a finished round answers every waiting handshake");
            self.round = false;
            self.phase = None;
            self.registry_query = None;
            self.registry_expected = false;
        }
    }

    fn check_list(&self, entries: &[crate::wire::RankedEntry]) {
        assert!(entries.len() <= self.config().max_list_len, "list longer than max_list_len");
        let phase = self.phase.as_ref().expect("ranked lists only at the end of a peer phase");
        let own = self.inst.id();
        let mut seen = BTreeSet::new();
        for e in entries {
            let id = e.id;
            assert!(seen.insert(id), "{id} listed twice");
            assert_eq!(e.endpoint, endpoint_of(id));
            if id == own {
                assert_eq!(self.config().role, Role::Serving, "a load balancer listed itself");
                continue;
            }
            assert!(phase.active.contains(&id), "{id} listed but not an active snapshot member");
            assert!(!phase.failed.contains(&id), "{id} listed though found unreachable this round");
            assert!(!phase.queried.contains(&id) || phase.answered.contains(&id), "{id} silent but listed");
            assert!(phase.bounded || phase.answered.contains(&id), "{id} listed unasked in a full round");
            assert!(!phase.excluded.contains(&id), "{id} listed though found unreachable before");
        }
    }

    fn check(&self) {
        if let Some(deadline) = self.inst.poll_timeout() {
            assert!(deadline > self.at(), "a due timer was left unfired");
        }
        for (request_id, w) in &self.waiting {
            assert!(!w.busy, "handshake {request_id} over the limit not refused at once");
            assert!(self.now <= w.arrived + self.bound, "handshake {request_id} waited past the bound");
        }
        let stats = self.inst.stats();
        assert_eq!(stats.peer_queries, self.peer_queries, "peer_queries = QueryPeer actions");
        assert!(stats.replacement_queries <= stats.peer_unreachable, "more replacements than failures");
        assert_eq!(stats.ranked_replies, self.ranked, "ranked_replies = ranked replies seen");
        let footprint = self.inst.memory_footprint();
        assert!(footprint <= self.memory_bound, "memory {footprint} above the bound {}", self.memory_bound);
    }
}
