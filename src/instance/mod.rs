//! The instance machine, [`Instance`]: ranks for clients (phase 2), admits
//! sessions (the server half of phase 3), answers peers' workload queries
//! and heartbeats into the registry. Its inputs and outputs are in
//! [`Event`] and [`Action`], its counters in [`InstanceStats`].

mod admission;
mod commands;
mod event;
mod fanout;
mod herd;
/// Test support (feature `test-support`): herd control's one-walk read
/// against a look-up per member, for the `herd_read` fuzz body.
#[cfg(feature = "test-support")]
#[doc(hidden)]
pub use herd::check::live_each_matches_live;
mod rerank;
mod round;
mod share;
mod snapshot;
mod stats;

use std::collections::VecDeque;
use std::mem::size_of;
use std::time::Instant;

pub use self::commands::PURGE_AFTER_MEMBER_TTLS;
pub use self::event::{Action, ConnectionId, Event};
pub use self::stats::{AdmissionStats, FanOutStats, HerdStats, InstanceStats, RoundStats};

use self::admission::Admission;
use self::fanout::FanOutControl;
use self::herd::Herd;
use self::round::{Cx, QueryRound};
use crate::config::{ConfigError, InstanceConfig};
use crate::error::UsageError;
use crate::rng::Rng;
use crate::timer::{TimerKind, TimerTable};
use crate::wire::{Message, RejectReason, SessionOutcome, SessionReply, SessionRequest, WorkloadReport};
use crate::workload::{InstanceId, Workload};

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

/// The machine's own counters (the subsystems keep theirs).
#[derive(Debug, Default)]
struct Counters {
    heartbeats: u64,
    workload_queries_answered: u64,
    clamped: u64,
}

/// An AOS instance: ranks for clients, admits sessions, answers peers and
/// heartbeats into the registry.
///
/// Driving it: feed every input to [`handle_event`](Self::handle_event), call
/// [`handle_timeout`](Self::handle_timeout) when
/// [`poll_timeout`](Self::poll_timeout)'s deadline is reached, and after each
/// drain [`poll_action`](Self::poll_action) to `None`. The driver owns the
/// sockets and the registry; the machine names connections by an opaque
/// [`ConnectionId`] and registry and peer queries by ids it hands out (an
/// answer for an unknown or finished id is ignored and counted). A decoded
/// message becomes an event through [`Event::from_message`] or
/// [`Event::from_peer_reply`].
///
/// Methods: getters ([`connected`](Self::connected), [`workload`](Self::workload),
/// [`stats`](Self::stats), [`heartbeat`](Self::heartbeat), ...); the
/// embedder's commands, which are methods and never events
/// ([`set_accepting`](Self::set_accepting), [`set_max_sessions`](Self::set_max_sessions),
/// [`set_saturated`](Self::set_saturated)); inputs (`handle_*`); outputs (`poll_*`).
///
/// Inside, four subsystems each own their state and counters: the query
/// round (`round/`: waiting handshakes, the round in flight,
/// the registry snapshot), fan-out (`fanout.rs`: whom a round asks), herd
/// control (`herd/`: reservations and the tie rule) and admission
/// (`admission.rs`: settings and sessions). The machine passes each what it
/// needs: configuration, time, and the others it drives.
#[derive(Debug)]
pub struct Instance {
    config: InstanceConfig,
    admission: Admission,
    round: QueryRound,
    fan_out: FanOutControl,
    herd: Herd,
    timers: TimerTable<3>,
    actions: VecDeque<Action>,
    now: Instant,
    counters: Counters,
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
        let first_query_id = rng.next_u64() >> 16;
        let first_session_id = rng.next_u64() >> 16;
        let mut instance = Instance {
            admission: Admission::new(&config, first_session_id),
            round: QueryRound::new(first_query_id),
            fan_out: FanOutControl::default(),
            herd: Herd::new(config.id),
            config,
            timers: TimerTable::default(),
            actions: VecDeque::new(),
            now,
            counters: Counters::default(),
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
        self.admission.connected()
    }

    /// The current "Max concurrent sessions".
    pub fn max_sessions(&self) -> u32 {
        self.admission.max_sessions()
    }

    /// Whether the admin setting admits new sessions (not draining).
    pub fn accepting(&self) -> bool {
        self.admission.accepting()
    }

    /// Whether the driver reported itself at its connection limit.
    pub fn saturated(&self) -> bool {
        self.admission.saturated()
    }

    /// What peers, the registry and clients are told: accepting and not
    /// saturated.
    pub fn advertised_accepting(&self) -> bool {
        self.admission.advertised_accepting()
    }

    /// The figures this instance reports to peers and the registry. After
    /// `max_sessions` was lowered below `connected`, `connected` is reported
    /// as `max_sessions` (full), since reports never say `connected > max`.
    pub fn workload(&self) -> Workload {
        self.admission.workload()
    }

    /// Counters, grouped by subsystem.
    pub fn stats(&self) -> InstanceStats {
        InstanceStats {
            round: self.round.stats.clone(),
            fan_out: self.fan_out.stats().clone(),
            herd: self.herd.stats().clone(),
            admission: self.admission.stats().clone(),
            heartbeats: self.counters.heartbeats,
            workload_queries_answered: self.counters.workload_queries_answered,
            clamped: self.counters.clamped,
        }
    }

    /// Handshakes waiting for the round in flight.
    pub fn pending_handshakes(&self) -> usize {
        self.round.pending.len()
    }

    /// Whether a query round is in flight.
    pub fn round_in_flight(&self) -> bool {
        self.round.phase.is_some()
    }

    /// Reservations currently held by herd control (expired ones may linger
    /// until the next ranking purges them).
    pub fn reservations(&self) -> usize {
        self.herd.total()
    }

    /// Members in the cached registry snapshot (only `Serving` peers that
    /// were active when it was read).
    pub fn cached_members(&self) -> usize {
        self.round.cached_members()
    }

    /// An estimate of the heap and inline bytes this instance holds: its
    /// struct plus the capacity of every collection (strings inside
    /// endpoints included). For capacity planning, not exact accounting.
    pub fn memory_footprint(&self) -> usize {
        size_of::<Self>()
            + self.round.heap_bytes()
            + self.herd.heap_bytes()
            + self.fan_out.heap_bytes()
            + self.admission.heap_bytes()
            + self.actions.capacity() * size_of::<Action>()
    }

    // ----- the machine contract -----

    /// One input at time `now` (a time earlier than one already seen counts
    /// as that time, and is counted in [`InstanceStats::clamped`]). Every
    /// event, including answers for unknown ids, is handled or ignored: no
    /// event is an error today; the `Result` is the contract every machine
    /// shares.
    pub fn handle_event(&mut self, event: Event, now: Instant) -> Result<(), UsageError> {
        let now = self.clamp(now);
        match event {
            Event::HandshakeRequest { conn, request } => {
                self.with_round(|r, cx| r.handshake(conn, request, cx))
            }
            Event::SessionRequest { conn, request } => self.on_session_request(conn, request, None),
            Event::SessionDenied { conn, request, reason } => {
                self.on_session_request(conn, request, Some(reason))
            }
            Event::SessionEnded { session_id } => self.admission.ended(session_id),
            Event::ConnectionClosed { conn } => {
                self.admission.connection_closed(conn);
                self.herd.release(conn, now);
                self.round.abandon(conn);
            }
            Event::WorkloadQuery { conn, query } => {
                self.counters.workload_queries_answered += 1;
                let report = WorkloadReport {
                    query_id: query.query_id,
                    id: self.config.id,
                    role: self.config.role,
                    accepting: self.advertised_accepting(),
                    workload: self.workload(),
                };
                self.actions.push_back(Action::Reply { conn, message: Message::WorkloadReport(report) });
            }
            Event::RegistrySnapshot { query_id, members } => {
                self.with_round(|r, cx| r.on_snapshot(query_id, members, cx))
            }
            Event::RegistryFailed { query_id, .. } => {
                self.with_round(|r, cx| r.on_registry_failed(query_id, cx))
            }
            Event::WorkloadReport { report } => self.with_round(|r, cx| r.on_report(report, cx)),
            Event::PeerUnreachable { query_id, peer, .. } => {
                self.with_round(|r, cx| r.on_unreachable(query_id, peer, cx))
            }
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
                Timer::Registry => self.with_round(QueryRound::on_registry_timeout),
                Timer::Peers => self.with_round(QueryRound::on_peer_timeout),
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
            self.counters.clamped += 1;
        } else {
            self.now = now;
        }
        self.now
    }

    /// Runs `f` on the query round with what it is handed (see [`Cx`]), at
    /// the last time seen.
    fn with_round(&mut self, f: impl FnOnce(&mut QueryRound, &mut Cx<'_>)) {
        let own = self.admission.own_candidate(self.config.role);
        let Instance { config, round, fan_out, herd, timers, actions, now, .. } = self;
        let mut cx = Cx { config, now: *now, own, herd, fan_out, timers, actions };
        f(round, &mut cx);
    }

    fn on_session_request(
        &mut self,
        conn: ConnectionId,
        request: SessionRequest,
        denied: Option<RejectReason>,
    ) {
        let outcome = self.admission.request(conn, denied, &self.config);
        if let SessionOutcome::Accepted { .. } = outcome {
            self.herd.landed_here(conn, self.now, self.config.reservation_ttl);
        }
        let message = Message::SessionReply(SessionReply { request_id: request.request_id, outcome });
        self.actions.push_back(Action::Reply { conn, message });
        if let SessionOutcome::Accepted { session_id } = outcome {
            self.actions.push_back(Action::SessionOpened { conn, session_id });
        }
    }
}
