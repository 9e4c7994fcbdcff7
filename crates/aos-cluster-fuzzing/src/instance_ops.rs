//! Fuzz body `instance_ops`: arbitrary events and time advances against one
//! [`Instance`](aos_cluster::instance::Instance), with a simulated cluster around it
//! (registry, peers, clients on many connections) and a reference model that
//! predicts every output exactly, checked after every step.
//!
//! The model predicts: each handshake's outcome (`WrongCluster`, direct
//! reply, `Busy`, or its ranked list entry for entry, predicted-full tail
//! included, see `model.rs`); each session request's verdict
//! (`AlreadyInSession`, a policy denial, `NotServing`, `Draining`, `Full`, `Busy`, in that
//! order of precedence, else accepted and followed at once by
//! `SessionOpened` on the same connection); which peers a round queries and
//! whether it asks the registry; every workload report and heartbeat; and
//! every counter of [`InstanceStats`](aos_cluster::instance::InstanceStats).
//! `connected` must equal the number of connections holding a session.
//!
//! The same `World` runs the property tests, which build `Op` sequences
//! with proptest instead of bytes.
//!
//! Files: this one holds the inputs (`Setup`, `Op`), the world's state and
//! the body; `world.rs` builds the world and moves its time, `ops.rs` applies
//! each op with what the model expects of it, `checks.rs` checks every action
//! and the state after every step, `model.rs` is the reference model of herd
//! control and of one ranked reply.

mod checks;
mod model;
mod ops;
mod world;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};

use self::model::{expected_reply, predicted, shown, HerdModel, ReplyInput};
use aos_cluster::config::InstanceConfig;
use aos_cluster::endpoint::Endpoint;
use aos_cluster::instance::{Action, ConnectionId, Event, Instance, InstanceStats};
use aos_cluster::registry::MemberRecord;
use aos_cluster::wire::{
    HandshakeOutcome, HandshakeRequest, Message, QueryId, RankedEntry, RankedList, RefuseReason,
    RejectReason, SessionId, SessionOutcome, SessionRequest, WorkloadQuery, WorkloadReport,
};
use aos_cluster::workload::{Candidate, InstanceId, Role, Workload};

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
        config.reservation_ttl = ms(1 + u64::from(self.reservation_ttl_ms));
        let member_ttl = 500 + u64::from(self.member_ttl_ms) % 50_001;
        // A snapshot must be reused for less than a member lives (validation).
        config.snapshot_ttl = ms(u64::from(self.snapshot_ttl_ms) % 5_001 % member_ttl);
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
        /// The driver's admission policy refused it (`SessionDenied`).
        denied: bool,
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
    super::each_op(&mut u, 2048, |op: &Op| world.step(op));
    world.settle();
    assert_eq!(world.waiting(), 0, "every handshake is answered once the world settles");
}
