//! The client's [`Connector`]: phase 1 (the ordered handshake) and phase 3
//! (the sorted-list connection) of SPEC.md as a pure state machine.
//!
//! Files: `event.rs` (inputs, outputs, state), `log.rs` (attempt log and
//! errors), `handshake.rs` (phase 1: the seed walk), `targets.rs` (phase 3:
//! the ranked-list walk); this file holds the machine contract, timers and
//! round bookkeeping.
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
//! One rule, in one place: every attempt gets exactly one [`Action::Close`],
//! whatever its outcome (a reply, a refusal, a timeout, a lost race, a
//! transport failure, an abandoned round), except the accepted session
//! attempt named by [`Action::Connected`]: its transport is the session.
//! A failed attempt is closed when it ends; the handshake whose list the
//! round walks is closed when that walk ends (before `Connected`, before
//! `RoundFailed`, before `Failed`): the instance that ranked holds a
//! reservation for this client while its connection is open, and the close
//! tells it the client is no longer on its way. Drivers close a transport on
//! `Close` and on nothing else.
//!
//! A decoded message becomes an event through [`Event::from_message`], the
//! one conversion on this side.
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
//! [`ConnectFailure`] that lists every attempt. After a session ends or is lost
//! ([`Action::SessionClosed`]), [`Connector::reconnect`] starts over: the new
//! session is balanced again.
//!
//! # Allocation
//!
//! Once a round's lists are stored, events that start no attempt, timeouts and
//! polls allocate nothing: the action queue, the pending-handshake table, the
//! walk order and the duplicate finder's scratch reuse their capacity.
//! Starting an attempt clones its endpoint (for the action and the log) and,
//! for a handshake, the cluster name; the attempt log grows by doubling.
//!
//! A connected client holds its session and its attempt records, not its
//! last list: the ranked list is the decoder's buffer, dropped when the walk
//! ends, and the buffers a long list grew are given back beyond 128 entries
//! (above AX's 99 instances per environment, so rounds at that size reuse
//! them; the attempt log keeps room for that many records). After a
//! 4 096-entry list a connected Connector holds about 14 KB
//! (`tests/client_memory.rs`).

mod event;
mod handshake;
mod log;
mod targets;

use std::collections::VecDeque;
use std::mem;
use std::time::{Duration, Instant};

pub use self::event::{Action, Event, Opened, State, Stats};
pub use self::log::{
    AttemptId, AttemptOutcome, AttemptRecord, ConnectFailure, FailReason, Malformation, Phase,
};

use self::handshake::HandshakeWalk;
use self::log::AttemptLog;
use self::targets::{Spare, TargetWalk};
use crate::config::{ClientConfig, ConfigError};
use crate::error::UsageError;
use crate::rng::Rng;
use crate::timer::{TimerKind, TimerTable};
use crate::wire::Credential;

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

/// Where the Connector is, with the data only that stage uses.
#[derive(Debug)]
enum Stage {
    /// Phase 1.
    Handshaking(HandshakeWalk),
    /// Phase 3.
    Connecting(TargetWalk),
    /// Between rounds; the `Backoff` timer runs.
    Backoff,
    Connected(Opened),
    Closed,
    Failed,
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
    /// The latest `now` seen (time never goes backwards inside).
    now: Instant,
    /// The current round, from 0.
    round: u32,
    log: AttemptLog,
    stage: Stage,
    timers: TimerTable<5>,
    actions: VecDeque<Action>,
    /// Buffers of finished stages, kept so later rounds reuse their capacity.
    spare: Spare,
    stats: Stats,
    /// Carried by every session request (see [`Connector::set_credential`]).
    credential: Option<Credential>,
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
            now,
            round: 0,
            log: AttemptLog::new(now, seeds + 8),
            stage: Stage::Failed,
            timers: TimerTable::default(),
            actions: VecDeque::with_capacity(seeds + 4),
            spare: Spare::with_seeds(seeds),
            stats: Stats::default(),
            credential: None,
            config,
        };
        connector.begin_effort(now);
        Ok(connector)
    }

    // ----- getters -----

    /// What the Connector is doing.
    pub fn state(&self) -> State {
        match self.stage {
            Stage::Handshaking(_) => State::Handshaking,
            Stage::Connecting(_) => State::Connecting,
            Stage::Backoff => State::Backoff,
            Stage::Connected(_) => State::Connected,
            Stage::Closed => State::Closed,
            Stage::Failed => State::Failed,
        }
    }

    /// The open session, if any.
    pub fn session(&self) -> Option<&Opened> {
        match &self.stage {
            Stage::Connected(session) => Some(session),
            _ => None,
        }
    }

    /// Every attempt of the current connection effort, in the order they started.
    pub fn attempts(&self) -> &[AttemptRecord] {
        self.log.records()
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

    /// The credential every session request carries, if any.
    pub fn credential(&self) -> Option<&Credential> {
        self.credential.as_ref()
    }

    // ----- commands -----

    /// Attaches `credential` to every session request from now on (`None`:
    /// requests carry none, byte for byte what a client without credentials
    /// sends). The instance's admission policy reads it (SPEC "Drivers:
    /// admission policy"); the Connector only carries it.
    pub fn set_credential(&mut self, credential: Option<Credential>) {
        self.credential = credential;
    }

    // ----- the machine contract -----

    /// Starts a new connection effort (round 0, a fresh attempt log, a new
    /// overall deadline) after the session closed or the Connector failed.
    pub fn reconnect(&mut self, now: Instant) -> Result<(), UsageError> {
        match self.stage {
            Stage::Closed | Stage::Failed => {
                let now = self.clamp(now);
                self.begin_effort(now);
                Ok(())
            }
            _ => Err(UsageError::OutOfState { event: "reconnect", state: self.state().name() }),
        }
    }

    /// One input. Peer faults fail the attempt they concern; events for
    /// unknown or finished attempts are ignored. Errs only for a session end
    /// or loss while no session is open (the Connector is unchanged).
    pub fn handle_event(&mut self, event: Event, now: Instant) -> Result<(), UsageError> {
        let ends_session = matches!(event, Event::SessionEnded | Event::SessionLost { .. });
        if ends_session && !matches!(self.stage, Stage::Connected(_)) {
            return Err(UsageError::OutOfState { event: event.name(), state: self.state().name() });
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
        // A reply held past the overall deadline must not start phase 3 only to be cancelled.
        if !self.timers.get(Timer::Deadline).is_some_and(|d| d <= now) {
            self.settle_held(now, true);
        }
        loop {
            // The overall deadline overrides anything else due.
            if self.timers.get(Timer::Deadline).is_some_and(|d| d <= now) {
                self.timers.stop(Timer::Deadline);
                self.fail(FailReason::DeadlineExceeded, now);
                continue;
            }
            let handshake_due = self.handshake_due(now);
            let timer_due = self.timers.next().filter(|&d| d <= now);
            match (handshake_due, timer_due) {
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
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.actions.is_empty() {
            return Some(self.now);
        }
        let handshake = match &self.stage {
            Stage::Handshaking(walk) => walk.next_deadline(),
            _ => None,
        };
        match (self.timers.next(), handshake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- internals -----

    fn clamp(&mut self, now: Instant) -> Instant {
        if now < self.now {
            self.stats.clamped += 1;
            self.now
        } else {
            self.now = now;
            now
        }
    }

    fn begin_effort(&mut self, now: Instant) {
        self.round = 0;
        self.log.begin_effort(now);
        self.timers.stop_all();
        if let Some(deadline) = self.config.overall_deadline {
            self.timers.set(Timer::Deadline, now + deadline);
        }
        self.start_round(now);
    }

    /// Enters `next`, keeping the buffers of the stage it leaves. Leaving
    /// phase 3 closes the winning handshake's transport, before any action
    /// of the new stage.
    fn enter(&mut self, next: Stage) {
        match mem::replace(&mut self.stage, next) {
            Stage::Handshaking(walk) => self.spare.keep_walk(walk),
            Stage::Connecting(targets) => self.leave_walk(targets),
            _ => {}
        }
    }

    /// Phase 3 is over: the transport of the handshake it followed closes
    /// (the attempt itself ended when its reply won), and the walk's buffers
    /// are kept.
    fn leave_walk(&mut self, walk: TargetWalk) {
        self.actions.push_back(Action::Close { attempt: walk.handshake });
        self.spare.release_list(walk);
    }

    /// The one place an attempt ends: its outcome goes into the log and,
    /// unless it became the session, the driver is told to close its
    /// transport. An attempt that already ended is left alone, so each gets
    /// exactly one `Close`.
    fn finish(&mut self, attempt: AttemptId, outcome: AttemptOutcome, now: Instant) {
        let is_session = matches!(outcome, AttemptOutcome::Accepted { .. });
        if self.log.finish(attempt, outcome, now) && !is_session {
            self.actions.push_back(Action::Close { attempt });
        }
    }

    /// Ends the winning handshake in the log; its transport is closed when
    /// phase 3 ends (see [`TargetWalk::handshake`](targets::TargetWalk)).
    fn finish_keeping_transport(&mut self, attempt: AttemptId, outcome: AttemptOutcome, now: Instant) {
        self.log.finish(attempt, outcome, now);
    }

    fn on_timer(&mut self, kind: Timer, now: Instant) {
        match kind {
            Timer::Deadline => self.fail(FailReason::DeadlineExceeded, now),
            Timer::Decide => self.settle_held(now, true),
            Timer::Stagger => self.on_stagger(now),
            Timer::Session => {
                if let Some(attempt) = self.session_attempt() {
                    self.fail_attempt(attempt, AttemptOutcome::TimedOut, now);
                }
            }
            Timer::Backoff => {
                if matches!(self.stage, Stage::Backoff) {
                    self.round += 1;
                    self.start_round(now);
                }
            }
        }
    }

    /// A reply must echo its attempt's request id; one that does not fails the
    /// attempt as malformed (returns `false`).
    fn echoes_request_id(&mut self, attempt: AttemptId, request_id: u64, now: Instant) -> bool {
        if request_id == attempt.request_id() {
            return true;
        }
        let outcome = AttemptOutcome::Malformed(Malformation::RequestIdMismatch { got: request_id });
        self.fail_attempt(attempt, outcome, now);
        false
    }

    /// A reply for an attempt that is not waiting for one: a live attempt of
    /// the other phase got the wrong kind of reply (malformed); anything else
    /// is late or unknown and ignored.
    fn ignore_or_misfit(&mut self, attempt: AttemptId, now: Instant) {
        if self.session_attempt() == Some(attempt) || self.pending_position(attempt).is_some() {
            self.fail_attempt(attempt, AttemptOutcome::Malformed(Malformation::WrongReplyKind), now);
        } else {
            self.stats.ignored += 1;
        }
    }

    /// Ends a live attempt without success and moves on: the next seed (phase
    /// 1) or the next ranked entry (phase 3). Unknown attempts are ignored.
    fn fail_attempt(&mut self, attempt: AttemptId, outcome: AttemptOutcome, now: Instant) {
        if self.take_pending(attempt) {
            self.finish(attempt, outcome, now);
            self.after_handshake_failed(now);
        } else if self.session_attempt() == Some(attempt) {
            self.finish(attempt, outcome, now);
            self.next_target(now);
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
        self.enter(Stage::Backoff);
        self.timers.set(Timer::Backoff, retry_at);
        self.actions.push_back(Action::RoundFailed { round: self.round, retry_at });
    }

    fn fail(&mut self, reason: FailReason, now: Instant) {
        match mem::replace(&mut self.stage, Stage::Failed) {
            Stage::Handshaking(mut walk) => {
                for pending in walk.pending.drain(..) {
                    self.finish(pending.attempt, AttemptOutcome::Cancelled, now);
                }
                if let Some(held) = walk.held.take() {
                    self.finish(held.attempt, AttemptOutcome::Superseded, now);
                }
                self.spare.keep_walk(walk);
            }
            Stage::Connecting(mut targets) => {
                if let Some(attempt) = targets.attempt.take() {
                    self.finish(attempt, AttemptOutcome::Cancelled, now);
                }
                self.leave_walk(targets);
            }
            Stage::Backoff => {}
            done @ (Stage::Connected(_) | Stage::Closed | Stage::Failed) => {
                self.stage = done;
                return;
            }
        }
        self.timers.stop_all();
        let error = ConnectFailure { reason, rounds: self.round + 1, attempts: self.log.records().to_vec() };
        self.actions.push_back(Action::Failed(error));
    }

    fn close_session(&mut self, lost: Option<String>) {
        if !matches!(self.stage, Stage::Connected(_)) {
            return;
        }
        if let Stage::Connected(session) = mem::replace(&mut self.stage, Stage::Closed) {
            self.actions.push_back(Action::SessionClosed { endpoint: session.endpoint, lost });
        }
    }
}
