//! What every stage of a connection effort uses: the configuration, the
//! randomness, the round, the attempt log, the timers, the action queue and
//! the counters. The stages (`handshake.rs`, `targets.rs`) own their own
//! data and receive this.

use std::collections::VecDeque;
use std::time::Instant;

use super::event::{Action, Stats};
use super::log::{AttemptId, AttemptLog, AttemptOutcome};
use crate::config::ClientConfig;
use crate::rng::Rng;
use crate::timer::{TimerKind, TimerTable};
use crate::wire::Credential;

/// The Connector's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    // Before `Backoff`, so a deadline and a retry at the same instant fail.
    Deadline,
    /// A held handshake reply is decided at the close of its instant.
    Decide,
    /// The next staggered handshake starts.
    Stagger,
    /// The session request in flight times out.
    Session,
    /// The next round starts.
    Backoff,
}

impl TimerKind for Timer {
    const ALL: &'static [Self] =
        &[Timer::Deadline, Timer::Decide, Timer::Stagger, Timer::Session, Timer::Backoff];
    fn index(self) -> usize {
        self as usize
    }
}

/// The Connector's shared state, apart from its stage.
#[derive(Debug)]
pub(super) struct Context {
    pub(super) config: ClientConfig,
    pub(super) rng: Rng,
    /// The current round, from 0.
    pub(super) round: u32,
    pub(super) log: AttemptLog,
    pub(super) timers: TimerTable<5>,
    pub(super) actions: VecDeque<Action>,
    pub(super) stats: Stats,
    /// Carried by every session request.
    pub(super) credential: Option<Credential>,
}

impl Context {
    /// The one place an attempt ends: its outcome goes into the log and,
    /// unless it became the session, the driver is told to close its
    /// transport. An attempt that already ended is left alone, so each gets
    /// exactly one `Close`.
    pub(super) fn finish(&mut self, attempt: AttemptId, outcome: AttemptOutcome, now: Instant) {
        let is_session = matches!(outcome, AttemptOutcome::Accepted { .. });
        if self.log.finish(attempt, outcome, now) && !is_session {
            self.actions.push_back(Action::Close { attempt });
        }
    }
}
