//! The round: which phase a connection effort is in (the seed walk, the
//! target walk, a backoff, a session) with the data only that phase uses,
//! and the moves between phases. The phases decide within themselves
//! (`handshake.rs`, `targets.rs`); a move out of one is decided here.

use std::mem;
use std::time::{Duration, Instant};

use super::context::{Context, Timer};
use super::event::{Action, Opened, State};
use super::handshake::{HandshakeWalk, HeldReply, Next};
use super::log::{AttemptId, AttemptOutcome, ConnectFailure, FailReason, Malformation};
use super::targets::{ListScratch, TargetWalk, Targets, Walked, KEPT_ENTRIES};
use crate::wire::{HandshakeReply, SessionReply};

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

/// The stage of the current round, and the buffers finished stages leave
/// for later rounds.
#[derive(Debug)]
pub(super) struct Round {
    stage: Stage,
    /// The last round's seed walk, kept so later rounds reuse its capacity.
    spare_walk: HandshakeWalk,
    lists: ListScratch,
}

impl Round {
    /// No round yet (failed, so that the first effort may begin), with room
    /// for a walk over `seeds` seeds.
    pub(super) fn new(seeds: usize) -> Self {
        Round {
            stage: Stage::Failed,
            spare_walk: HandshakeWalk::with_capacity(seeds),
            lists: ListScratch::default(),
        }
    }

    pub(super) fn state(&self) -> State {
        match self.stage {
            Stage::Handshaking(_) => State::Handshaking,
            Stage::Connecting(_) => State::Connecting,
            Stage::Backoff => State::Backoff,
            Stage::Connected(_) => State::Connected,
            Stage::Closed => State::Closed,
            Stage::Failed => State::Failed,
        }
    }

    pub(super) fn session(&self) -> Option<&Opened> {
        match &self.stage {
            Stage::Connected(session) => Some(session),
            _ => None,
        }
    }

    /// The earliest pending handshake whose deadline is at or before `now`.
    pub(super) fn handshake_due(&self, now: Instant) -> Option<(Instant, AttemptId)> {
        match &self.stage {
            Stage::Handshaking(walk) => walk.due(now),
            _ => None,
        }
    }

    /// The earliest pending handshake's deadline.
    pub(super) fn handshake_deadline(&self) -> Option<Instant> {
        match &self.stage {
            Stage::Handshaking(walk) => walk.next_deadline(),
            _ => None,
        }
    }

    pub(super) fn on_handshake_reply(
        &mut self,
        cx: &mut Context,
        attempt: AttemptId,
        reply: HandshakeReply,
        now: Instant,
    ) {
        let next = match &mut self.stage {
            Stage::Handshaking(walk) => walk.on_reply(cx, attempt, reply, now),
            _ => None,
        };
        match next {
            Some(next) => self.follow_seeds(cx, next, now),
            None => self.ignore_or_misfit(cx, attempt, now),
        }
    }

    pub(super) fn on_session_reply(
        &mut self,
        cx: &mut Context,
        attempt: AttemptId,
        reply: SessionReply,
        now: Instant,
    ) {
        let walked = match &mut self.stage {
            Stage::Connecting(walk) => walk.on_reply(cx, attempt, reply, now),
            _ => None,
        };
        match walked {
            Some(walked) => self.follow_targets(cx, walked, now),
            None => self.ignore_or_misfit(cx, attempt, now),
        }
    }

    pub(super) fn start_round(&mut self, cx: &mut Context, now: Instant) {
        cx.stats.rounds += 1;
        let mut walk = mem::take(&mut self.spare_walk);
        walk.begin(cx);
        self.enter(cx, Stage::Handshaking(walk));
        cx.log.reserve(cx.config.seeds.len());
        if let Stage::Handshaking(walk) = &mut self.stage {
            walk.start_next(cx, now);
        }
    }

    /// Enters `next`, keeping the buffers of the stage it leaves. Leaving
    /// phase 3 closes the winning handshake's transport, before any action
    /// of the new stage.
    fn enter(&mut self, cx: &mut Context, next: Stage) {
        match mem::replace(&mut self.stage, next) {
            Stage::Handshaking(walk) => self.spare_walk = walk,
            Stage::Connecting(targets) => self.leave_walk(cx, targets),
            _ => {}
        }
    }

    /// Phase 3 is over: the transport of the handshake it followed closes
    /// (the attempt itself ended when its reply won), and the walk's list
    /// (the decoder's buffer) goes.
    fn leave_walk(&mut self, cx: &mut Context, walk: TargetWalk) {
        cx.actions.push_back(Action::Close { attempt: walk.handshake() });
        drop(walk);
        self.lists.release();
    }

    /// Decides a held handshake reply if nothing can beat it any more.
    pub(super) fn settle_held(&mut self, cx: &mut Context, now: Instant, instant_closed: bool) {
        let Stage::Handshaking(walk) = &mut self.stage else { return };
        if let Some(won) = walk.settle(cx, now, instant_closed) {
            self.win(cx, won, now);
        }
    }

    fn follow_seeds(&mut self, cx: &mut Context, next: Next, now: Instant) {
        match next {
            Next::Wait => {}
            Next::Won(held) => self.win(cx, held, now),
            Next::Exhausted => self.round_failed(cx, now),
        }
    }

    fn follow_targets(&mut self, cx: &mut Context, walked: Walked, now: Instant) {
        match walked {
            Walked::Waiting => {}
            Walked::Exhausted => self.round_failed(cx, now),
            Walked::Accepted(session) => {
                let Opened { attempt, endpoint, instance, session_id, .. } = session.clone();
                self.enter(cx, Stage::Connected(session));
                cx.actions.push_back(Action::Connected { attempt, endpoint, instance, session_id });
            }
        }
    }

    /// A handshake reply won: every other pending handshake is cancelled and
    /// phase 3 walks its list (the handshake's transport stays open until
    /// then, see [`TargetWalk::handshake`]).
    fn win(&mut self, cx: &mut Context, held: HeldReply, now: Instant) {
        cx.timers.stop(Timer::Stagger);
        if let Stage::Handshaking(walk) = &mut self.stage {
            walk.cancel_pending(cx, now);
        }
        let HeldReply { attempt, seed_index, list, .. } = held;
        let (targets, outcome) = Targets::from_reply(&cx.config, seed_index, list, &mut self.lists);
        cx.log.finish(attempt, outcome, now);
        // Room for every session attempt of a list up to the kept length, so
        // the walk's records do not reallocate; a longer walk grows the log
        // as far as it gets.
        cx.log.reserve(targets.len().min(KEPT_ENTRIES));
        self.enter(cx, Stage::Connecting(TargetWalk::new(targets, attempt)));
        if let Stage::Connecting(walk) = &mut self.stage {
            let walked = walk.advance(cx, now);
            self.follow_targets(cx, walked, now);
        }
    }

    pub(super) fn on_timer(&mut self, cx: &mut Context, kind: Timer, now: Instant) {
        match kind {
            Timer::Deadline => self.fail(cx, FailReason::DeadlineExceeded, now),
            Timer::Decide => self.settle_held(cx, now, true),
            Timer::Stagger => {
                if let Stage::Handshaking(walk) = &mut self.stage {
                    walk.on_stagger(cx, now);
                }
            }
            Timer::Session => {
                if let Stage::Connecting(walk) = &self.stage {
                    if let Some(attempt) = walk.attempt() {
                        self.fail_attempt(cx, attempt, AttemptOutcome::TimedOut, now);
                    }
                }
            }
            Timer::Backoff => {
                if matches!(self.stage, Stage::Backoff) {
                    cx.round += 1;
                    self.start_round(cx, now);
                }
            }
        }
    }

    /// A reply for an attempt that is not waiting for one: a live attempt of
    /// the other phase got the wrong kind of reply (malformed); anything else
    /// is late or unknown and ignored.
    fn ignore_or_misfit(&mut self, cx: &mut Context, attempt: AttemptId, now: Instant) {
        let live = match &self.stage {
            Stage::Handshaking(walk) => walk.is_pending(attempt),
            Stage::Connecting(walk) => walk.attempt() == Some(attempt),
            _ => false,
        };
        if live {
            self.fail_attempt(cx, attempt, AttemptOutcome::Malformed(Malformation::WrongReplyKind), now);
        } else {
            cx.stats.ignored += 1;
        }
    }

    /// Ends a live attempt without success and moves on: the next seed (phase
    /// 1) or the next ranked entry (phase 3). Unknown attempts are ignored.
    pub(super) fn fail_attempt(
        &mut self,
        cx: &mut Context,
        attempt: AttemptId,
        outcome: AttemptOutcome,
        now: Instant,
    ) {
        match &mut self.stage {
            Stage::Handshaking(walk) => match walk.fail(cx, attempt, outcome, now) {
                Some(next) => self.follow_seeds(cx, next, now),
                None => cx.stats.ignored += 1,
            },
            Stage::Connecting(walk) => match walk.fail(cx, attempt, outcome, now) {
                Some(walked) => self.follow_targets(cx, walked, now),
                None => cx.stats.ignored += 1,
            },
            _ => cx.stats.ignored += 1,
        }
    }

    fn round_failed(&mut self, cx: &mut Context, now: Instant) {
        cx.timers.stop(Timer::Stagger);
        cx.timers.stop(Timer::Session);
        let retry = &cx.config.retry;
        if cx.round + 1 >= retry.max_rounds {
            return self.fail(cx, FailReason::RoundsExhausted, now);
        }
        let factor = 1u32.checked_shl(cx.round).unwrap_or(u32::MAX);
        let bound = retry.base.checked_mul(factor).map_or(retry.cap, |b| b.min(retry.cap));
        let bound_nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        let retry_at = now + Duration::from_nanos(cx.rng.below_or_eq(bound_nanos));
        self.enter(cx, Stage::Backoff);
        cx.timers.set(Timer::Backoff, retry_at);
        cx.actions.push_back(Action::RoundFailed { round: cx.round, retry_at });
    }

    pub(super) fn fail(&mut self, cx: &mut Context, reason: FailReason, now: Instant) {
        match mem::replace(&mut self.stage, Stage::Failed) {
            Stage::Handshaking(mut walk) => {
                walk.abandon(cx, now);
                self.spare_walk = walk;
            }
            Stage::Connecting(mut targets) => {
                if let Some(attempt) = targets.take_attempt() {
                    cx.finish(attempt, AttemptOutcome::Cancelled, now);
                }
                self.leave_walk(cx, targets);
            }
            Stage::Backoff => {}
            done @ (Stage::Connected(_) | Stage::Closed | Stage::Failed) => {
                self.stage = done;
                return;
            }
        }
        cx.timers.stop_all();
        let attempts = cx.log.records().to_vec();
        let error = ConnectFailure { reason, rounds: cx.round + 1, attempts };
        cx.actions.push_back(Action::Failed(error));
    }

    pub(super) fn close_session(&mut self, cx: &mut Context, lost: Option<String>) {
        if !matches!(self.stage, Stage::Connected(_)) {
            return;
        }
        if let Stage::Connected(session) = mem::replace(&mut self.stage, Stage::Closed) {
            cx.actions.push_back(Action::SessionClosed { endpoint: session.endpoint, lost });
        }
    }
}
