//! Phase 3: the walk down the ranked list (or, in direct mode, the one
//! answering seed), one session request at a time, until one is accepted.

use std::time::Instant;

use super::context::{Context, Timer};
use super::event::{Action, Opened};
use super::log::{AttemptId, AttemptOutcome, Phase};
use crate::config::ClientConfig;
use crate::endpoint::Endpoint;
use crate::wire::dedup::{drop_repeats, DedupScratch};
use crate::wire::{Message, RankedEntry, RankedList, SessionOutcome, SessionReply, SessionRequest};
use crate::workload::InstanceId;

/// The list length whose buffers a Connector keeps between rounds: above
/// AX's 99 instances per environment, so rounds at that size reuse them and
/// allocate nothing, while a client that once received a list of thousands
/// (a 1 000-instance cluster with a long `max_list_len`) does not hold tens of
/// kilobytes for the rest of its session.
pub(super) const KEPT_ENTRIES: usize = 128;

/// The duplicate finder's scratch, kept between rounds. What a long list
/// grew is given back when its walk ends (see [`KEPT_ENTRIES`]): a connected
/// client holds its session, not its last list.
#[derive(Debug, Default)]
pub(super) struct ListScratch {
    dedup: DedupScratch,
}

impl ListScratch {
    /// A walk is over: keep no more than a list of [`KEPT_ENTRIES`] needs.
    pub(super) fn release(&mut self) {
        self.dedup.shrink_to(KEPT_ENTRIES);
    }
}

/// Where phase 3 may go.
#[derive(Debug)]
pub(super) enum Targets {
    /// The ranked list, best first, cut and without repeats.
    Ranked(Vec<RankedEntry>),
    /// Direct mode: the seed that answered.
    Direct { endpoint: Endpoint, instance: Option<InstanceId> },
}

impl Targets {
    /// The targets of the winning handshake reply from seed `seed_index`,
    /// and the outcome that handshake is logged with. Load balancing: the
    /// list cut to `max_list_len`, every entry whose target (host and port)
    /// or instance id appeared earlier dropped (the one duplicate finder the
    /// decoder uses too). Direct mode: the seed itself.
    pub(super) fn from_reply(
        config: &ClientConfig,
        seed_index: usize,
        list: RankedList,
        scratch: &mut ListScratch,
    ) -> (Targets, AttemptOutcome) {
        if config.load_balance {
            let stale = list.stale;
            let mut entries = list.entries;
            entries.truncate(config.max_list_len);
            drop_repeats(&mut entries, &mut scratch.dedup);
            let outcome = AttemptOutcome::Ranked { entries: entries.len(), stale };
            (Targets::Ranked(entries), outcome)
        } else {
            let endpoint = config.seeds[seed_index].clone();
            let instance = list.entries.iter().find(|e| e.endpoint.same_target(&endpoint)).map(|e| e.id);
            (Targets::Direct { endpoint, instance }, AttemptOutcome::Answered)
        }
    }

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

/// Where the walk goes after an input.
#[derive(Debug)]
pub(super) enum Walked {
    /// A session request is in flight.
    Waiting,
    /// The list is used up: the round failed.
    Exhausted,
    /// The instance accepted: the session.
    Accepted(Opened),
}

/// The target walk of one round.
#[derive(Debug)]
pub(super) struct TargetWalk {
    targets: Targets,
    /// The position of the current (or next) session attempt.
    rank: usize,
    /// The session request in flight, if any.
    attempt: Option<AttemptId>,
    /// The handshake that produced this walk: its transport stays open until
    /// the walk ends, so the instance that ranked knows the client is still
    /// on its way (its reservation stays) and learns the moment it is not.
    handshake: AttemptId,
}

impl TargetWalk {
    pub(super) fn new(targets: Targets, handshake: AttemptId) -> Self {
        TargetWalk { targets, rank: 0, attempt: None, handshake }
    }

    /// The session request in flight, if any.
    pub(super) fn attempt(&self) -> Option<AttemptId> {
        self.attempt
    }

    /// The handshake whose list this is (its transport closes when the walk ends).
    pub(super) fn handshake(&self) -> AttemptId {
        self.handshake
    }

    /// The session request in flight, taken out of the walk (the round is
    /// being abandoned).
    pub(super) fn take_attempt(&mut self) -> Option<AttemptId> {
        self.attempt.take()
    }

    /// Sends the session request to the target at the current rank, or
    /// reports the list used up.
    pub(super) fn advance(&mut self, cx: &mut Context, now: Instant) -> Walked {
        if self.attempt.take().is_some() {
            self.rank += 1;
        }
        let rank = self.rank;
        let Some((endpoint, _)) = self.targets.get(rank) else {
            cx.timers.stop(Timer::Session);
            return Walked::Exhausted;
        };
        let endpoint = endpoint.clone();
        let attempt = cx.log.start(cx.round, Phase::Session, rank, &endpoint, now);
        self.attempt = Some(attempt);
        let deadline = now + cx.config.connect_timeout;
        cx.timers.set(Timer::Session, deadline);
        cx.stats.session_requests += 1;
        let message = Message::SessionRequest(SessionRequest {
            request_id: attempt.request_id(),
            credential: cx.credential.clone(),
        });
        cx.actions.push_back(Action::SendSessionRequest { attempt, rank, endpoint, message, deadline });
        Walked::Waiting
    }

    /// Ends the session request in flight without success and moves on to
    /// the next entry; `None` if `attempt` is not that request.
    pub(super) fn fail(
        &mut self,
        cx: &mut Context,
        attempt: AttemptId,
        outcome: AttemptOutcome,
        now: Instant,
    ) -> Option<Walked> {
        if self.attempt != Some(attempt) {
            return None;
        }
        cx.finish(attempt, outcome, now);
        Some(self.advance(cx, now))
    }

    /// A session reply; `None` if `attempt` is not the request in flight. A
    /// reply must echo its attempt's request id; a rejection moves on.
    pub(super) fn on_reply(
        &mut self,
        cx: &mut Context,
        attempt: AttemptId,
        reply: SessionReply,
        now: Instant,
    ) -> Option<Walked> {
        if self.attempt != Some(attempt) {
            return None;
        }
        if let Some(outcome) = attempt.echo_fault(reply.request_id) {
            return self.fail(cx, attempt, outcome, now);
        }
        let session_id = match reply.outcome {
            SessionOutcome::Rejected(reason) => {
                return self.fail(cx, attempt, AttemptOutcome::Rejected(reason), now)
            }
            SessionOutcome::Accepted { session_id } => session_id,
        };
        // The request in flight always has its target.
        let Some((endpoint, instance)) = self.targets.get(self.rank) else { return Some(Walked::Waiting) };
        let endpoint = endpoint.clone();
        cx.finish(attempt, AttemptOutcome::Accepted { session_id }, now);
        cx.timers.stop_all();
        Some(Walked::Accepted(Opened { attempt, endpoint, instance, session_id, round: cx.round }))
    }
}
