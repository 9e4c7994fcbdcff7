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
//! (and counted in [`InstanceStats::ignored_replies`]). A decoded message
//! becomes an event through [`Event::from_message`] (inbound connections) or
//! [`Event::from_peer_reply`] (peer links), the one conversion on this side.
//!
//! # Sessions and connections
//!
//! A connection holds at most one session (SPEC 3.5), and the machine keeps
//! the pairing: a second `SessionRequest` on it is rejected with
//! `AlreadyInSession`, and [`Event::ConnectionClosed`] ends the session it
//! holds. After the accepting reply, [`Action::SessionOpened`] tells the
//! driver the connection now belongs to the application. `connected` is the
//! number of connections holding a session, derived, never counted by hand.
//!
//! Files: `event.rs` (inputs, outputs, counters), `round.rs` (the query
//! round), `fanout.rs` (whom a bounded round asks), `reply.rs` (the round's
//! candidates and replies), `rerank.rs` (the order kept between replies),
//! `herd.rs` (reservations and the tie rule),
//! `admission.rs` (sessions and admission); this file holds the machine
//! contract, the embedder's commands and heartbeats.
//!
//! # Query rounds
//!
//! A load-balanced handshake joins the round in flight or starts one. A round
//! asks the registry for a snapshot (unless the cached one is younger than
//! `snapshot_ttl`), then asks active `Serving` peers for their live workload.
//! It ends when every peer asked has answered or was declared unreachable, or
//! `peer_timeout` after the peer queries went out; then every waiting
//! handshake gets its ranked list, in arrival order, each with its own salt.
//! A burst of N handshakes therefore costs one registry query and one round
//! of peer queries, not N of each.
//!
//! # Whom a round asks ([`FanOut`](crate::config::FanOut))
//!
//! While the snapshot holds at most `fan_out.full_up_to` active peers, a round
//! asks every one of them (the seed's behaviour, n - 1 queries). Above it a
//! round is *bounded*: it asks live only
//! - the `fan_out.live` (k) best members by their freshest figures (each
//!   row's `workload` as of its last heartbeat, or a live report asked for
//!   later, plus this instance's live reservations on it), in exactly the
//!   order the round's first reply would have,
//! - as many again of the members whose figures are the oldest, once older
//!   than `snapshot_ttl` (rows do not show the sessions that ended since, so
//!   a member that looks busier than it is would otherwise never be asked),
//!   and
//! - every active member whose figures are older than `fan_out.max_figure_age`
//!   (heartbeat age plus the snapshot's own age), or contradict themselves.
//!
//! Everyone else is ranked on those figures, exactly like a member
//! that answered (a member asked but silent or unreachable is left out, as in
//! a full round). Each asked member found unreachable (or whose report
//! contradicts itself) is replaced at once by the next best member not yet
//! asked, within the round's `peer_timeout`: after a crash the dead members'
//! rows keep their old figures, the best in the cluster, until `member_ttl`,
//! and without replacements they would head the lists unasked (the
//! simulator's `crash-1000`: 4.05 attempts per session and 1.1 s to a
//! session at p99, against 3.00 and 76 ms with them). A member found
//! unreachable is then neither asked nor listed by later bounded rounds until
//! its row shows a heartbeat after the failure. Peer queries per round are
//! thus at most 2k plus the stale members plus one per member found
//! unreachable, whatever the cluster's size, counted in
//! [`InstanceStats::peer_queries`] (the replacements also in
//! [`InstanceStats::replacement_queries`]).
//!
//! Staleness allowed: a figure not asked live is at most `max_figure_age` old
//! (default 10 s = 2 x the default `heartbeat_interval`), made of the heartbeat
//! age (below `heartbeat_interval` while the member beats on time) plus the
//! snapshot's age (below `snapshot_ttl`). A member whose registry figures say
//! full or draining is not asked and not listed until a newer heartbeat says
//! otherwise.
//!
//! Why balance stays close to the goals: the head of a list, the member
//! that takes the next arrival, comes from the k best, and those are asked
//! live, so the head is ranked on exact figures unless every one of the k
//! grew past the best unasked member's registry figure since its heartbeat. Herd control still
//! predicts: every reply reserves its head, and the k to ask are chosen by
//! predicted figures, so consecutive rounds ask (and head) different members
//! of a tied level. A new snapshot's rows count for herd control as reports
//! measured at their heartbeat: reservations on members nobody asks are
//! covered once their clients had ample time to land before that heartbeat
//! (the row counts those sessions), not only by expiry.
//!
//! What it costs, measured with the simulator's `crash` scenario scaled up
//! (a member dies, its clients return within 500 ms through two balancers;
//! peak arrivals per 100 ms window over the fair share, p50 / p99 over 10
//! seeds): with 47 and 63 peers and k = 8, 1.24 / 1.49 and 1.25 / 1.45
//! against 1.24 / 1.29 and 1.23 / 1.26 with full fan-out. The median holds;
//! the tail is what two balancers that cannot see each other's sessions on
//! the members they did not ask cost. With 32 peers bounding cost the median
//! too (1.36 against 1.21), hence full fan-out up to 32 peers by default.
//!
//! Within a coalesced round the candidates stay sorted between replies and
//! only the head (and the member whose reservation it replaced) is
//! re-inserted, by binary search: each further handshake costs O(log n)
//! comparisons plus copying its list out, not a full O(n log n) sort, and
//! gets exactly the list the full sort would give.
//!
//! # Herd control
//!
//! With `herd_control` on (the default), each reply counts a provisional
//! session (a reservation) on the list's first entry for `reservation_ttl`, so
//! the next handshake ranks by predicted load. A client connection holds at
//! most one live reservation: a new handshake on it replaces the old one, and
//! its close releases it (the client keeps it open while it walks the list, so
//! the close means it landed or gave up; counted in
//! [`InstanceStats::reservations_released`]). Landings cancel reservations
//! one for one until the landed clients' closes release them: a valid report's
//! rise since the member's last one, and each session admitted here (a session
//! on the handshake's own connection removes exactly that reservation). Which
//! reservation came true is not known, and under load clients land out of
//! order, so removing the oldest at the landing and the closer's own at its
//! close would count each landing twice. A released reservation on a peer
//! stays predicted until figures show it (a report asked for after it, or as
//! many as the report's rise of those while it was out; a registry row
//! measured after it). No reservation is cleared for its age: a balancer's
//! own clients land fastest, so no learned landing time says when a peer's
//! client had ample time (SPEC 2.6 reads otherwise; see `herd.rs`).
//! Reservations nobody covered expire unused (counted in
//! [`InstanceStats::reservations_expired_unused`]). Each live reservation
//! weighs the share of this instance's reservations on itself of the last
//! `reservation_ttl` that became sessions (at least 1/16, a fraction compared
//! exactly), so handshakes that never become sessions count for what they are
//! worth, and a flood is forgotten a ttl after it stops. A member only *predicted* full is listed
//! after all others, never dropped, so handshakes that never become sessions
//! cannot empty the lists (SPEC 2.4, 2.6).
//!
//! Among the members tied with the head of a list (equal predicted load and
//! free sessions), the ones that headed a reply least recently go first; the
//! request's salt still orders members that never headed one. Once every
//! tied member has taken one arrival the predicted loads tie again and carry
//! no trace of who went last, so the salt alone could hand the next arrival
//! straight back to the member that just took one (a 1-in-k chance at every
//! level of k members). Least recently headed first turns the levels into a
//! round robin, the most even spread one balancer can give.
//!
//! With herd control off, a reply is exactly [`rank`](crate::workload::rank)
//! of the reported figures.

mod admission;
mod event;
mod fanout;
mod herd;
#[cfg(any(fuzzing, feature = "fuzzing"))]
pub(crate) use herd::check::live_each_matches_live;
mod reply;
mod rerank;
mod round;
mod share;
mod snapshot;

use std::collections::VecDeque;
use std::mem::size_of;
use std::time::Instant;

pub use self::event::{Action, ConnectionId, Event, InstanceStats};

use self::admission::Sessions;
use self::fanout::FanOutState;
use self::herd::Herd;
use self::reply::Ranking;
use self::round::{PendingHandshake, Round};
use self::snapshot::{CachedMember, Snapshot};
use crate::config::{ConfigError, InstanceConfig};
use crate::endpoint::Endpoint;
use crate::error::UsageError;
use crate::registry::Heartbeat;
use crate::rng::Rng;
use crate::timer::{TimerKind, TimerTable};
use crate::wire::{HandshakeOutcome, HandshakeReply, Message, QueryId, WorkloadReport};
use crate::workload::{Candidate, InstanceId, Role, Workload};

/// Queue capacity kept after a burst drains; beyond it, memory is returned.
const KEPT_CAPACITY: usize = 256;

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

/// An AOS instance: ranks for clients, admits sessions, answers peers and
/// heartbeats into the registry. See the [module docs](self).
///
/// Methods: getters ([`connected`](Self::connected), [`workload`](Self::workload),
/// [`stats`](Self::stats), ...); the embedder's commands
/// ([`set_accepting`](Self::set_accepting), [`set_max_sessions`](Self::set_max_sessions),
/// [`set_saturated`](Self::set_saturated)); inputs ([`handle_event`](Self::handle_event),
/// [`handle_timeout`](Self::handle_timeout)); outputs ([`poll_action`](Self::poll_action),
/// [`poll_timeout`](Self::poll_timeout)).
#[derive(Debug)]
pub struct Instance {
    config: InstanceConfig,
    /// Admin: admitting new sessions ("Reject new clients" off).
    accepting: bool,
    /// The driver is at its connection limit: advertise not accepting.
    saturated: bool,
    max_sessions: u32,
    sessions: Sessions,
    next_session_id: u64,
    next_query_id: u64,
    snapshot: Option<Snapshot>,
    round: Option<Round>,
    pending: Vec<PendingHandshake>,
    herd: Herd,
    fan_out: FanOutState,
    ranking: Ranking,
    timers: TimerTable<3>,
    actions: VecDeque<Action>,
    now: Instant,
    stats: InstanceStats,
}

impl Instance {
    /// A new instance at time `now`. Ids it hands out start from a point
    /// drawn from `rng_seed`, so a restarted instance ignores answers meant
    /// for its previous life. Unless standalone, its first heartbeat is
    /// queued at once so it registers immediately.
    pub fn new(config: InstanceConfig, now: Instant, rng_seed: u64) -> Result<Self, ConfigError> {
        let own_id = config.id;
        config.validate()?;
        let mut rng = Rng::new(rng_seed);
        // Keep well away from wrap-around so ids stay monotonic for a lifetime.
        let next_query_id = rng.next_u64() >> 16;
        let next_session_id = rng.next_u64() >> 16;
        let mut instance = Instance {
            accepting: config.accepting,
            saturated: false,
            max_sessions: config.max_sessions,
            config,
            sessions: Sessions::default(),
            next_session_id,
            next_query_id,
            snapshot: None,
            round: None,
            pending: Vec::new(),
            herd: Herd::new(own_id),
            fan_out: FanOutState::default(),
            ranking: Ranking::default(),
            timers: TimerTable::default(),
            actions: VecDeque::new(),
            now,
            stats: InstanceStats::default(),
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

    /// Sessions open here: the number of connections holding one.
    pub fn connected(&self) -> u32 {
        self.sessions.count()
    }

    /// The current "Max concurrent sessions".
    pub fn max_sessions(&self) -> u32 {
        self.max_sessions
    }

    /// Whether the admin setting admits new sessions (not draining).
    pub fn accepting(&self) -> bool {
        self.accepting
    }

    /// Whether the driver reported itself at its connection limit.
    pub fn saturated(&self) -> bool {
        self.saturated
    }

    /// What peers, the registry and clients are told: accepting and not
    /// saturated.
    pub fn advertised_accepting(&self) -> bool {
        self.accepting && !self.saturated
    }

    /// The figures this instance reports to peers and the registry. After
    /// `max_sessions` was lowered below `connected`, `connected` is reported
    /// as `max_sessions` (full), since reports never say `connected > max`.
    pub fn workload(&self) -> Workload {
        Workload::new(self.connected().min(self.max_sessions), self.max_sessions)
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
        self.herd.total()
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
        size_of::<Self>()
            + snapshot
            + self.round.as_ref().map_or(0, Round::heap_bytes)
            + self.herd.heap_bytes()
            + self.fan_out.heap_bytes()
            + self.sessions.heap_bytes()
            + self.ranking.heap_bytes()
            + self.pending.capacity() * size_of::<PendingHandshake>()
            + self.actions.capacity() * size_of::<Action>()
    }

    // ----- the embedder's commands -----

    /// Admit new sessions (`true`) or drain (`false`, AX's "Reject new
    /// clients"). Existing sessions stay. A change is published at once.
    pub fn set_accepting(&mut self, accepting: bool, now: Instant) {
        let now = self.advance(now);
        if accepting != self.accepting {
            self.accepting = accepting;
            self.publish_heartbeat(now);
        }
    }

    /// Change "Max concurrent sessions" (at least 1). Lowering it below
    /// `connected` keeps the existing sessions and rejects new ones.
    pub fn set_max_sessions(&mut self, max_sessions: u32, now: Instant) -> Result<(), UsageError> {
        if max_sessions == 0 {
            return Err(UsageError::InvalidArgument {
                event: "set_max_sessions",
                reason: "max_sessions must be at least 1",
            });
        }
        let now = self.advance(now);
        if max_sessions != self.max_sessions {
            self.max_sessions = max_sessions;
            self.publish_heartbeat(now);
        }
        Ok(())
    }

    /// The driver is at (`true`) or back below (`false`) its connection
    /// limit (SPEC "Drivers: limits"). While saturated the instance
    /// advertises itself as not accepting, in heartbeats, workload reports
    /// and its own rankings, without touching the admin setting.
    pub fn set_saturated(&mut self, saturated: bool, now: Instant) {
        let now = self.advance(now);
        if saturated != self.saturated {
            self.saturated = saturated;
            self.publish_heartbeat(now);
        }
    }

    // ----- the machine contract -----

    /// One input at time `now` (a time earlier than one already seen counts
    /// as that time, and is counted in [`InstanceStats::clamped`]). Only a
    /// meaningless admin command is an error, and it leaves the machine
    /// unchanged; everything else, including answers for unknown ids, is
    /// handled or ignored.
    pub fn handle_event(&mut self, event: Event, now: Instant) -> Result<(), UsageError> {
        if let Event::SetMaxSessions(0) = event {
            return Err(UsageError::InvalidArgument {
                event: event.name(),
                reason: "max_sessions must be at least 1",
            });
        }
        let now = self.advance(now);
        match event {
            Event::HandshakeRequest { conn, request } => self.on_handshake(conn, request, now),
            Event::SessionRequest { conn, request } => self.on_session_request(conn, request, None),
            Event::SessionDenied { conn, request, reason } => {
                self.on_session_request(conn, request, Some(reason))
            }
            Event::SessionEnded { session_id } => self.on_session_ended(session_id),
            Event::ConnectionClosed { conn } => self.on_connection_closed(conn),
            Event::WorkloadQuery { conn, query } => {
                self.stats.workload_queries_answered += 1;
                let report = WorkloadReport {
                    query_id: query.query_id,
                    id: self.config.id,
                    role: self.config.role,
                    accepting: self.advertised_accepting(),
                    workload: self.workload(),
                };
                self.actions.push_back(Action::Reply { conn, message: Message::WorkloadReport(report) });
            }
            Event::RegistrySnapshot { query_id, members } => self.on_snapshot(query_id, members, now),
            Event::RegistryFailed { query_id, .. } => self.on_registry_failed(query_id, now),
            Event::WorkloadReport { report } => self.on_report(report, now),
            Event::PeerUnreachable { query_id, peer, .. } => self.on_unreachable(query_id, peer, now),
            Event::SetAccepting(accepting) => self.set_accepting(accepting, now),
            Event::SetMaxSessions(max) => self.set_max_sessions(max, now)?,
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
                Timer::Registry => self.on_registry_timeout(now),
                Timer::Peers => self.on_peer_timeout(now),
            }
        }
    }

    /// The next action to carry out; drain to `None` after every input.
    #[must_use]
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
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.actions.is_empty() {
            self.timers.next()
        } else {
            Some(self.now)
        }
    }

    // ----- internals -----

    /// Time never goes backwards inside; an earlier `now` is clamped and
    /// counted, exactly as the Connector does.
    fn advance(&mut self, now: Instant) -> Instant {
        if now < self.now {
            self.stats.clamped += 1;
        } else {
            self.now = now;
        }
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
            accepting: self.advertised_accepting(),
            workload: self.workload(),
        }));
        self.timers.set(Timer::Heartbeat, now + self.config.heartbeat_interval);
    }

    fn own_candidate(&self) -> Candidate {
        Candidate {
            role: self.config.role,
            accepting: self.advertised_accepting(),
            workload: Workload::new(self.connected(), self.max_sessions),
        }
    }

    fn reply_handshake(&mut self, conn: ConnectionId, request_id: u64, outcome: HandshakeOutcome) {
        let message = Message::HandshakeReply(HandshakeReply { request_id, outcome });
        self.actions.push_back(Action::Reply { conn, message });
    }
}
