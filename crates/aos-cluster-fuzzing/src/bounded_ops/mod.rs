//! Fuzz body `bounded_ops`: one [`Instance`](aos_cluster::instance::Instance) in a simulated cluster of 20 to
//! 80 peers with a drawn bounded fan-out, so most rounds are bounded.
//! Unlike `instance_ops` there is no exact reference model: the lists
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
//!
//! Files: this one holds the inputs (`Setup`, `RowDraw`, `Op`), the world's
//! state, its construction and the body; `ops.rs` applies each op and moves
//! time, `checks.rs` checks every action and the state after every step.

mod checks;
mod ops;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};

use aos_cluster::config::{FanOut, InstanceConfig};
use aos_cluster::endpoint::Endpoint;
use aos_cluster::instance::{Action, ConnectionId, Event, Instance};
use aos_cluster::registry::MemberRecord;
use aos_cluster::rng::Rng;
use aos_cluster::wire::{
    HandshakeOutcome, HandshakeRequest, Message, QueryId, RefuseReason, SessionOutcome, SessionRequest,
    WorkloadReport,
};
use aos_cluster::workload::{Candidate, InstanceId, Role, Workload};

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
    /// Seeds the peers' initial registry rows.
    pub rows_seed: u64,
}

/// One peer's registry row as drawn (from the setup's seed, or by
/// [`RowChange::Beat`]): small numbers, so ties and full
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

/// The fuzz body: a setup, then ops until the bytes run
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
    let mut world = World::new(&setup, base);
    super::each_op(&mut u, 1024, |op: &Op| world.step(op));
    world.settle();
    world.log
}

impl World {
    /// A world from a setup, starting at `base`.
    pub fn new(setup: &Setup, base: Instant) -> World {
        let count = 20 + u32::from(setup.peers) % 61;
        let own = u32::from(setup.self_position) % (count + 1);
        let self_id = InstanceId(own * 2 + 1);
        // Rows come from a seed, not from the bytes: 80 drawn rows would
        // leave short inputs no room for ops. `Op::Row` changes them.
        let mut rng = Rng::new(setup.rows_seed);
        let peers = (0..count)
            .map(|i| {
                let [connected, max, flags, age_s, ..] = rng.next_u64().to_le_bytes();
                let (serving, accepting, workload) = RowDraw { connected, max, flags, age_s }.figures();
                let id = InstanceId(if i < own { i * 2 } else { i * 2 + 2 });
                let beat_ms = -1000 * i64::from(age_s % 25);
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
        // Small, so the session and reservation limits are reached too.
        config.limits.max_tracked_sessions = 8;
        // Above the 80 peers: no row is dropped, so the world's snapshot is
        // the machine's.
        config.limits.max_members = 128;
        // Generous (about 4x what the corpus reaches) but linear in the
        // limits: every collection the machine keeps is bounded by the
        // members it knows, the handshakes waiting, the reservations and the
        // sessions; its action queue keeps up to 256 entries after a burst.
        let limits = &config.limits;
        let memory_bound = 16 * 1024
            + std::mem::size_of::<Instance>()
            + 256 * std::mem::size_of::<Action>()
            + 512 * (count as usize + 1)
            + 128 * (limits.max_pending_handshakes + limits.max_reservations + limits.max_tracked_sessions);
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
}
