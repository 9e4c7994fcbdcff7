//! The client's [`Connector`]: phase 1 (the ordered handshake) and phase 3
//! (the sorted-list connection) of SPEC.md as a pure state machine.
//!
//! # Driving it
//!
//! [`Connector::new`] starts the first round at once. Then, in a loop:
//!
//! 1. drain [`Connector::poll_action`] to `None` and carry out every action
//!    (send a message, close a transport, report the outcome);
//! 2. wait for the next input or until [`Connector::poll_timeout`];
//! 3. feed a reply or a transport failure to [`Connector::handle_event`], or
//!    call [`Connector::handle_timeout`] once the deadline has passed.
//!
//! Every attempt is named by an [`AttemptId`]; its value is the `request_id`
//! on the wire, so a driver maps a reply back to its attempt by that id or by
//! the transport it used. A reply whose `request_id` differs from its attempt's
//! is malformed and fails the attempt. Replies for unknown, cancelled or
//! finished attempts are ignored (see [`Stats::ignored`]); time that goes
//! backwards is clamped to the latest `now` seen (see [`Stats::clamped`]).
//!
//! # Transports
//!
//! An attempt's transport is no longer needed once its reply was delivered
//! (unless [`Action::Connected`] names the attempt: that transport is the
//! session), once the driver reported [`Event::TransportFailed`], or once the
//! machine emits [`Action::Cancel`] for it (it timed out, lost the race, or the
//! round was abandoned).
//!
//! # Staggered handshakes (RFC 8305)
//!
//! With `attempt_delay`, the handshake to the next seed starts `attempt_delay`
//! after the previous one started, or at once when a pending one fails, while
//! earlier ones stay pending. The first valid reply wins, and the earlier seed
//! wins when two are ready together. The exact rule: a valid reply from a seed
//! while a seed earlier in the walk is still pending is held, and
//! [`Connector::poll_timeout`] returns the instant it arrived. The decision is
//! made by the next [`Connector::handle_timeout`], or by the next event with a
//! later `now`, or at once when no earlier seed is pending any more; the held
//! reply with the earliest walk position wins. So replies delivered at the
//! same `now` before `handle_timeout` compete, and the earliest seed among them
//! wins whatever the delivery order.
//!
//! # Rounds
//!
//! A round is phase 1 and phase 3. A round that ends without a session waits
//! a full-jitter backoff ([`RetryPolicy`](crate::RetryPolicy)) and starts again
//! from phase 1, up to `max_rounds` rounds in all, and within
//! `overall_deadline` when one is set; then [`Action::Failed`] carries a
//! [`ConnectError`] that lists every attempt. After a session ends or is lost
//! ([`Action::SessionClosed`]), [`Connector::reconnect`] starts over: the new
//! session is balanced again.
//!
//! # Allocation
//!
//! Once a round's lists are stored, events that start no attempt, timeouts and
//! polls allocate nothing; the action queue, the pending-handshake table, the
//! walk order and the ranked list reuse their capacity. Starting an attempt
//! clones its endpoint (for the action and the log) and, for a handshake, the
//! configured cluster name.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::config::{ClientConfig, ConfigError};
use crate::endpoint::Endpoint;
use crate::error::UsageError;
use crate::rng::Rng;
use crate::timer::{TimerKind, TimerTable};
use crate::wire::{
    HandshakeOutcome, HandshakeReply, HandshakeRequest, RankedEntry, RankedList, RefuseReason, RejectReason,
    SessionId, SessionOutcome, SessionReply, SessionRequest,
};
use crate::workload::InstanceId;

/// An attempt's opaque name. Its value is the `request_id` of the attempt's
/// request on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptId(u64);

impl AttemptId {
    /// The value sent as the request's `request_id`.
    pub const fn request_id(self) -> u64 {
        self.0
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a{}", self.0)
    }
}

/// The phase an attempt belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Phase 1: a handshake to a seed.
    Handshake,
    /// Phase 3: a session request to a ranked entry.
    Session,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Handshake => "handshake",
            Phase::Session => "session",
        })
    }
}

/// Why a reply was malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Malformation {
    /// The reply's `request_id` is not the attempt's.
    RequestIdMismatch {
        /// The id the reply carried.
        got: u64,
    },
    /// A session reply to a handshake, or a handshake reply to a session request.
    WrongReplyKind,
}

impl fmt::Display for Malformation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformation::RequestIdMismatch { got } => write!(f, "reply for request {got}"),
            Malformation::WrongReplyKind => f.write_str("reply of the wrong kind"),
        }
    }
}

/// What became of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// Still waiting for a reply.
    Pending,
    /// The handshake won with a ranked list of this many entries (after
    /// cutting and removing duplicates).
    Ranked {
        /// Entries kept.
        entries: usize,
        /// The instance ranked from an old registry snapshot.
        stale: bool,
    },
    /// Direct mode: the seed answered and is the session target.
    Answered,
    /// A valid handshake reply that lost to an earlier seed ready at the same time.
    Superseded,
    /// The ranked list was empty: nobody can take a session.
    EmptyList,
    /// The instance refused the handshake.
    Refused(RefuseReason),
    /// The reply did not fit the attempt.
    Malformed(Malformation),
    /// The driver reported a transport failure.
    TransportFailed(String),
    /// No reply within the timeout.
    TimedOut,
    /// Stopped while pending: another attempt won, or the round was abandoned.
    Cancelled,
    /// Admission accepted: the session.
    Accepted {
        /// The instance's name for the session.
        session_id: SessionId,
    },
    /// Admission said no.
    Rejected(RejectReason),
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptOutcome::Pending => f.write_str("pending"),
            AttemptOutcome::Ranked { entries, stale: false } => write!(f, "ranked list of {entries}"),
            AttemptOutcome::Ranked { entries, stale: true } => write!(f, "stale ranked list of {entries}"),
            AttemptOutcome::Answered => f.write_str("answered (direct)"),
            AttemptOutcome::Superseded => f.write_str("answered, but an earlier seed won"),
            AttemptOutcome::EmptyList => f.write_str("empty ranked list"),
            AttemptOutcome::Refused(reason) => write!(f, "refused ({reason:?})"),
            AttemptOutcome::Malformed(m) => write!(f, "malformed ({m})"),
            AttemptOutcome::TransportFailed(reason) => write!(f, "transport failed ({reason})"),
            AttemptOutcome::TimedOut => f.write_str("timed out"),
            AttemptOutcome::Cancelled => f.write_str("cancelled"),
            AttemptOutcome::Accepted { session_id } => write!(f, "accepted (session {session_id})"),
            AttemptOutcome::Rejected(reason) => write!(f, "rejected ({reason:?})"),
        }
    }
}

/// One line of the attempt log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptRecord {
    /// The attempt.
    pub attempt: AttemptId,
    /// The round, from 0.
    pub round: u32,
    /// Handshake or session.
    pub phase: Phase,
    /// The seed's index in the configured list (handshake), or the entry's
    /// rank in the ranked list (session).
    pub index: usize,
    /// Where the request went.
    pub endpoint: Endpoint,
    /// When it started, since the connection effort began.
    pub started: Duration,
    /// When it ended, since the connection effort began (`None` while pending).
    pub ended: Option<Duration>,
    /// What happened.
    pub outcome: AttemptOutcome,
}

impl fmt::Display for AttemptRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index = match self.phase {
            Phase::Handshake => "seed",
            Phase::Session => "rank",
        };
        let ended = self.ended.map_or(String::from("..."), |e| format!("{e:?}"));
        write!(
            f,
            "+{:?}..{ended} round {} {} {} {index} {} {}: {}",
            self.started, self.round, self.attempt, self.phase, self.index, self.endpoint, self.outcome
        )?;
        Ok(())
    }
}

/// Why the Connector gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailReason {
    /// Every one of `max_rounds` rounds ended without a session.
    RoundsExhausted,
    /// `overall_deadline` passed first.
    DeadlineExceeded,
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailReason::RoundsExhausted => "every round failed",
            FailReason::DeadlineExceeded => "the overall deadline passed",
        })
    }
}

/// No session could be opened: why, and every attempt made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct ConnectError {
    /// Why the Connector gave up.
    pub reason: FailReason,
    /// Rounds started.
    pub rounds: u32,
    /// Every attempt, in the order they started.
    pub attempts: Vec<AttemptRecord>,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no session after {} round(s): {}; {} attempt(s)",
            self.rounds,
            self.reason,
            self.attempts.len()
        )?;
        for record in &self.attempts {
            write!(f, "\n  {record}")?;
        }
        Ok(())
    }
}

/// What the Connector is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Phase 1: handshakes to seeds.
    Handshaking,
    /// Phase 3: session requests down the ranked list.
    Connecting,
    /// Between rounds, waiting out the backoff.
    Backoff,
    /// A session is open.
    Connected,
    /// The session ended or was lost; [`Connector::reconnect`] starts over.
    Closed,
    /// Gave up; [`Connector::reconnect`] starts over.
    Failed,
}

impl State {
    /// The state's name, as used in [`UsageError`].
    pub const fn name(self) -> &'static str {
        match self {
            State::Handshaking => "handshaking",
            State::Connecting => "connecting",
            State::Backoff => "backoff",
            State::Connected => "connected",
            State::Closed => "closed",
            State::Failed => "failed",
        }
    }
}

/// The open session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Session {
    /// The session attempt that was accepted (its transport is the session).
    pub attempt: AttemptId,
    /// The instance's endpoint.
    pub endpoint: Endpoint,
    /// The instance's id: from the ranked list, or in direct mode from the
    /// answering seed's own entry when its reply lists it (else `None`).
    pub instance: Option<InstanceId>,
    /// The instance's name for the session.
    pub session_id: SessionId,
    /// The round that opened it, from 0.
    pub round: u32,
}

/// Counters for what the Connector did and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Rounds started (across reconnects).
    pub rounds: u64,
    /// Handshakes sent.
    pub handshakes: u64,
    /// Session requests sent.
    pub session_requests: u64,
    /// Events for unknown, cancelled or finished attempts.
    pub ignored: u64,
    /// Calls whose `now` was earlier than one already seen.
    pub clamped: u64,
}

/// An input from the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A seed answered a handshake.
    HandshakeReply {
        /// The attempt the reply came for.
        attempt: AttemptId,
        /// The decoded reply.
        reply: HandshakeReply,
    },
    /// An instance answered a session request.
    SessionReply {
        /// The attempt the reply came for.
        attempt: AttemptId,
        /// The decoded reply.
        reply: SessionReply,
    },
    /// The attempt's transport failed (refused, reset, undecodable bytes...).
    TransportFailed {
        /// The attempt.
        attempt: AttemptId,
        /// The driver's description, kept in the attempt log.
        reason: String,
    },
    /// The open session ended normally.
    SessionEnded,
    /// The open session was lost.
    SessionLost {
        /// The driver's description.
        reason: String,
    },
}

impl Event {
    /// The event's name, as used in [`UsageError`].
    pub const fn name(&self) -> &'static str {
        match self {
            Event::HandshakeReply { .. } => "handshake reply",
            Event::SessionReply { .. } => "session reply",
            Event::TransportFailed { .. } => "transport failed",
            Event::SessionEnded => "session ended",
            Event::SessionLost { .. } => "session lost",
        }
    }
}

/// An output for the driver to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Open a transport to the seed and send it the handshake.
    SendHandshake {
        /// The attempt, to report its reply or failure under.
        attempt: AttemptId,
        /// The seed's index in the configured seed list.
        seed_index: usize,
        /// Where to send it.
        endpoint: Endpoint,
        /// The request, ready to encode.
        request: HandshakeRequest,
    },
    /// Open a transport to the ranked entry and send it the session request.
    SendSessionRequest {
        /// The attempt, to report its reply or failure under.
        attempt: AttemptId,
        /// The entry's rank in the ranked list (0 in direct mode).
        rank: usize,
        /// Where to send it.
        endpoint: Endpoint,
        /// The request, ready to encode.
        request: SessionRequest,
    },
    /// Stop the attempt: close its transport; any late reply is ignored.
    Cancel {
        /// The attempt.
        attempt: AttemptId,
    },
    /// A session is open, and stays open until an end or loss event. The
    /// attempt's transport is the session.
    Connected {
        /// The accepted session attempt.
        attempt: AttemptId,
        /// The instance's endpoint.
        endpoint: Endpoint,
        /// The instance's id, when known (see [`Session::instance`]).
        instance: Option<InstanceId>,
        /// The instance's name for the session.
        session_id: SessionId,
    },
    /// A round ended without a session; the next starts at `retry_at`.
    RoundFailed {
        /// The round that failed, from 0.
        round: u32,
        /// When the next round starts.
        retry_at: Instant,
    },
    /// The Connector gave up.
    Failed(ConnectError),
    /// The session ended (`lost: None`) or was lost.
    SessionClosed {
        /// The instance's endpoint.
        endpoint: Endpoint,
        /// Why it was lost, if it was.
        lost: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    // Before `Backoff`, so a deadline and a retry at the same instant fail.
    Deadline,
    Decide,
    Stagger,
    Session,
    Backoff,
}

impl TimerKind for Timer {
    const ALL: &'static [Self] =
        &[Timer::Deadline, Timer::Decide, Timer::Stagger, Timer::Session, Timer::Backoff];
    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy)]
struct PendingHandshake {
    attempt: AttemptId,
    walk_pos: usize,
    seed_index: usize,
    deadline: Instant,
}

/// A valid handshake reply waiting for the end of its instant (see the
/// module docs on staggering).
#[derive(Debug)]
struct HeldReply {
    attempt: AttemptId,
    walk_pos: usize,
    seed_index: usize,
    list: RankedList,
}

/// Phase 1 and phase 3 of SPEC.md for one client. See the module docs.
///
/// Methods: getters ([`state`](Self::state), [`session`](Self::session),
/// [`attempts`](Self::attempts), [`stats`](Self::stats), [`round`](Self::round),
/// [`config`](Self::config)); inputs ([`handle_event`](Self::handle_event),
/// [`handle_timeout`](Self::handle_timeout), [`reconnect`](Self::reconnect));
/// outputs ([`poll_action`](Self::poll_action), [`poll_timeout`](Self::poll_timeout)).
#[derive(Debug)]
pub struct Connector {
    config: ClientConfig,
    rng: Rng,
    state: State,
    now: Instant,
    /// When the current connection effort (first round or reconnect) began.
    start: Instant,
    /// The current round, from 0.
    round: u32,
    next_id: u64,
    /// The id of the current effort's first attempt: attempt `id` is
    /// `log[id - first_id]`, since ids are handed out consecutively.
    first_id: u64,
    log: Vec<AttemptRecord>,
    /// The walk order of this round: indices into `config.seeds`.
    walk: Vec<usize>,
    next_walk: usize,
    pending: Vec<PendingHandshake>,
    held: Option<HeldReply>,
    /// Phase 3 targets, best first (cut and deduplicated).
    targets: Vec<RankedEntry>,
    /// Direct mode's single target, in place of `targets`.
    direct_target: Option<(Endpoint, Option<InstanceId>)>,
    rank: usize,
    session_attempt: Option<AttemptId>,
    session: Option<Session>,
    timers: TimerTable<5>,
    actions: VecDeque<Action>,
    scratch_order: Vec<(u64, usize)>,
    scratch_repeat: Vec<bool>,
    stats: Stats,
}

impl Connector {
    /// Validates `config` and starts the first round at `now`: the first
    /// handshake is queued at once. `rng_seed` drives salts, shuffles and
    /// backoff jitter; the same seed and inputs give the same actions.
    pub fn new(config: ClientConfig, now: Instant, rng_seed: u64) -> Result<Connector, ConfigError> {
        config.validate()?;
        let seeds = config.seeds.len();
        let mut connector = Connector {
            rng: Rng::new(rng_seed),
            state: State::Handshaking,
            now,
            start: now,
            round: 0,
            next_id: 1,
            first_id: 1,
            log: Vec::with_capacity(seeds + 8),
            walk: Vec::with_capacity(seeds),
            next_walk: 0,
            pending: Vec::with_capacity(seeds),
            held: None,
            targets: Vec::new(),
            direct_target: None,
            rank: 0,
            session_attempt: None,
            session: None,
            timers: TimerTable::default(),
            actions: VecDeque::with_capacity(seeds + 4),
            scratch_order: Vec::new(),
            scratch_repeat: Vec::new(),
            stats: Stats::default(),
            config,
        };
        connector.begin_effort(now);
        Ok(connector)
    }

    /// What the Connector is doing.
    pub fn state(&self) -> State {
        self.state
    }

    /// The open session, if any.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Every attempt of the current connection effort, in the order they started.
    pub fn attempts(&self) -> &[AttemptRecord] {
        &self.log
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The current round, from 0.
    pub fn round(&self) -> u32 {
        self.round
    }

    /// The validated configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Starts a new connection effort (round 0, a fresh attempt log, a new
    /// overall deadline) after the session closed or the Connector failed.
    pub fn reconnect(&mut self, now: Instant) -> Result<(), UsageError> {
        match self.state {
            State::Closed | State::Failed => {
                let now = self.clamp(now);
                self.session = None;
                self.begin_effort(now);
                Ok(())
            }
            state => Err(UsageError::OutOfState { event: "reconnect", state: state.name() }),
        }
    }

    /// One input. Peer faults fail the attempt they concern; events for
    /// unknown or finished attempts are ignored. Errs only for a session end
    /// or loss while no session is open (the Connector is unchanged).
    pub fn handle_event(&mut self, event: Event, now: Instant) -> Result<(), UsageError> {
        if matches!(event, Event::SessionEnded | Event::SessionLost { .. }) && self.state != State::Connected
        {
            return Err(UsageError::OutOfState { event: event.name(), state: self.state.name() });
        }
        let now = self.clamp(now);
        self.settle_held(now, false);
        match event {
            Event::HandshakeReply { attempt, reply } => self.on_handshake_reply(attempt, reply, now),
            Event::SessionReply { attempt, reply } => self.on_session_reply(attempt, reply, now),
            Event::TransportFailed { attempt, reason } => {
                self.fail_attempt(attempt, AttemptOutcome::TransportFailed(reason), now)
            }
            Event::SessionEnded => self.close_session(None),
            Event::SessionLost { reason } => self.close_session(Some(reason)),
        }
        Ok(())
    }

    /// Time has reached a deadline: handles everything due at or before
    /// `now`, earliest first. Extra calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        self.settle_held(now, true);
        loop {
            let handshake_due = self.pending.iter().filter(|p| p.deadline <= now).min_by_key(|p| p.deadline);
            let handshake_due = handshake_due.map(|p| (p.deadline, p.attempt));
            let timer_due = self.timers.get(Timer::Deadline).filter(|&d| d <= now).map(|_| Timer::Deadline);
            // The overall deadline overrides anything else due.
            if timer_due.is_some() {
                self.timers.stop(Timer::Deadline);
                self.fail(FailReason::DeadlineExceeded, now);
                continue;
            }
            let next_timer = self.timers.next().filter(|&d| d <= now);
            match (handshake_due, next_timer) {
                (Some((at, attempt)), timer) if timer.map_or(true, |t| at <= t) => {
                    self.fail_attempt(attempt, AttemptOutcome::TimedOut, now);
                }
                (_, Some(_)) => match self.timers.expire::<Timer>(now) {
                    Some(kind) => self.on_timer(kind, now),
                    None => break,
                },
                _ => break,
            }
        }
    }

    /// The next action to carry out; drain to `None` after every input.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next absolute deadline: the latest `now` while actions are queued
    /// or a held reply waits for its instant to close; `None` only when
    /// nothing will happen without an input (connected, closed or failed).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.actions.is_empty() {
            return Some(self.now);
        }
        let handshake = self.pending.iter().map(|p| p.deadline).min();
        match (self.timers.next(), handshake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn clamp(&mut self, now: Instant) -> Instant {
        if now < self.now {
            self.stats.clamped += 1;
            self.now
        } else {
            self.now = now;
            now
        }
    }

    fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.start)
    }

    fn begin_effort(&mut self, now: Instant) {
        self.start = now;
        self.round = 0;
        self.log.clear();
        self.first_id = self.next_id;
        self.timers.stop_all();
        if let Some(deadline) = self.config.overall_deadline {
            self.timers.set(Timer::Deadline, now + deadline);
        }
        self.start_round(now);
    }

    fn start_round(&mut self, now: Instant) {
        self.stats.rounds += 1;
        self.state = State::Handshaking;
        self.walk.clear();
        self.walk.extend(0..self.config.seeds.len());
        if self.config.shuffle_seeds {
            self.rng.shuffle(&mut self.walk);
        }
        self.next_walk = 0;
        self.pending.clear();
        self.held = None;
        self.targets.clear();
        self.direct_target = None;
        self.rank = 0;
        self.session_attempt = None;
        self.log.reserve(self.config.seeds.len());
        self.start_next_handshake(now);
    }

    fn new_attempt(&mut self, phase: Phase, index: usize, endpoint: &Endpoint, now: Instant) -> AttemptId {
        let attempt = AttemptId(self.next_id);
        self.next_id += 1;
        self.log.push(AttemptRecord {
            attempt,
            round: self.round,
            phase,
            index,
            endpoint: endpoint.clone(),
            started: self.offset(now),
            ended: None,
            outcome: AttemptOutcome::Pending,
        });
        attempt
    }

    fn record_mut(&mut self, attempt: AttemptId) -> Option<&mut AttemptRecord> {
        let index = attempt.0.checked_sub(self.first_id)?;
        self.log.get_mut(usize::try_from(index).ok()?)
    }

    fn finish_record(&mut self, attempt: AttemptId, outcome: AttemptOutcome, now: Instant) {
        let ended = self.offset(now);
        if let Some(record) = self.record_mut(attempt) {
            record.outcome = outcome;
            record.ended = Some(ended);
        }
    }

    /// Starts the handshake to the next seed in the walk; `false` when every
    /// seed has had its turn this round.
    fn start_next_handshake(&mut self, now: Instant) -> bool {
        let Some(&seed_index) = self.walk.get(self.next_walk) else {
            self.timers.stop(Timer::Stagger);
            return false;
        };
        let walk_pos = self.next_walk;
        self.next_walk += 1;
        let endpoint = self.config.seeds[seed_index].clone();
        let attempt = self.new_attempt(Phase::Handshake, seed_index, &endpoint, now);
        self.pending.push(PendingHandshake {
            attempt,
            walk_pos,
            seed_index,
            deadline: now + self.config.handshake_timeout,
        });
        let request = HandshakeRequest {
            request_id: attempt.0,
            salt: self.rng.next_u64(),
            load_balance: self.config.load_balance,
            cluster: self.config.cluster.clone(),
        };
        self.stats.handshakes += 1;
        self.actions.push_back(Action::SendHandshake { attempt, seed_index, endpoint, request });
        match self.config.attempt_delay {
            Some(delay) if self.next_walk < self.walk.len() => self.timers.set(Timer::Stagger, now + delay),
            _ => self.timers.stop(Timer::Stagger),
        }
        true
    }

    fn on_timer(&mut self, kind: Timer, now: Instant) {
        match kind {
            Timer::Deadline => self.fail(FailReason::DeadlineExceeded, now),
            Timer::Decide => self.settle_held(now, true),
            Timer::Stagger => {
                if self.state == State::Handshaking && self.held.is_none() {
                    self.start_next_handshake(now);
                }
            }
            Timer::Session => {
                if let Some(attempt) = self.session_attempt {
                    self.actions.push_back(Action::Cancel { attempt });
                    self.fail_attempt(attempt, AttemptOutcome::TimedOut, now);
                }
            }
            Timer::Backoff => {
                if self.state == State::Backoff {
                    self.round += 1;
                    self.start_round(now);
                }
            }
        }
    }

    /// A reply must echo its attempt's request id; one that does not fails the
    /// attempt as malformed (returns `false`).
    fn echoes_request_id(&mut self, attempt: AttemptId, request_id: u64, now: Instant) -> bool {
        if request_id == attempt.0 {
            return true;
        }
        let outcome = AttemptOutcome::Malformed(Malformation::RequestIdMismatch { got: request_id });
        self.fail_attempt(attempt, outcome, now);
        false
    }

    fn on_handshake_reply(&mut self, attempt: AttemptId, reply: HandshakeReply, now: Instant) {
        let Some(pos) = self.pending.iter().position(|p| p.attempt == attempt) else {
            return self.ignore_or_misfit(attempt, now);
        };
        if !self.echoes_request_id(attempt, reply.request_id, now) {
            return;
        }
        let list = match reply.outcome {
            HandshakeOutcome::Refused(reason) => {
                return self.fail_attempt(attempt, AttemptOutcome::Refused(reason), now)
            }
            HandshakeOutcome::Ranked(list) if list.entries.is_empty() && self.config.load_balance => {
                return self.fail_attempt(attempt, AttemptOutcome::EmptyList, now)
            }
            HandshakeOutcome::Ranked(list) => list,
        };
        let entry = self.pending.swap_remove(pos);
        let replaces = self.held.as_ref().map_or(true, |held| entry.walk_pos < held.walk_pos);
        if !replaces {
            self.finish_record(attempt, AttemptOutcome::Superseded, now);
            return;
        }
        let held = HeldReply { attempt, walk_pos: entry.walk_pos, seed_index: entry.seed_index, list };
        if let Some(beaten) = self.held.replace(held) {
            self.finish_record(beaten.attempt, AttemptOutcome::Superseded, now);
        }
        self.timers.set(Timer::Decide, now);
        self.settle_held(now, false);
    }

    /// Decides a held reply once nothing can beat it: at the close of its
    /// instant (`instant_closed`, or any later `now`), or as soon as no seed
    /// earlier in the walk is pending.
    fn settle_held(&mut self, now: Instant, instant_closed: bool) {
        let Some(held) = &self.held else { return };
        let decided_at = self.timers.get(Timer::Decide).unwrap_or(now);
        let unbeatable = !self.pending.iter().any(|p| p.walk_pos < held.walk_pos);
        if unbeatable || instant_closed || now > decided_at {
            self.timers.stop(Timer::Decide);
            if let Some(held) = self.held.take() {
                self.win_handshake(held, now);
            }
        }
    }

    fn win_handshake(&mut self, held: HeldReply, now: Instant) {
        self.timers.stop(Timer::Stagger);
        for i in 0..self.pending.len() {
            let attempt = self.pending[i].attempt;
            self.actions.push_back(Action::Cancel { attempt });
            self.finish_record(attempt, AttemptOutcome::Cancelled, now);
        }
        self.pending.clear();
        let HeldReply { attempt, seed_index, list, .. } = held;
        if self.config.load_balance {
            let stale = list.stale;
            self.targets = list.entries;
            self.targets.truncate(self.config.max_list_len);
            dedup_entries(&mut self.targets, &mut self.scratch_order, &mut self.scratch_repeat);
            let entries = self.targets.len();
            self.finish_record(attempt, AttemptOutcome::Ranked { entries, stale }, now);
        } else {
            let endpoint = self.config.seeds[seed_index].clone();
            let instance = list.entries.iter().find(|e| e.endpoint == endpoint).map(|e| e.id);
            self.direct_target = Some((endpoint, instance));
            self.finish_record(attempt, AttemptOutcome::Answered, now);
        }
        self.state = State::Connecting;
        self.rank = 0;
        self.log.reserve(self.target_count());
        self.start_next_session_attempt(now);
    }

    fn target_count(&self) -> usize {
        if self.direct_target.is_some() {
            1
        } else {
            self.targets.len()
        }
    }

    fn target(&self, rank: usize) -> Option<(&Endpoint, Option<InstanceId>)> {
        match &self.direct_target {
            Some((endpoint, instance)) => (rank == 0).then_some((endpoint, *instance)),
            None => self.targets.get(rank).map(|e| (&e.endpoint, Some(e.id))),
        }
    }

    fn start_next_session_attempt(&mut self, now: Instant) {
        let rank = self.rank;
        let Some((endpoint, _)) = self.target(rank) else {
            self.session_attempt = None;
            self.timers.stop(Timer::Session);
            return self.round_failed(now);
        };
        let endpoint = endpoint.clone();
        let attempt = self.new_attempt(Phase::Session, rank, &endpoint, now);
        self.session_attempt = Some(attempt);
        self.timers.set(Timer::Session, now + self.config.connect_timeout);
        self.stats.session_requests += 1;
        let request = SessionRequest { request_id: attempt.0 };
        self.actions.push_back(Action::SendSessionRequest { attempt, rank, endpoint, request });
    }

    fn on_session_reply(&mut self, attempt: AttemptId, reply: SessionReply, now: Instant) {
        if self.session_attempt != Some(attempt) {
            return self.ignore_or_misfit(attempt, now);
        }
        if !self.echoes_request_id(attempt, reply.request_id, now) {
            return;
        }
        match reply.outcome {
            SessionOutcome::Rejected(reason) => {
                self.fail_attempt(attempt, AttemptOutcome::Rejected(reason), now)
            }
            SessionOutcome::Accepted { session_id } => {
                self.finish_record(attempt, AttemptOutcome::Accepted { session_id }, now);
                self.session_attempt = None;
                self.timers.stop_all();
                let Some((endpoint, instance)) = self.target(self.rank) else { return };
                let endpoint = endpoint.clone();
                self.state = State::Connected;
                self.session = Some(Session {
                    attempt,
                    endpoint: endpoint.clone(),
                    instance,
                    session_id,
                    round: self.round,
                });
                self.actions.push_back(Action::Connected { attempt, endpoint, instance, session_id });
            }
        }
    }

    /// A reply for an attempt that is not waiting for one: a live attempt of
    /// the other phase got the wrong kind of reply (malformed); anything else
    /// is late or unknown and ignored.
    fn ignore_or_misfit(&mut self, attempt: AttemptId, now: Instant) {
        let live = self.session_attempt == Some(attempt) || self.pending.iter().any(|p| p.attempt == attempt);
        if live {
            self.fail_attempt(attempt, AttemptOutcome::Malformed(Malformation::WrongReplyKind), now);
        } else {
            self.stats.ignored += 1;
        }
    }

    /// Ends a live attempt without success and moves on: the next seed (phase
    /// 1) or the next ranked entry (phase 3). Unknown attempts are ignored.
    fn fail_attempt(&mut self, attempt: AttemptId, outcome: AttemptOutcome, now: Instant) {
        if let Some(pos) = self.pending.iter().position(|p| p.attempt == attempt) {
            if outcome == AttemptOutcome::TimedOut {
                self.actions.push_back(Action::Cancel { attempt });
            }
            self.pending.swap_remove(pos);
            self.finish_record(attempt, outcome, now);
            self.settle_held(now, false);
            if self.held.is_some() || self.state != State::Handshaking {
                return;
            }
            if !self.start_next_handshake(now) && self.pending.is_empty() {
                self.round_failed(now);
            }
        } else if self.session_attempt == Some(attempt) {
            self.finish_record(attempt, outcome, now);
            self.session_attempt = None;
            self.rank += 1;
            self.start_next_session_attempt(now);
        } else {
            self.stats.ignored += 1;
        }
    }

    fn round_failed(&mut self, now: Instant) {
        self.timers.stop(Timer::Stagger);
        self.timers.stop(Timer::Session);
        let retry = &self.config.retry;
        if self.round + 1 >= retry.max_rounds {
            return self.fail(FailReason::RoundsExhausted, now);
        }
        let factor = 1u32.checked_shl(self.round).unwrap_or(u32::MAX);
        let bound = retry.base.checked_mul(factor).map_or(retry.cap, |b| b.min(retry.cap));
        let bound_nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        let retry_at = now + Duration::from_nanos(self.rng.below_or_eq(bound_nanos));
        self.state = State::Backoff;
        self.timers.set(Timer::Backoff, retry_at);
        self.actions.push_back(Action::RoundFailed { round: self.round, retry_at });
    }

    fn fail(&mut self, reason: FailReason, now: Instant) {
        if matches!(self.state, State::Connected | State::Closed | State::Failed) {
            return;
        }
        for i in 0..self.pending.len() {
            let attempt = self.pending[i].attempt;
            self.actions.push_back(Action::Cancel { attempt });
            self.finish_record(attempt, AttemptOutcome::Cancelled, now);
        }
        self.pending.clear();
        if let Some(held) = self.held.take() {
            self.finish_record(held.attempt, AttemptOutcome::Superseded, now);
        }
        if let Some(attempt) = self.session_attempt.take() {
            self.actions.push_back(Action::Cancel { attempt });
            self.finish_record(attempt, AttemptOutcome::Cancelled, now);
        }
        self.timers.stop_all();
        self.state = State::Failed;
        let error = ConnectError { reason, rounds: self.round + 1, attempts: self.log.clone() };
        self.actions.push_back(Action::Failed(error));
    }

    fn close_session(&mut self, lost: Option<String>) {
        if let Some(session) = &self.session {
            self.state = State::Closed;
            self.actions.push_back(Action::SessionClosed { endpoint: session.endpoint.clone(), lost });
        }
    }
}

/// Lists up to this long are deduplicated by direct comparison; longer ones
/// through sorted indices, so a 1024-entry list costs O(n log n), not O(n^2).
const SMALL_LIST: usize = 16;

/// Drops every entry whose endpoint or instance id appeared earlier in the
/// list (a repeat of anything earlier, kept or not), preserving order, in
/// place. `order` and `repeat` are scratch space whose capacity is reused.
fn dedup_entries(entries: &mut Vec<RankedEntry>, order: &mut Vec<(u64, usize)>, repeat: &mut Vec<bool>) {
    repeat.clear();
    if entries.len() <= SMALL_LIST {
        repeat.extend((0..entries.len()).map(|i| {
            entries[..i].iter().any(|e| e.endpoint == entries[i].endpoint || e.id == entries[i].id)
        }));
    } else {
        repeat.resize(entries.len(), false);
        // Sorting by (key, position) puts each key's first occurrence first in
        // its run. Endpoints are keyed by a fingerprint (equal endpoints, equal
        // fingerprints), so the sort compares integers, not text; only a run
        // of equal fingerprints is then sorted by the endpoints themselves.
        order.clear();
        order.extend(entries.iter().enumerate().map(|(i, e)| (fingerprint(&e.endpoint), i)));
        order.sort_unstable();
        for run in order.chunk_by_mut(|a, b| a.0 == b.0).filter(|run| run.len() > 1) {
            run.sort_unstable_by(|&(_, a), &(_, b)| {
                entries[a].endpoint.cmp(&entries[b].endpoint).then(a.cmp(&b))
            });
            for pair in run.windows(2) {
                if entries[pair[0].1].endpoint == entries[pair[1].1].endpoint {
                    repeat[pair[1].1] = true;
                }
            }
        }
        order.clear();
        order.extend(entries.iter().enumerate().map(|(i, e)| (u64::from(e.id.0), i)));
        order.sort_unstable();
        for pair in order.windows(2) {
            if pair[0].0 == pair[1].0 {
                repeat[pair[1].1] = true;
            }
        }
    }
    let mut position = 0;
    entries.retain(|_| {
        position += 1;
        !repeat[position - 1]
    });
}

/// FNV-1a over an endpoint's parts: equal endpoints give equal values.
fn fingerprint(endpoint: &Endpoint) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |byte: u8| hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
    // `@` never occurs in a name, so it keeps instance and host apart.
    for &byte in
        endpoint.instance().unwrap_or("").as_bytes().iter().chain(b"@").chain(endpoint.host().as_bytes())
    {
        eat(byte);
    }
    endpoint.port().to_le_bytes().into_iter().for_each(eat);
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Workload;
    use proptest::prelude::*;

    proptest! {
        /// Both dedup paths (short and long lists) keep exactly the entries
        /// whose endpoint and id appear nowhere earlier, in order.
        #[test]
        fn dedup_keeps_first_occurrences(keys in proptest::collection::vec((0..12u16, 0..12u32), 0..40)) {
            let mut entries: Vec<RankedEntry> = keys
                .iter()
                .map(|&(port, id)| RankedEntry {
                    id: InstanceId(id),
                    endpoint: Endpoint::new("aos", port + 1).expect("valid"),
                    workload: Workload::new(0, 1),
                })
                .collect();
            let expected: Vec<(u16, u32)> = keys
                .iter()
                .enumerate()
                .filter(|(i, k)| !keys[..*i].iter().any(|e| e.0 == k.0 || e.1 == k.1))
                .map(|(_, &k)| k)
                .collect();
            dedup_entries(&mut entries, &mut Vec::new(), &mut Vec::new());
            let got: Vec<(u16, u32)> = entries.iter().map(|e| (e.endpoint.port() - 1, e.id.0)).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
