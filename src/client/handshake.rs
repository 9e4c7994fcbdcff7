//! Phase 1: the ordered (optionally staggered) walk over the seed list, up to
//! the winning handshake reply.
//!
//! The rule of a staggered walk (RFC 8305): a valid reply from a seed while
//! a seed earlier in the walk is still pending is held, and `poll_timeout`
//! returns the instant it arrived. The decision is made by the next
//! `handle_timeout`, or by the next event with a later `now`, or at once when
//! no earlier seed is pending any more; the held reply with the earliest walk
//! position wins. So replies delivered at the same `now` before
//! `handle_timeout` compete, and the earliest seed among them wins whatever
//! the delivery order.

use std::time::Instant;

use super::context::{Context, Timer};
use super::event::Action;
use super::log::{AttemptId, AttemptOutcome, Phase};
use crate::wire::{HandshakeOutcome, HandshakeReply, HandshakeRequest, Message, RankedList};

/// The seed walk of one round. Its buffers are kept between rounds (the
/// Connector holds the last walk), so later rounds reuse their capacity.
#[derive(Debug, Default)]
pub(super) struct HandshakeWalk {
    /// The walk order: indices into the configured seeds.
    order: Vec<usize>,
    /// The next position in `order` to start.
    next: usize,
    /// Handshakes in flight, each with its own deadline.
    pending: Vec<PendingHandshake>,
    /// A valid reply waiting for the end of its instant (see the module docs).
    held: Option<HeldReply>,
}

#[derive(Debug, Clone, Copy)]
struct PendingHandshake {
    attempt: AttemptId,
    walk_pos: usize,
    seed_index: usize,
    deadline: Instant,
}

/// A valid handshake reply; once decided, the one the round's phase 3 follows.
#[derive(Debug)]
pub(super) struct HeldReply {
    pub(super) attempt: AttemptId,
    walk_pos: usize,
    pub(super) seed_index: usize,
    pub(super) list: RankedList,
}

/// Where the walk goes after an input.
#[derive(Debug)]
pub(super) enum Next {
    /// Handshakes are pending or a reply is being decided.
    Wait,
    /// This reply won: phase 3 follows it.
    Won(HeldReply),
    /// Every seed had its turn and none is pending: the round failed.
    Exhausted,
}

impl HandshakeWalk {
    /// An empty walk with room for `seeds` seeds.
    pub(super) fn with_capacity(seeds: usize) -> Self {
        HandshakeWalk {
            order: Vec::with_capacity(seeds),
            pending: Vec::with_capacity(seeds),
            ..Default::default()
        }
    }

    /// Readies the walk for a new round, reusing its buffers: every seed in
    /// order, or shuffled.
    pub(super) fn begin(&mut self, cx: &mut Context) {
        self.order.clear();
        self.pending.clear();
        self.next = 0;
        self.held = None;
        self.order.extend(0..cx.config.seeds.len());
        if cx.config.shuffle_seeds {
            cx.rng.shuffle(&mut self.order);
        }
    }

    /// The earliest pending handshake's deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    /// The earliest pending handshake whose deadline is at or before `now`.
    pub(super) fn due(&self, now: Instant) -> Option<(Instant, AttemptId)> {
        self.pending
            .iter()
            .filter(|p| p.deadline <= now)
            .min_by_key(|p| p.deadline)
            .map(|p| (p.deadline, p.attempt))
    }

    /// Whether `attempt` is a handshake in flight.
    pub(super) fn is_pending(&self, attempt: AttemptId) -> bool {
        self.pending.iter().any(|p| p.attempt == attempt)
    }

    /// Starts the handshake to the next seed in the walk; `false` when every
    /// seed has had its turn this round.
    pub(super) fn start_next(&mut self, cx: &mut Context, now: Instant) -> bool {
        let Some(&seed_index) = self.order.get(self.next) else {
            cx.timers.stop(Timer::Stagger);
            return false;
        };
        let walk_pos = self.next;
        self.next += 1;
        let more = self.next < self.order.len();
        let endpoint = cx.config.seeds[seed_index].clone();
        let attempt = cx.log.start(cx.round, Phase::Handshake, seed_index, &endpoint, now);
        let deadline = now + cx.config.handshake_timeout;
        self.pending.push(PendingHandshake { attempt, walk_pos, seed_index, deadline });
        let message = Message::HandshakeRequest(HandshakeRequest {
            request_id: attempt.request_id(),
            salt: cx.rng.next_u64(),
            load_balance: cx.config.load_balance,
            cluster: cx.config.cluster.clone(),
        });
        cx.stats.handshakes += 1;
        cx.actions.push_back(Action::SendHandshake { attempt, seed_index, endpoint, message, deadline });
        match cx.config.attempt_delay {
            Some(delay) if more => cx.timers.set(Timer::Stagger, now + delay),
            _ => cx.timers.stop(Timer::Stagger),
        }
        true
    }

    /// The stagger delay passed: the next seed starts while earlier ones
    /// stay pending, unless a reply is already being decided.
    pub(super) fn on_stagger(&mut self, cx: &mut Context, now: Instant) {
        if self.held.is_none() {
            self.start_next(cx, now);
        }
    }

    /// Ends a pending handshake without success; `None` if `attempt` is not
    /// one. Unless a held reply is being decided, the next seed starts at
    /// once; with none left and nothing pending, the round failed.
    pub(super) fn fail(
        &mut self,
        cx: &mut Context,
        attempt: AttemptId,
        outcome: AttemptOutcome,
        now: Instant,
    ) -> Option<Next> {
        let pos = self.pending.iter().position(|p| p.attempt == attempt)?;
        self.pending.swap_remove(pos);
        cx.finish(attempt, outcome, now);
        if let Some(won) = self.settle(cx, now, false) {
            return Some(Next::Won(won));
        }
        if self.held.is_some() {
            return Some(Next::Wait);
        }
        if !self.start_next(cx, now) && self.pending.is_empty() {
            return Some(Next::Exhausted);
        }
        Some(Next::Wait)
    }

    /// A handshake reply; `None` if `attempt` is not pending. A reply must
    /// echo its attempt's request id; a refusal or an empty list fails the
    /// attempt; a ranked list is held until nothing can beat it.
    pub(super) fn on_reply(
        &mut self,
        cx: &mut Context,
        attempt: AttemptId,
        reply: HandshakeReply,
        now: Instant,
    ) -> Option<Next> {
        let pos = self.pending.iter().position(|p| p.attempt == attempt)?;
        if let Some(outcome) = attempt.echo_fault(reply.request_id) {
            return self.fail(cx, attempt, outcome, now);
        }
        let list = match reply.outcome {
            HandshakeOutcome::Refused(reason) => {
                return self.fail(cx, attempt, AttemptOutcome::Refused(reason), now)
            }
            // In direct mode too (SPEC 1.4): an answering seed that cannot
            // take a session is a refusal, so the walk moves on.
            HandshakeOutcome::Ranked(list) if list.entries.is_empty() => {
                return self.fail(cx, attempt, AttemptOutcome::EmptyList, now)
            }
            HandshakeOutcome::Ranked(list) => list,
        };
        let entry = self.pending.swap_remove(pos);
        if self.held.as_ref().is_some_and(|held| held.walk_pos < entry.walk_pos) {
            cx.finish(attempt, AttemptOutcome::Superseded, now);
            return Some(Next::Wait);
        }
        let held = HeldReply { attempt, walk_pos: entry.walk_pos, seed_index: entry.seed_index, list };
        if let Some(beaten) = self.held.replace(held) {
            cx.finish(beaten.attempt, AttemptOutcome::Superseded, now);
        }
        cx.timers.set(Timer::Decide, now);
        Some(self.settle(cx, now, false).map_or(Next::Wait, Next::Won))
    }

    /// Decides a held reply once nothing can beat it: at the close of its
    /// instant (`instant_closed`, or any later `now`), or as soon as no seed
    /// earlier in the walk is pending.
    pub(super) fn settle(
        &mut self,
        cx: &mut Context,
        now: Instant,
        instant_closed: bool,
    ) -> Option<HeldReply> {
        let held = self.held.as_ref()?;
        let decided_at = cx.timers.get(Timer::Decide).unwrap_or(now);
        let unbeatable = !self.pending.iter().any(|p| p.walk_pos < held.walk_pos);
        if unbeatable || instant_closed || now > decided_at {
            cx.timers.stop(Timer::Decide);
            return self.held.take();
        }
        None
    }

    /// Every pending handshake ends as cancelled (another one won, or the
    /// round was abandoned); the walk keeps its buffers.
    pub(super) fn cancel_pending(&mut self, cx: &mut Context, now: Instant) {
        for pending in self.pending.drain(..) {
            cx.finish(pending.attempt, AttemptOutcome::Cancelled, now);
        }
    }

    /// The round was abandoned: pending handshakes are cancelled and a held
    /// reply is superseded.
    pub(super) fn abandon(&mut self, cx: &mut Context, now: Instant) {
        self.cancel_pending(cx, now);
        if let Some(held) = self.held.take() {
            cx.finish(held.attempt, AttemptOutcome::Superseded, now);
        }
    }
}
