//! The [`Connector`]: the machine contract over the shared context (attempt
//! log, timers, action queue) and the round (`round.rs`).

use std::collections::VecDeque;
use std::time::Instant;

use super::context::{Context, Timer};
use super::event::{Action, Event, Opened, State, Stats};
use super::log::{AttemptLog, AttemptOutcome, AttemptRecord, FailReason};
use super::round::Round;
use super::targets::KEPT_ENTRIES;
use crate::config::{ClientConfig, ConfigError};
use crate::error::UsageError;
use crate::rng::Rng;
use crate::timer::TimerTable;
use crate::wire::Credential;

/// Phase 1 and phase 3 of SPEC.md for one client. See the [module
/// docs](super).
///
/// Methods: getters ([`state`](Self::state), [`session`](Self::session),
/// [`attempts`](Self::attempts), [`stats`](Self::stats), [`round`](Self::round),
/// [`config`](Self::config)); inputs ([`handle_event`](Self::handle_event),
/// [`handle_timeout`](Self::handle_timeout), [`reconnect`](Self::reconnect));
/// outputs ([`poll_action`](Self::poll_action), [`poll_timeout`](Self::poll_timeout)).
#[derive(Debug)]
pub struct Connector {
    cx: Context,
    /// The latest `now` seen (time never goes backwards inside).
    now: Instant,
    round: Round,
}

impl Connector {
    /// Validates `config` and starts the first round at `now`: the first
    /// handshake is queued at once. `rng_seed` drives salts, shuffles and
    /// backoff jitter; the same seed and inputs give the same actions.
    pub fn new(config: ClientConfig, now: Instant, rng_seed: u64) -> Result<Connector, ConfigError> {
        config.validate()?;
        let seeds = config.seeds.len();
        let mut connector = Connector {
            cx: Context {
                rng: Rng::new(rng_seed),
                round: 0,
                log: AttemptLog::new(now, seeds + 8, KEPT_ENTRIES),
                timers: TimerTable::default(),
                actions: VecDeque::with_capacity(seeds + 4),
                stats: Stats::default(),
                credential: None,
                config,
            },
            now,
            round: Round::new(seeds),
        };
        connector.begin_effort(now);
        Ok(connector)
    }

    // ----- getters -----

    /// What the Connector is doing.
    pub fn state(&self) -> State {
        self.round.state()
    }

    /// The open session, if any.
    pub fn session(&self) -> Option<&Opened> {
        self.round.session()
    }

    /// Every attempt of the current connection effort, in the order they started.
    pub fn attempts(&self) -> &[AttemptRecord] {
        self.cx.log.records()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.cx.stats
    }

    /// The current round, from 0.
    pub fn round(&self) -> u32 {
        self.cx.round
    }

    /// The validated configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.cx.config
    }

    /// The credential every session request carries, if any.
    pub fn credential(&self) -> Option<&Credential> {
        self.cx.credential.as_ref()
    }

    // ----- commands -----

    /// Attaches `credential` to every session request from now on (`None`:
    /// requests carry none, byte for byte what a client without credentials
    /// sends). The instance's admission policy reads it (SPEC "Drivers:
    /// admission policy"); the Connector only carries it.
    pub fn set_credential(&mut self, credential: Option<Credential>) {
        self.cx.credential = credential;
    }

    // ----- the machine contract -----

    /// Starts a new connection effort (round 0, a fresh attempt log, a new
    /// overall deadline) after the session closed or the Connector failed.
    pub fn reconnect(&mut self, now: Instant) -> Result<(), UsageError> {
        match self.state() {
            State::Closed | State::Failed => {
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
        if ends_session && self.state() != State::Connected {
            return Err(UsageError::OutOfState { event: event.name(), state: self.state().name() });
        }
        let now = self.clamp(now);
        let (round, cx) = (&mut self.round, &mut self.cx);
        round.settle_held(cx, now, false);
        match event {
            Event::HandshakeReply { attempt, reply } => round.on_handshake_reply(cx, attempt, reply, now),
            Event::SessionReply { attempt, reply } => round.on_session_reply(cx, attempt, reply, now),
            Event::TransportFailed { attempt, reason } => {
                round.fail_attempt(cx, attempt, AttemptOutcome::TransportFailed(reason), now)
            }
            Event::SessionEnded => round.close_session(cx, None),
            Event::SessionLost { reason } => round.close_session(cx, Some(reason)),
        }
        Ok(())
    }

    /// Time has reached a deadline: handles everything due at or before
    /// `now`, earliest first. Extra calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        let (round, cx) = (&mut self.round, &mut self.cx);
        // A reply held past the overall deadline must not start phase 3 only to be cancelled.
        if !cx.timers.get(Timer::Deadline).is_some_and(|d| d <= now) {
            round.settle_held(cx, now, true);
        }
        loop {
            // The overall deadline overrides anything else due.
            if cx.timers.get(Timer::Deadline).is_some_and(|d| d <= now) {
                cx.timers.stop(Timer::Deadline);
                round.fail(cx, FailReason::DeadlineExceeded, now);
                continue;
            }
            let timer_due = cx.timers.next().filter(|&d| d <= now);
            match (round.handshake_due(now), timer_due) {
                (Some((at, attempt)), timer) if timer.map_or(true, |t| at <= t) => {
                    round.fail_attempt(cx, attempt, AttemptOutcome::TimedOut, now);
                }
                (_, Some(_)) => match cx.timers.expire::<Timer>(now) {
                    Some(kind) => round.on_timer(cx, kind, now),
                    None => break,
                },
                _ => break,
            }
        }
    }

    /// The next action to carry out; drain to `None` after every input.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.cx.actions.pop_front()
    }

    /// The next absolute deadline: the latest `now` while actions are queued
    /// or a held reply waits for its instant to close; `None` only when
    /// nothing will happen without an input (connected, closed or failed).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.cx.actions.is_empty() {
            return Some(self.now);
        }
        match (self.cx.timers.next(), self.round.handshake_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- internals -----

    fn clamp(&mut self, now: Instant) -> Instant {
        if now < self.now {
            self.cx.stats.clamped += 1;
            self.now
        } else {
            self.now = now;
            now
        }
    }

    fn begin_effort(&mut self, now: Instant) {
        self.cx.round = 0;
        self.cx.log.begin_effort(now);
        self.cx.timers.stop_all();
        if let Some(deadline) = self.cx.config.overall_deadline {
            self.cx.timers.set(Timer::Deadline, now + deadline);
        }
        self.round.start_round(&mut self.cx, now);
    }
}
