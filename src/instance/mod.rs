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
//! the pairing: after the accepting reply, [`Action::SessionOpened`] tells
//! the driver the connection now belongs to the application, and
//! [`Event::ConnectionClosed`] ends the session it holds.
//!
//! # Replies
//!
//! A load-balanced handshake joins the query round in flight or starts one;
//! when the round ends, every waiting handshake gets its ranked list. With
//! `herd_control` off, a reply is exactly [`rank`](crate::workload::rank) of
//! the reported figures; with it on (the default), members are ranked by
//! their figures predicted with this instance's reservations (SPEC 2.5, 2.6).
//!
//! # Where each rule lives
//!
//! - `round.rs`: the query round (SPEC 2.2-2.7): when it starts and ends,
//!   and the replacement of asked members found unreachable.
//! - `fanout.rs`: whom a bounded round asks
//!   ([`FanOut`](crate::config::FanOut)), and why balance holds with it.
//! - `snapshot.rs`: the registry rows a round uses, each with the freshest
//!   figures known.
//! - `reply.rs`: the round's candidates and replies.
//! - `rerank.rs`: the order kept between the replies of one round.
//! - `herd.rs`: herd control: reservations, landings, releases and the tie
//!   rule; `share.rs`: how much a reservation predicts.
//! - `admission.rs`: which session requests become sessions (SPEC 3.2, 3.5).
//! - `event.rs`: inputs, outputs and counters.
//! - this file: the machine contract, the embedder's commands and
//!   heartbeats.

mod admission;
mod event;
mod fanout;
mod herd;
/// Test support (feature `test-support`): herd control's one-walk read
/// against a look-up per member, for the `herd_read` fuzz body.
#[cfg(feature = "test-support")]
#[doc(hidden)]
pub use herd::check::live_each_matches_live;
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
        let now = self.clamp(now);
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
        let now = self.clamp(now);
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
        let now = self.clamp(now);
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
        let now = self.clamp(now);
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
        let now = self.clamp(now);
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
    fn clamp(&mut self, now: Instant) -> Instant {
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
