//! The instance machine (an AOS): phase 2 (ranking) and the server half of
//! phase 3 (admission), plus peer workload answers and registry heartbeats.
//!
//! # Driving it
//!
//! Feed every input to [`Instance::handle_event`], call
//! [`Instance::handle_timeout`] when [`Instance::poll_timeout`]'s deadline is
//! reached, and after each of them drain [`Instance::poll_action`] to `None`.
//! The driver owns the sockets and the registry; the machine only names them:
//! connections by an opaque [`ConnectionId`], registry and peer queries by a
//! `query_id` it hands out. A reply for an unknown or finished id is ignored
//! (and counted in [`InstanceStats::ignored_replies`]).
//!
//! # Query rounds
//!
//! A load-balanced handshake joins the round in flight or starts one. A round
//! asks the registry for a snapshot (unless the cached one is younger than
//! `snapshot_ttl`), then asks every active `Serving` peer for its live
//! workload. It ends when every peer has answered or was declared unreachable,
//! or `peer_timeout` after the peer queries went out; then every waiting
//! handshake gets its ranked list, in arrival order, each with its own salt.
//! A burst of N handshakes therefore costs one registry query and one query
//! per peer, not N of each.
//!
//! # Herd control
//!
//! With `herd_control` on (the default), each reply counts a provisional
//! session (a reservation) on the list's first entry for `reservation_ttl`, so
//! the next handshake ranks by predicted load. A valid report from a peer
//! covers as many of its predictions, oldest first, as its `connected` rose
//! since its last report; the rest are still in flight and stay predicted.
//! For the instance itself, each admitted session consumes one reservation. A member predicted full is left
//! out.
//!
//! Among the members tied with the head of a list (equal predicted load and
//! free sessions), the one that headed a reply least recently goes first; the
//! request's salt still orders members that never headed one. Once every
//! tied member has taken one arrival the predicted loads tie again and carry
//! no trace of who went last, so the salt alone could hand the next arrival
//! straight back to the member that just took one (a 1-in-k chance at every
//! level of k members). Least recently headed first turns the levels into a
//! round robin, the most even spread one balancer can give.
//!
//! With herd control off, a reply is exactly [`rank`](crate::workload::rank)
//! of the reported figures.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::mem::size_of;
use std::time::{Duration, Instant};

use crate::config::{ConfigError, InstanceConfig};
use crate::endpoint::Endpoint;
use crate::error::UsageError;
use crate::registry::{Heartbeat, MemberRecord};
use crate::rng::Rng;
use crate::timer::{TimerKind, TimerTable};
use crate::wire::{
    HandshakeOutcome, HandshakeReply, HandshakeRequest, Message, QueryId, RankedEntry, RankedList,
    RefuseReason, RejectReason, SessionId, SessionOutcome, SessionReply, SessionRequest, WorkloadQuery,
    WorkloadReport,
};
use crate::workload::{rank_into, Candidate, InstanceId, Role, Workload};

/// Queue capacity kept after a burst drains; beyond it, memory is returned.
const KEPT_CAPACITY: usize = 256;

/// The driver's name for one client or peer connection; opaque to the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ConnectionId(pub u64);

/// One input to an [`Instance`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A client asks which instance to use (phase 1 -> phase 2).
    HandshakeRequest {
        /// Where to send the reply.
        conn: ConnectionId,
        /// The request.
        request: HandshakeRequest,
    },
    /// A client asks for a session here (phase 3).
    SessionRequest {
        /// Where to send the reply.
        conn: ConnectionId,
        /// The request.
        request: SessionRequest,
    },
    /// A session this instance admitted has ended or was lost. A repeated or
    /// unknown id is ignored.
    SessionEnded {
        /// The id handed out in [`SessionOutcome::Accepted`].
        session_id: SessionId,
    },
    /// The connection closed: handshakes still waiting on it are dropped.
    /// Sessions are not ended by this; the driver sends [`Event::SessionEnded`].
    ConnectionClosed {
        /// The closed connection.
        conn: ConnectionId,
    },
    /// A peer asks for this instance's live workload.
    WorkloadQuery {
        /// Where to send the report.
        conn: ConnectionId,
        /// The query.
        query: WorkloadQuery,
    },
    /// The registry answered [`Action::QueryRegistry`].
    RegistrySnapshot {
        /// The query's id.
        query_id: QueryId,
        /// Every member row the registry holds for the cluster.
        members: Vec<MemberRecord>,
    },
    /// The registry query failed.
    RegistryFailed {
        /// The query's id.
        query_id: QueryId,
        /// What went wrong, for logs.
        reason: String,
    },
    /// A peer answered [`Action::QueryPeer`].
    WorkloadReport {
        /// The peer's report (its `query_id` names the query).
        report: WorkloadReport,
    },
    /// A peer could not be reached for [`Action::QueryPeer`].
    PeerUnreachable {
        /// The query's id.
        query_id: QueryId,
        /// The peer queried.
        peer: InstanceId,
        /// What went wrong, for logs.
        reason: String,
    },
    /// Admin: accept new sessions (`true`) or drain (`false`, "Reject new clients").
    SetAccepting(bool),
    /// Admin: change "Max concurrent sessions" (at least 1). Lowering it below
    /// `connected` keeps the existing sessions and rejects new ones.
    SetMaxSessions(u32),
}

impl Event {
    fn name(&self) -> &'static str {
        match self {
            Event::HandshakeRequest { .. } => "HandshakeRequest",
            Event::SessionRequest { .. } => "SessionRequest",
            Event::SessionEnded { .. } => "SessionEnded",
            Event::ConnectionClosed { .. } => "ConnectionClosed",
            Event::WorkloadQuery { .. } => "WorkloadQuery",
            Event::RegistrySnapshot { .. } => "RegistrySnapshot",
            Event::RegistryFailed { .. } => "RegistryFailed",
            Event::WorkloadReport { .. } => "WorkloadReport",
            Event::PeerUnreachable { .. } => "PeerUnreachable",
            Event::SetAccepting(_) => "SetAccepting",
            Event::SetMaxSessions(_) => "SetMaxSessions",
        }
    }
}

/// One output of an [`Instance`], for the driver to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read the cluster's member rows; answer with [`Event::RegistrySnapshot`]
    /// or [`Event::RegistryFailed`] (silence times out after `registry_timeout`).
    QueryRegistry {
        /// Echo this in the answer.
        query_id: QueryId,
        /// The cluster whose members to read.
        cluster: String,
    },
    /// Send `query` to the peer; answer with [`Event::WorkloadReport`] or
    /// [`Event::PeerUnreachable`] (silence times out after `peer_timeout`).
    QueryPeer {
        /// The query's id (also inside `query`).
        query_id: QueryId,
        /// The peer.
        peer: InstanceId,
        /// Where it listens.
        endpoint: Endpoint,
        /// The message to send.
        query: WorkloadQuery,
    },
    /// Send `message` on connection `conn`.
    Reply {
        /// The connection the request came on.
        conn: ConnectionId,
        /// A handshake reply, session reply or workload report.
        message: Message,
    },
    /// Upsert this row into the registry with the current time.
    PublishHeartbeat(Heartbeat),
}

/// Counters of what the instance has done, for operators and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InstanceStats {
    /// Handshake requests received.
    pub handshakes: u64,
    /// Handshakes refused with `Busy` (too many waiting).
    pub refused_busy: u64,
    /// Handshakes refused with `WrongCluster`.
    pub refused_wrong_cluster: u64,
    /// Handshakes answered at once with this instance alone (standalone or
    /// `load_balance: false`).
    pub direct_replies: u64,
    /// Handshakes dropped because their connection closed while waiting.
    pub abandoned_handshakes: u64,
    /// Query rounds started.
    pub rounds: u64,
    /// Registry queries sent.
    pub registry_queries: u64,
    /// Registry queries that failed or timed out.
    pub registry_failures: u64,
    /// Ranked replies built from an old snapshot (or none) after registry trouble.
    pub stale_replies: u64,
    /// Peer workload queries sent.
    pub peer_queries: u64,
    /// Valid peer reports received.
    pub peer_reports: u64,
    /// Peers declared unreachable (including contradictory reports).
    pub peer_unreachable: u64,
    /// Peers that did not answer within `peer_timeout`.
    pub peer_silent: u64,
    /// Peer reports with `connected > max_sessions`, treated as unreachable.
    pub contradictory_reports: u64,
    /// Registry or peer answers for unknown, finished or mismatched queries.
    pub ignored_replies: u64,
    /// Snapshot rows left out by `limits.max_members`.
    pub members_dropped: u64,
    /// Reservations counted by herd control.
    pub reservations_made: u64,
    /// Reservations not counted because `limits.max_reservations` was reached.
    pub reservations_dropped: u64,
    /// Ranked replies sent.
    pub ranked_replies: u64,
    /// Sessions admitted.
    pub sessions_accepted: u64,
    /// Session requests rejected.
    pub sessions_rejected: u64,
    /// Sessions ended.
    pub sessions_ended: u64,
    /// Session ends for unknown or already ended sessions.
    pub ignored_session_ends: u64,
    /// Heartbeats published.
    pub heartbeats: u64,
    /// Workload queries from peers answered.
    pub workload_queries_answered: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Heartbeat,
    Registry,
    Peers,
}

impl TimerKind for Timer {
    const ALL: &'static [Self] = &[Timer::Heartbeat, Timer::Registry, Timer::Peers];
    fn index(self) -> usize {
        self as usize
    }
}

/// A registry row worth querying: `Serving`, not this instance, active when
/// received.
#[derive(Debug, Clone)]
struct CachedMember {
    id: InstanceId,
    endpoint: Endpoint,
    heartbeat_age: Duration,
}

#[derive(Debug)]
struct Snapshot {
    received_at: Instant,
    /// Sorted by id, one row per id.
    members: Vec<CachedMember>,
}

#[derive(Debug, Clone, Copy)]
enum PeerState {
    Waiting,
    Answered(Candidate),
    Unreachable,
}

#[derive(Debug)]
struct PeerSlot {
    /// Index into the snapshot's members; the snapshot cannot change while
    /// peer queries are out (only a registry answer replaces it).
    member: usize,
    state: PeerState,
}

#[derive(Debug)]
enum Phase {
    Registry { query_id: QueryId },
    Peers { first_query_id: QueryId, peers: Vec<PeerSlot>, outstanding: usize },
}

#[derive(Debug)]
struct Round {
    stale: bool,
    phase: Phase,
}

#[derive(Debug, Clone, Copy)]
struct PendingHandshake {
    conn: ConnectionId,
    request_id: u64,
    salt: u64,
}

/// Where a ranking candidate comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    Own,
    Peer(usize),
}

/// An AOS instance: ranks for clients, admits sessions, answers peers and
/// heartbeats into the registry. See the [module docs](self).
#[derive(Debug)]
pub struct Instance {
    config: InstanceConfig,
    accepting: bool,
    max_sessions: u32,
    connected: u32,
    sessions: HashSet<SessionId>,
    next_session_id: u64,
    next_query_id: u64,
    snapshot: Option<Snapshot>,
    round: Option<Round>,
    pending: Vec<PendingHandshake>,
    /// Expiry times of each member's reservations, oldest first.
    reservations: BTreeMap<InstanceId, VecDeque<Instant>>,
    reservation_count: usize,
    /// Each peer's `connected` in its last valid report, to tell how many
    /// predictions a new report covers.
    last_reported: BTreeMap<InstanceId, u32>,
    /// When each member last headed a reply, as a count of replies that
    /// reserved (see the module docs on ties); a member absent never did.
    last_headed: BTreeMap<InstanceId, u64>,
    headed_replies: u64,
    timers: TimerTable<3>,
    actions: VecDeque<Action>,
    now: Instant,
    stats: InstanceStats,
    scratch_candidates: Vec<Candidate>,
    scratch_sources: Vec<(InstanceId, Source)>,
    scratch_order: Vec<usize>,
}

impl Instance {
    /// A new instance at time `now`. Ids it hands out start from a point
    /// drawn from `rng_seed`, so a restarted instance ignores answers meant
    /// for its previous life. Unless standalone, its first heartbeat is
    /// queued at once so it registers immediately.
    pub fn new(config: InstanceConfig, now: Instant, rng_seed: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut rng = Rng::new(rng_seed);
        // Keep well away from wrap-around so ids stay monotonic for a lifetime.
        let next_query_id = rng.next_u64() >> 16;
        let next_session_id = rng.next_u64() >> 16;
        let mut instance = Instance {
            accepting: config.accepting,
            max_sessions: config.max_sessions,
            config,
            connected: 0,
            sessions: HashSet::new(),
            next_session_id,
            next_query_id,
            snapshot: None,
            round: None,
            pending: Vec::new(),
            reservations: BTreeMap::new(),
            reservation_count: 0,
            last_reported: BTreeMap::new(),
            last_headed: BTreeMap::new(),
            headed_replies: 0,
            timers: TimerTable::default(),
            actions: VecDeque::new(),
            now,
            stats: InstanceStats::default(),
            scratch_candidates: Vec::new(),
            scratch_sources: Vec::new(),
            scratch_order: Vec::new(),
        };
        instance.publish_heartbeat(now);
        Ok(instance)
    }

    // ----- getters -----

    /// The configuration it was built with (admin changes are in
    /// [`accepting`](Self::accepting) and [`max_sessions`](Self::max_sessions)).
    pub fn config(&self) -> &InstanceConfig {
        &self.config
    }

    /// This instance's id.
    pub fn id(&self) -> InstanceId {
        self.config.id
    }

    /// Sessions currently open here.
    pub fn connected(&self) -> u32 {
        self.connected
    }

    /// The current "Max concurrent sessions".
    pub fn max_sessions(&self) -> u32 {
        self.max_sessions
    }

    /// Whether new sessions are admitted (not draining).
    pub fn accepting(&self) -> bool {
        self.accepting
    }

    /// The figures this instance reports to peers and the registry. After
    /// `max_sessions` was lowered below `connected`, `connected` is reported
    /// as `max_sessions` (full), since reports never say `connected > max`.
    pub fn workload(&self) -> Workload {
        Workload::new(self.connected.min(self.max_sessions), self.max_sessions)
    }

    /// Counters.
    pub fn stats(&self) -> &InstanceStats {
        &self.stats
    }

    /// Handshakes waiting for the round in flight.
    pub fn pending_handshakes(&self) -> usize {
        self.pending.len()
    }

    /// Whether a query round is in flight.
    pub fn round_in_flight(&self) -> bool {
        self.round.is_some()
    }

    /// Reservations currently held by herd control (expired ones may linger
    /// until the next ranking purges them).
    pub fn reservations(&self) -> usize {
        self.reservation_count
    }

    /// Members in the cached registry snapshot (only `Serving` peers that
    /// were active when it was read).
    pub fn cached_members(&self) -> usize {
        self.snapshot.as_ref().map_or(0, |s| s.members.len())
    }

    /// An estimate of the heap and inline bytes this instance holds: its
    /// struct plus the capacity of every collection (strings inside
    /// endpoints included). For capacity planning, not exact accounting.
    pub fn memory_footprint(&self) -> usize {
        let endpoint_heap = |e: &Endpoint| e.host().len() + e.instance().map_or(0, str::len);
        let snapshot = self.snapshot.as_ref().map_or(0, |s| {
            s.members.capacity() * size_of::<CachedMember>()
                + s.members.iter().map(|m| endpoint_heap(&m.endpoint)).sum::<usize>()
        });
        let round = match &self.round {
            Some(Round { phase: Phase::Peers { peers, .. }, .. }) => peers.capacity() * size_of::<PeerSlot>(),
            _ => 0,
        };
        let reservations = self.reservations.len()
            * (size_of::<InstanceId>() + size_of::<VecDeque<Instant>>())
            + self.reservations.values().map(|q| q.capacity() * size_of::<Instant>()).sum::<usize>()
            + self.last_headed.len() * (size_of::<InstanceId>() + size_of::<u64>());
        // A HashSet slot holds the value plus one control byte.
        let sessions = self.sessions.capacity() * (size_of::<u64>() + 1);
        size_of::<Self>()
            + snapshot
            + round
            + reservations
            + sessions
            + self.pending.capacity() * size_of::<PendingHandshake>()
            + self.actions.capacity() * size_of::<Action>()
            + self.scratch_candidates.capacity() * size_of::<Candidate>()
            + self.scratch_sources.capacity() * size_of::<(InstanceId, Source)>()
            + self.scratch_order.capacity() * size_of::<usize>()
    }

    // ----- the machine contract -----

    /// One input at time `now` (a time earlier than one already seen counts
    /// as that time). Only a meaningless admin command is an error, and it
    /// leaves the machine unchanged; everything else, including answers for
    /// unknown ids, is handled or ignored.
    pub fn handle_event(&mut self, event: Event, now: Instant) -> Result<(), UsageError> {
        let now = self.advance(now);
        match event {
            Event::HandshakeRequest { conn, request } => self.on_handshake(conn, request, now),
            Event::SessionRequest { conn, request } => self.on_session_request(conn, request),
            Event::SessionEnded { session_id } => self.on_session_ended(session_id),
            Event::ConnectionClosed { conn } => {
                let before = self.pending.len();
                self.pending.retain(|p| p.conn != conn);
                self.stats.abandoned_handshakes += (before - self.pending.len()) as u64;
            }
            Event::WorkloadQuery { conn, query } => {
                self.stats.workload_queries_answered += 1;
                let report = WorkloadReport {
                    query_id: query.query_id,
                    id: self.config.id,
                    role: self.config.role,
                    accepting: self.accepting,
                    workload: self.workload(),
                };
                self.actions.push_back(Action::Reply { conn, message: Message::WorkloadReport(report) });
            }
            Event::RegistrySnapshot { query_id, members } => self.on_snapshot(query_id, members, now),
            Event::RegistryFailed { query_id, .. } => match &self.round {
                Some(Round { phase: Phase::Registry { query_id: q }, .. }) if *q == query_id => {
                    self.on_registry_trouble(now)
                }
                _ => self.stats.ignored_replies += 1,
            },
            Event::WorkloadReport { report } => self.on_report(report, now),
            Event::PeerUnreachable { query_id, peer, .. } => self.on_unreachable(query_id, peer, now),
            Event::SetAccepting(accepting) => {
                if accepting != self.accepting {
                    self.accepting = accepting;
                    self.publish_heartbeat(now);
                }
            }
            Event::SetMaxSessions(max) => {
                if max == 0 {
                    return Err(UsageError::InvalidArgument {
                        event: Event::SetMaxSessions(max).name(),
                        reason: "max_sessions must be at least 1",
                    });
                }
                if max != self.max_sessions {
                    self.max_sessions = max;
                    self.publish_heartbeat(now);
                }
            }
        }
        Ok(())
    }

    /// Time has reached [`poll_timeout`](Self::poll_timeout)'s deadline:
    /// fire every timer due at `now`. Extra calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        while let Some(timer) = self.timers.expire::<Timer>(now) {
            match timer {
                Timer::Heartbeat => self.publish_heartbeat(now),
                Timer::Registry => {
                    if matches!(&self.round, Some(Round { phase: Phase::Registry { .. }, .. })) {
                        self.on_registry_trouble(now);
                    }
                }
                Timer::Peers => {
                    if matches!(&self.round, Some(Round { phase: Phase::Peers { .. }, .. })) {
                        self.finish_round(now);
                    }
                }
            }
        }
    }

    /// The next action to carry out; drain to `None` after every input.
    pub fn poll_action(&mut self) -> Option<Action> {
        let action = self.actions.pop_front();
        if self.actions.is_empty() && self.actions.capacity() > KEPT_CAPACITY {
            // A burst's replies should not stay resident once delivered.
            self.actions.shrink_to(KEPT_CAPACITY);
        }
        action
    }

    /// The next deadline. While actions are queued it is the last time seen,
    /// so a driver that sleeps until it never hides them.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.actions.is_empty() {
            self.timers.next()
        } else {
            Some(self.now)
        }
    }

    // ----- internals -----

    fn advance(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    fn next_query_ids(&mut self, count: usize) -> QueryId {
        let first = self.next_query_id;
        self.next_query_id = self.next_query_id.wrapping_add(count as u64);
        QueryId(first)
    }

    fn publish_heartbeat(&mut self, now: Instant) {
        if self.config.role == Role::Standalone {
            // A standalone instance belongs to no cluster, so no registry.
            return;
        }
        self.stats.heartbeats += 1;
        self.actions.push_back(Action::PublishHeartbeat(Heartbeat {
            id: self.config.id,
            endpoint: self.config.endpoint.clone(),
            cluster: self.config.cluster.clone(),
            role: self.config.role,
            accepting: self.accepting,
            workload: self.workload(),
        }));
        self.timers.set(Timer::Heartbeat, now + self.config.heartbeat_interval);
    }

    fn own_candidate(&self) -> Candidate {
        Candidate {
            role: self.config.role,
            accepting: self.accepting,
            fresh: true,
            workload: Workload::new(self.connected, self.max_sessions),
        }
    }

    fn reply_handshake(&mut self, conn: ConnectionId, request_id: u64, outcome: HandshakeOutcome) {
        let message = Message::HandshakeReply(HandshakeReply { request_id, outcome });
        self.actions.push_back(Action::Reply { conn, message });
    }

    fn on_handshake(&mut self, conn: ConnectionId, request: HandshakeRequest, now: Instant) {
        self.stats.handshakes += 1;
        if let Some(wanted) = &request.cluster {
            if self.config.cluster.as_deref() != Some(wanted.as_str()) {
                self.stats.refused_wrong_cluster += 1;
                let outcome = HandshakeOutcome::Refused(RefuseReason::WrongCluster);
                return self.reply_handshake(conn, request.request_id, outcome);
            }
        }
        if self.config.role == Role::Standalone || !request.load_balance {
            // The answering instance is the target: itself if it can admit, by
            // its live figures (admission stays the authority).
            self.stats.direct_replies += 1;
            let own = self.own_candidate();
            let serves = own.role != Role::LoadBalancerOnly && own.accepting && !own.workload.is_full();
            let entries = if serves {
                vec![RankedEntry {
                    id: self.config.id,
                    endpoint: self.config.endpoint.clone(),
                    workload: own.workload,
                }]
            } else {
                Vec::new()
            };
            let outcome = HandshakeOutcome::Ranked(RankedList { stale: false, entries });
            return self.reply_handshake(conn, request.request_id, outcome);
        }
        if self.pending.len() >= self.config.limits.max_pending_handshakes {
            self.stats.refused_busy += 1;
            return self.reply_handshake(
                conn,
                request.request_id,
                HandshakeOutcome::Refused(RefuseReason::Busy),
            );
        }
        self.pending.push(PendingHandshake { conn, request_id: request.request_id, salt: request.salt });
        if self.round.is_none() {
            self.start_round(now);
        }
    }

    fn start_round(&mut self, now: Instant) {
        self.stats.rounds += 1;
        let fresh = self
            .snapshot
            .as_ref()
            .is_some_and(|s| now.saturating_duration_since(s.received_at) < self.config.snapshot_ttl);
        if fresh {
            self.query_peers(now, false);
        } else {
            let query_id = self.next_query_ids(1);
            self.stats.registry_queries += 1;
            let cluster = self.config.cluster.clone().unwrap_or_default();
            self.actions.push_back(Action::QueryRegistry { query_id, cluster });
            self.timers.set(Timer::Registry, now + self.config.registry_timeout);
            self.round = Some(Round { stale: false, phase: Phase::Registry { query_id } });
        }
    }

    fn on_snapshot(&mut self, query_id: QueryId, members: Vec<MemberRecord>, now: Instant) {
        if !matches!(&self.round, Some(Round { phase: Phase::Registry { query_id: q }, .. }) if *q == query_id)
        {
            self.stats.ignored_replies += 1;
            return;
        }
        self.timers.stop(Timer::Registry);
        let own_id = self.config.id;
        let ttl = self.config.member_ttl;
        let mut kept: Vec<CachedMember> = members
            .into_iter()
            .filter(|m| m.role == Role::Serving && m.id != own_id && m.heartbeat_age < ttl)
            .map(|m| CachedMember { id: m.id, endpoint: m.endpoint, heartbeat_age: m.heartbeat_age })
            .collect();
        // Freshest row first within an id, so dedup keeps it.
        kept.sort_by(|a, b| a.id.cmp(&b.id).then(a.heartbeat_age.cmp(&b.heartbeat_age)));
        kept.dedup_by_key(|m| m.id);
        let cap = self.config.limits.max_members;
        if kept.len() > cap {
            self.stats.members_dropped += (kept.len() - cap) as u64;
            kept.truncate(cap);
        }
        self.snapshot = Some(Snapshot { received_at: now, members: kept });
        self.query_peers(now, false);
    }

    fn on_registry_trouble(&mut self, now: Instant) {
        self.timers.stop(Timer::Registry);
        self.stats.registry_failures += 1;
        // With the last snapshot if any; with none, only this instance is known.
        self.query_peers(now, true);
    }

    fn query_peers(&mut self, now: Instant, stale: bool) {
        let ttl = self.config.member_ttl;
        let mut peers = Vec::new();
        if let Some(snapshot) = &self.snapshot {
            let since = now.saturating_duration_since(snapshot.received_at);
            for (i, m) in snapshot.members.iter().enumerate() {
                if m.heartbeat_age.saturating_add(since) < ttl {
                    peers.push(PeerSlot { member: i, state: PeerState::Waiting });
                }
            }
        }
        let first_query_id = self.next_query_ids(peers.len());
        if let Some(snapshot) = &self.snapshot {
            for (k, slot) in peers.iter().enumerate() {
                let member = &snapshot.members[slot.member];
                let query_id = QueryId(first_query_id.0.wrapping_add(k as u64));
                self.actions.push_back(Action::QueryPeer {
                    query_id,
                    peer: member.id,
                    endpoint: member.endpoint.clone(),
                    query: WorkloadQuery { query_id },
                });
            }
        }
        self.stats.peer_queries += peers.len() as u64;
        let outstanding = peers.len();
        self.round = Some(Round { stale, phase: Phase::Peers { first_query_id, peers, outstanding } });
        if outstanding == 0 {
            self.finish_round(now);
        } else {
            self.timers.set(Timer::Peers, now + self.config.peer_timeout);
        }
    }

    /// The waiting peer slot that `query_id` names, if it names `peer`.
    fn waiting_slot(&mut self, query_id: QueryId, peer: InstanceId) -> Option<&mut PeerSlot> {
        let Some(Round { phase: Phase::Peers { first_query_id, peers, .. }, .. }) = &mut self.round else {
            return None;
        };
        let index = usize::try_from(query_id.0.wrapping_sub(first_query_id.0)).ok()?;
        let slot = peers.get_mut(index)?;
        let member = self.snapshot.as_ref()?.members.get(slot.member)?;
        (member.id == peer && matches!(slot.state, PeerState::Waiting)).then_some(slot)
    }

    fn resolve_one(&mut self, now: Instant) {
        if let Some(Round { phase: Phase::Peers { outstanding, .. }, .. }) = &mut self.round {
            *outstanding -= 1;
            if *outstanding == 0 {
                self.finish_round(now);
            }
        }
    }

    fn on_report(&mut self, report: WorkloadReport, now: Instant) {
        let Some(slot) = self.waiting_slot(report.query_id, report.id) else {
            self.stats.ignored_replies += 1;
            return;
        };
        if report.workload.connected > report.workload.max_sessions {
            // A report that contradicts itself cannot be trusted at all.
            slot.state = PeerState::Unreachable;
            self.stats.contradictory_reports += 1;
            self.stats.peer_unreachable += 1;
        } else {
            slot.state = PeerState::Answered(Candidate {
                role: report.role,
                accepting: report.accepting,
                fresh: true,
                workload: report.workload,
            });
            self.stats.peer_reports += 1;
            // Live figures cover the predictions that came true since the
            // last report (its rise in `connected`), oldest first; the rest
            // are sessions still in flight from client to peer and stay
            // predicted until they land or expire.
            let previous = if self.last_reported.len() < self.config.limits.max_members
                || self.last_reported.contains_key(&report.id)
            {
                self.last_reported.insert(report.id, report.workload.connected)
            } else {
                None
            };
            let covered =
                previous.map_or(usize::MAX, |p| report.workload.connected.saturating_sub(p) as usize);
            if let Some(queue) = self.reservations.get_mut(&report.id) {
                let n = covered.min(queue.len());
                queue.drain(..n);
                self.reservation_count -= n;
                if queue.is_empty() {
                    self.reservations.remove(&report.id);
                }
            }
        }
        self.resolve_one(now);
    }

    fn on_unreachable(&mut self, query_id: QueryId, peer: InstanceId, now: Instant) {
        let Some(slot) = self.waiting_slot(query_id, peer) else {
            self.stats.ignored_replies += 1;
            return;
        };
        slot.state = PeerState::Unreachable;
        self.stats.peer_unreachable += 1;
        self.resolve_one(now);
    }

    /// Live reservations on `id` at `now`, after dropping expired ones.
    fn live_reservations(&mut self, id: InstanceId, now: Instant) -> u32 {
        let Some(queue) = self.reservations.get_mut(&id) else { return 0 };
        while queue.front().is_some_and(|&expiry| expiry <= now) {
            queue.pop_front();
            self.reservation_count -= 1;
        }
        let live = queue.len();
        if live == 0 {
            self.reservations.remove(&id);
        }
        u32::try_from(live).unwrap_or(u32::MAX)
    }

    fn purge_all_reservations(&mut self, now: Instant) {
        let ids: Vec<InstanceId> = self.reservations.keys().copied().collect();
        for id in ids {
            self.live_reservations(id, now);
        }
    }

    fn reserve(&mut self, id: InstanceId, now: Instant) -> bool {
        if self.reservation_count >= self.config.limits.max_reservations {
            self.purge_all_reservations(now);
            if self.reservation_count >= self.config.limits.max_reservations {
                self.stats.reservations_dropped += 1;
                return false;
            }
        }
        self.reservations.entry(id).or_default().push_back(now + self.config.reservation_ttl);
        self.reservation_count += 1;
        self.stats.reservations_made += 1;
        true
    }

    fn finish_round(&mut self, now: Instant) {
        self.timers.stop(Timer::Peers);
        self.timers.stop(Timer::Registry);
        let Some(round) = self.round.take() else { return };
        let (peers, stale) = match round.phase {
            Phase::Peers { peers, .. } => (peers, round.stale),
            // Not reached: rounds finish only from the peer phase; answer with self alone.
            Phase::Registry { .. } => (Vec::new(), true),
        };
        self.stats.peer_silent +=
            peers.iter().filter(|p| matches!(p.state, PeerState::Waiting)).count() as u64;

        // Candidates ordered by id, so tie rotation by salt is deterministic.
        let mut sources = std::mem::take(&mut self.scratch_sources);
        let mut candidates = std::mem::take(&mut self.scratch_candidates);
        let mut order = std::mem::take(&mut self.scratch_order);
        sources.clear();
        candidates.clear();
        let own_id = self.config.id;
        let mut own_placed = false;
        if let Some(snapshot) = &self.snapshot {
            for slot in &peers {
                if let PeerState::Answered(candidate) = slot.state {
                    let id = snapshot.members[slot.member].id;
                    if !own_placed && own_id < id {
                        sources.push((own_id, Source::Own));
                        candidates.push(self.own_candidate());
                        own_placed = true;
                    }
                    sources.push((id, Source::Peer(slot.member)));
                    candidates.push(candidate);
                }
            }
        }
        if !own_placed {
            sources.push((own_id, Source::Own));
            candidates.push(self.own_candidate());
        }
        let herd = self.config.herd_control;
        if herd {
            for (i, &(id, _)) in sources.iter().enumerate() {
                let extra = self.live_reservations(id, now);
                let w = &mut candidates[i].workload;
                w.connected = w.connected.saturating_add(extra);
            }
            if self.last_headed.len() > self.config.limits.max_members {
                // Members that left keep no record; `sources` is sorted by id.
                self.last_headed.retain(|id, _| sources.binary_search_by_key(id, |&(s, _)| s).is_ok());
            }
        }

        let pending = std::mem::take(&mut self.pending);
        for handshake in &pending {
            rank_into(&candidates, handshake.salt, &mut order);
            if herd {
                self.least_recently_headed_first(&candidates, &sources, &mut order);
            }
            let entries: Vec<RankedEntry> = order
                .iter()
                .take(self.config.max_list_len)
                .map(|&i| {
                    let (id, source) = sources[i];
                    let endpoint = match (source, &self.snapshot) {
                        (Source::Peer(m), Some(snapshot)) => snapshot.members[m].endpoint.clone(),
                        _ => self.config.endpoint.clone(),
                    };
                    RankedEntry { id, endpoint, workload: candidates[i].workload }
                })
                .collect();
            if herd {
                if let Some(&first) = order.first() {
                    self.headed_replies += 1;
                    self.last_headed.insert(sources[first].0, self.headed_replies);
                    if self.reserve(sources[first].0, now) {
                        let w = &mut candidates[first].workload;
                        w.connected = w.connected.saturating_add(1);
                    }
                }
            }
            self.stats.ranked_replies += 1;
            if stale {
                self.stats.stale_replies += 1;
            }
            let outcome = HandshakeOutcome::Ranked(RankedList { stale, entries });
            self.reply_handshake(handshake.conn, handshake.request_id, outcome);
        }
        // Reuse the buffer, but let a burst's worth of it go.
        let mut pending = pending;
        pending.clear();
        pending.shrink_to(KEPT_CAPACITY);
        if self.pending.is_empty() {
            self.pending = pending;
        }
        self.scratch_sources = sources;
        self.scratch_candidates = candidates;
        self.scratch_order = order;
    }

    /// Moves the member of the head's tie group (equal predicted workload,
    /// hence equal free sessions) that headed a reply least recently to the
    /// front; members that never did come first, in the salt's order.
    fn least_recently_headed_first(
        &self,
        candidates: &[Candidate],
        sources: &[(InstanceId, Source)],
        order: &mut [usize],
    ) {
        let Some(&head) = order.first() else { return };
        let tied = order.iter().take_while(|&&i| candidates[i].workload == candidates[head].workload).count();
        let oldest = order[..tied]
            .iter()
            .enumerate()
            .min_by_key(|&(pos, &i)| (self.last_headed.get(&sources[i].0).copied().unwrap_or(0), pos))
            .map_or(0, |(pos, _)| pos);
        order[..=oldest].rotate_right(1);
    }

    fn on_session_request(&mut self, conn: ConnectionId, request: SessionRequest) {
        let outcome = if self.config.role == Role::LoadBalancerOnly {
            SessionOutcome::Rejected(RejectReason::NotServing)
        } else if !self.accepting {
            SessionOutcome::Rejected(RejectReason::Draining)
        } else if self.connected >= self.max_sessions {
            SessionOutcome::Rejected(RejectReason::Full)
        } else if self.sessions.len() >= self.config.limits.max_tracked_sessions {
            SessionOutcome::Rejected(RejectReason::Busy)
        } else {
            let session_id = SessionId(self.next_session_id);
            self.next_session_id = self.next_session_id.wrapping_add(1);
            self.sessions.insert(session_id);
            self.connected += 1;
            // The prediction came true: the oldest own reservation is now a session.
            let own = self.config.id;
            if self.live_reservations(own, self.now) > 0 {
                if let Some(queue) = self.reservations.get_mut(&own) {
                    queue.pop_front();
                    self.reservation_count -= 1;
                    if queue.is_empty() {
                        self.reservations.remove(&own);
                    }
                }
            }
            SessionOutcome::Accepted { session_id }
        };
        match outcome {
            SessionOutcome::Accepted { .. } => self.stats.sessions_accepted += 1,
            SessionOutcome::Rejected(_) => self.stats.sessions_rejected += 1,
        }
        let message = Message::SessionReply(SessionReply { request_id: request.request_id, outcome });
        self.actions.push_back(Action::Reply { conn, message });
    }

    fn on_session_ended(&mut self, session_id: SessionId) {
        if self.sessions.remove(&session_id) {
            self.connected -= 1;
            self.stats.sessions_ended += 1;
        } else {
            self.stats.ignored_session_ends += 1;
        }
    }
}
