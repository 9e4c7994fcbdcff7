//! Phase 3: the walk down the ranked list (or, in direct mode, the one
//! answering seed), one session request at a time, until one is accepted.

use std::time::Instant;

use super::event::Opened;
use super::handshake::HandshakeWalk;
use super::log::{AttemptId, AttemptOutcome, Phase};
use super::{Action, Connector, Stage, Timer};
use crate::endpoint::Endpoint;
use crate::wire::dedup::{drop_repeats, DedupScratch};
use crate::wire::{Message, RankedEntry, SessionOutcome, SessionReply, SessionRequest};
use crate::workload::InstanceId;

/// Where phase 3 may go.
#[derive(Debug)]
pub(super) enum Targets {
    /// The ranked list, best first, cut and without repeats.
    Ranked(Vec<RankedEntry>),
    /// Direct mode: the seed that answered.
    Direct { endpoint: Endpoint, instance: Option<InstanceId> },
}

impl Targets {
    pub(super) fn len(&self) -> usize {
        match self {
            Targets::Ranked(entries) => entries.len(),
            Targets::Direct { .. } => 1,
        }
    }

    fn get(&self, rank: usize) -> Option<(&Endpoint, Option<InstanceId>)> {
        match self {
            Targets::Ranked(entries) => entries.get(rank).map(|e| (&e.endpoint, Some(e.id))),
            Targets::Direct { endpoint, instance } => (rank == 0).then_some((endpoint, *instance)),
        }
    }
}

/// The target walk of one round.
#[derive(Debug)]
pub(super) struct TargetWalk {
    targets: Targets,
    /// The position of the current (or next) session attempt.
    rank: usize,
    /// The session request in flight, if any.
    pub(super) attempt: Option<AttemptId>,
    /// The handshake that produced this walk: its transport stays open until
    /// the walk ends, so the instance that ranked knows the client is still
    /// on its way (its reservation stays) and learns the moment it is not.
    pub(super) handshake: AttemptId,
}

impl TargetWalk {
    pub(super) fn new(targets: Targets, handshake: AttemptId) -> Self {
        TargetWalk { targets, rank: 0, attempt: None, handshake }
    }
}

/// Buffers of finished stages, so later rounds reuse their capacity instead
/// of allocating again. What a long list grew is given back when its walk
/// ends (see [`KEPT_ENTRIES`]): a connected client holds its session, not its
/// last list.
#[derive(Debug, Default)]
pub(super) struct Spare {
    walk: HandshakeWalk,
    dedup: DedupScratch,
}

/// The list length whose buffers a Connector keeps between rounds: above
/// AX's 99 instances per environment, so rounds at that size reuse them and
/// allocate nothing, while a client that once received a list of thousands
/// (a 1 000-instance cluster with a long `max_list_len`) does not hold tens of
/// kilobytes for the rest of its session.
pub(super) const KEPT_ENTRIES: usize = 128;

impl Spare {
    pub(super) fn with_seeds(seeds: usize) -> Self {
        let mut spare = Spare::default();
        spare.walk.order.reserve(seeds);
        spare.walk.pending.reserve(seeds);
        spare
    }

    /// An empty walk with the capacity of the last one.
    pub(super) fn take_walk(&mut self) -> HandshakeWalk {
        let mut walk = std::mem::take(&mut self.walk);
        walk.order.clear();
        walk.pending.clear();
        walk.next = 0;
        walk.held = None;
        walk
    }

    pub(super) fn keep_walk(&mut self, walk: HandshakeWalk) {
        self.walk = walk;
    }

    /// The walk is over: its list (the decoder's buffer, not one of ours)
    /// goes, and the duplicate finder keeps no more than a list of
    /// [`KEPT_ENTRIES`] needs.
    pub(super) fn release_list(&mut self, walk: TargetWalk) {
        drop(walk);
        self.dedup.shrink_to(KEPT_ENTRIES);
    }

    /// Drops every entry whose target (host and port) or instance id
    /// appeared earlier: the one duplicate finder the decoder uses too.
    pub(super) fn drop_repeats(&mut self, entries: &mut Vec<RankedEntry>) {
        drop_repeats(entries, &mut self.dedup);
    }
}

impl Connector {
    /// The session request in flight, if any.
    pub(super) fn session_attempt(&self) -> Option<AttemptId> {
        match &self.stage {
            Stage::Connecting(walk) => walk.attempt,
            _ => None,
        }
    }

    /// Sends the session request to the target at the current rank, or ends
    /// the round when the list is used up.
    pub(super) fn next_target(&mut self, now: Instant) {
        let Stage::Connecting(walk) = &mut self.stage else { return };
        if walk.attempt.take().is_some() {
            walk.rank += 1;
        }
        let rank = walk.rank;
        let Some((endpoint, _)) = walk.targets.get(rank) else {
            self.timers.stop(Timer::Session);
            return self.round_failed(now);
        };
        let endpoint = endpoint.clone();
        let attempt = self.log.start(self.round, Phase::Session, rank, &endpoint, now);
        walk.attempt = Some(attempt);
        let deadline = now + self.config.connect_timeout;
        self.timers.set(Timer::Session, deadline);
        self.stats.session_requests += 1;
        let message = Message::SessionRequest(SessionRequest {
            request_id: attempt.request_id(),
            credential: self.credential.clone(),
        });
        self.actions.push_back(Action::SendSessionRequest { attempt, rank, endpoint, message, deadline });
    }

    pub(super) fn on_session_reply(&mut self, attempt: AttemptId, reply: SessionReply, now: Instant) {
        if self.session_attempt() != Some(attempt) {
            return self.ignore_or_misfit(attempt, now);
        }
        if !self.echoes_request_id(attempt, reply.request_id, now) {
            return;
        }
        let session_id = match reply.outcome {
            SessionOutcome::Rejected(reason) => {
                return self.fail_attempt(attempt, AttemptOutcome::Rejected(reason), now)
            }
            SessionOutcome::Accepted { session_id } => session_id,
        };
        let Stage::Connecting(walk) = &self.stage else { return };
        let Some((endpoint, instance)) = walk.targets.get(walk.rank) else { return };
        let endpoint = endpoint.clone();
        self.finish(attempt, AttemptOutcome::Accepted { session_id }, now);
        self.timers.stop_all();
        let session = Opened { attempt, endpoint: endpoint.clone(), instance, session_id, round: self.round };
        self.enter(Stage::Connected(session));
        self.actions.push_back(Action::Connected { attempt, endpoint, instance, session_id });
    }
}
