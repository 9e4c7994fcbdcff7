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

use super::log::{AttemptId, AttemptOutcome, Phase};
use super::targets::{TargetWalk, Targets, KEPT_ENTRIES};
use super::{Action, Connector, Stage, Timer};
use crate::wire::{HandshakeOutcome, HandshakeReply, HandshakeRequest, Message, RankedList};

/// The seed walk of one round.
#[derive(Debug, Default)]
pub(super) struct HandshakeWalk {
    /// The walk order: indices into the configured seeds.
    pub(super) order: Vec<usize>,
    /// The next position in `order` to start.
    pub(super) next: usize,
    /// Handshakes in flight, each with its own deadline.
    pub(super) pending: Vec<PendingHandshake>,
    /// A valid reply waiting for the end of its instant (see the module docs
    /// on staggering).
    pub(super) held: Option<HeldReply>,
}

impl HandshakeWalk {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct PendingHandshake {
    pub(super) attempt: AttemptId,
    pub(super) walk_pos: usize,
    seed_index: usize,
    deadline: Instant,
}

#[derive(Debug)]
pub(super) struct HeldReply {
    pub(super) attempt: AttemptId,
    walk_pos: usize,
    seed_index: usize,
    list: RankedList,
}

impl Connector {
    pub(super) fn start_round(&mut self, now: Instant) {
        self.stats.rounds += 1;
        let mut walk = self.spare.take_walk();
        walk.order.extend(0..self.config.seeds.len());
        if self.config.shuffle_seeds {
            self.rng.shuffle(&mut walk.order);
        }
        self.enter(Stage::Handshaking(walk));
        self.log.reserve(self.config.seeds.len());
        self.start_next_handshake(now);
    }

    /// Starts the handshake to the next seed in the walk; `false` when every
    /// seed has had its turn this round.
    pub(super) fn start_next_handshake(&mut self, now: Instant) -> bool {
        let Stage::Handshaking(walk) = &mut self.stage else { return false };
        let Some(&seed_index) = walk.order.get(walk.next) else {
            self.timers.stop(Timer::Stagger);
            return false;
        };
        let walk_pos = walk.next;
        walk.next += 1;
        let more = walk.next < walk.order.len();
        let endpoint = self.config.seeds[seed_index].clone();
        let attempt = self.log.start(self.round, Phase::Handshake, seed_index, &endpoint, now);
        let deadline = now + self.config.handshake_timeout;
        walk.pending.push(PendingHandshake { attempt, walk_pos, seed_index, deadline });
        let message = Message::HandshakeRequest(HandshakeRequest {
            request_id: attempt.request_id(),
            salt: self.rng.next_u64(),
            load_balance: self.config.load_balance,
            cluster: self.config.cluster.clone(),
        });
        self.stats.handshakes += 1;
        self.actions.push_back(Action::SendHandshake { attempt, seed_index, endpoint, message, deadline });
        match self.config.attempt_delay {
            Some(delay) if more => self.timers.set(Timer::Stagger, now + delay),
            _ => self.timers.stop(Timer::Stagger),
        }
        true
    }

    /// The stagger delay passed: the next seed starts while earlier ones
    /// stay pending, unless a reply is already being decided.
    pub(super) fn on_stagger(&mut self, now: Instant) {
        if matches!(&self.stage, Stage::Handshaking(walk) if walk.held.is_none()) {
            self.start_next_handshake(now);
        }
    }

    /// The earliest pending handshake whose deadline is at or before `now`.
    pub(super) fn handshake_due(&self, now: Instant) -> Option<(Instant, AttemptId)> {
        let Stage::Handshaking(walk) = &self.stage else { return None };
        walk.pending
            .iter()
            .filter(|p| p.deadline <= now)
            .min_by_key(|p| p.deadline)
            .map(|p| (p.deadline, p.attempt))
    }

    pub(super) fn pending_position(&self, attempt: AttemptId) -> Option<usize> {
        let Stage::Handshaking(walk) = &self.stage else { return None };
        walk.pending.iter().position(|p| p.attempt == attempt)
    }

    /// Removes `attempt` from the pending handshakes; `false` if it is not one.
    pub(super) fn take_pending(&mut self, attempt: AttemptId) -> bool {
        let Some(pos) = self.pending_position(attempt) else { return false };
        if let Stage::Handshaking(walk) = &mut self.stage {
            walk.pending.swap_remove(pos);
        }
        true
    }

    /// A handshake failed: unless a held reply is being decided, the next
    /// seed starts at once; with none left and nothing pending, the round
    /// failed.
    pub(super) fn after_handshake_failed(&mut self, now: Instant) {
        self.settle_held(now, false);
        let Stage::Handshaking(walk) = &self.stage else { return };
        if walk.held.is_some() {
            return;
        }
        if !self.start_next_handshake(now) && self.pending_count() == 0 {
            self.round_failed(now);
        }
    }

    fn pending_count(&self) -> usize {
        match &self.stage {
            Stage::Handshaking(walk) => walk.pending.len(),
            _ => 0,
        }
    }

    pub(super) fn on_handshake_reply(&mut self, attempt: AttemptId, reply: HandshakeReply, now: Instant) {
        if self.pending_position(attempt).is_none() {
            return self.ignore_or_misfit(attempt, now);
        }
        if !self.echoes_request_id(attempt, reply.request_id, now) {
            return;
        }
        let list = match reply.outcome {
            HandshakeOutcome::Refused(reason) => {
                return self.fail_attempt(attempt, AttemptOutcome::Refused(reason), now)
            }
            // In direct mode too (SPEC 1.4): an answering seed that cannot
            // take a session is a refusal, so the walk moves on.
            HandshakeOutcome::Ranked(list) if list.entries.is_empty() => {
                return self.fail_attempt(attempt, AttemptOutcome::EmptyList, now)
            }
            HandshakeOutcome::Ranked(list) => list,
        };
        let Stage::Handshaking(walk) = &mut self.stage else { return };
        let Some(pos) = walk.pending.iter().position(|p| p.attempt == attempt) else { return };
        let entry = walk.pending.swap_remove(pos);
        if walk.held.as_ref().is_some_and(|held| held.walk_pos < entry.walk_pos) {
            return self.finish(attempt, AttemptOutcome::Superseded, now);
        }
        let held = HeldReply { attempt, walk_pos: entry.walk_pos, seed_index: entry.seed_index, list };
        if let Some(beaten) = walk.held.replace(held) {
            self.finish(beaten.attempt, AttemptOutcome::Superseded, now);
        }
        self.timers.set(Timer::Decide, now);
        self.settle_held(now, false);
    }

    /// Decides a held reply once nothing can beat it: at the close of its
    /// instant (`instant_closed`, or any later `now`), or as soon as no seed
    /// earlier in the walk is pending.
    pub(super) fn settle_held(&mut self, now: Instant, instant_closed: bool) {
        let Stage::Handshaking(walk) = &mut self.stage else { return };
        let Some(held) = &walk.held else { return };
        let decided_at = self.timers.get(Timer::Decide).unwrap_or(now);
        let unbeatable = !walk.pending.iter().any(|p| p.walk_pos < held.walk_pos);
        if unbeatable || instant_closed || now > decided_at {
            self.timers.stop(Timer::Decide);
            if let Some(held) = walk.held.take() {
                self.win_handshake(held, now);
            }
        }
    }

    fn win_handshake(&mut self, held: HeldReply, now: Instant) {
        self.timers.stop(Timer::Stagger);
        if let Stage::Handshaking(walk) = &mut self.stage {
            let mut pending = std::mem::take(&mut walk.pending);
            for p in pending.drain(..) {
                self.finish(p.attempt, AttemptOutcome::Cancelled, now);
            }
            if let Stage::Handshaking(walk) = &mut self.stage {
                walk.pending = pending;
            }
        }
        let HeldReply { attempt, seed_index, list, .. } = held;
        let targets = if self.config.load_balance {
            let stale = list.stale;
            let mut entries = list.entries;
            entries.truncate(self.config.max_list_len);
            self.spare.drop_repeats(&mut entries);
            self.finish_keeping_transport(
                attempt,
                AttemptOutcome::Ranked { entries: entries.len(), stale },
                now,
            );
            Targets::Ranked(entries)
        } else {
            let endpoint = self.config.seeds[seed_index].clone();
            let instance = list.entries.iter().find(|e| e.endpoint.same_target(&endpoint)).map(|e| e.id);
            self.finish_keeping_transport(attempt, AttemptOutcome::Answered, now);
            Targets::Direct { endpoint, instance }
        };
        // Room for every session attempt of a list up to the kept length, so
        // the walk's records do not reallocate; a longer walk grows the log
        // as far as it gets.
        self.log.reserve(targets.len().min(KEPT_ENTRIES));
        self.enter(Stage::Connecting(TargetWalk::new(targets, attempt)));
        self.next_target(now);
    }
}
