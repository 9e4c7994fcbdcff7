//! The reference model of one connection effort: its attempts, stage and
//! the handshake replies it has seen; what it predicts is checked in
//! `checks.rs`.

use super::*;

mod checks;

/// One attempt as the model knows it.
#[derive(Debug)]
struct Attempt {
    phase: Phase,
    round: u32,
    /// Walk position (handshakes) or rank (session requests).
    pos: usize,
    seed_index: usize,
    deadline: Instant,
    /// Closed, or became the session.
    closed: bool,
    /// The winning handshake whose list phase 3 walks: finished, but its
    /// transport stays open until the walk ends.
    walked: bool,
    session: bool,
    /// The effort it belongs to.
    effort: u32,
}

#[derive(Debug)]
pub(super) enum Stage {
    Handshaking,
    Connecting { targets: Vec<(Endpoint, Option<InstanceId>)>, attempt: AttemptId },
    Backoff { retry_at: Instant },
    Connected { attempt: AttemptId, endpoint: Endpoint },
    Closed,
    Failed,
}

/// The reference model: fed every input's expected effect and every action.
#[derive(Debug)]
pub(super) struct Model {
    config: ClientConfig,
    effort: u32,
    effort_start: Instant,
    round: u32,
    pub(super) stage: Stage,
    attempts: BTreeMap<AttemptId, Attempt>,
    /// Every attempt ever started, in order, for picking.
    seen: Vec<AttemptId>,
    /// Seeds started this round, in walk order.
    walk: Vec<usize>,
    last_handshake_start: Option<Instant>,
    /// Valid replies delivered in the open instant: (instant, walk position,
    /// attempt, list).
    candidates: Vec<(Instant, usize, AttemptId, RankedList)>,
    pub(super) session_lost: Option<String>,
    /// A handshake was closed since the last input.
    handshake_ended_in_drain: bool,
}

impl Model {
    pub(super) fn new(config: ClientConfig, now: Instant) -> Self {
        Model {
            config,
            effort: 0,
            effort_start: now,
            round: 0,
            stage: Stage::Handshaking,
            attempts: BTreeMap::new(),
            seen: Vec::new(),
            walk: Vec::new(),
            last_handshake_start: None,
            candidates: Vec::new(),
            session_lost: None,
            handshake_ended_in_drain: false,
        }
    }

    pub(super) fn new_effort(&mut self, now: Instant) {
        self.effort += 1;
        self.effort_start = now;
        self.round = 0;
        self.stage = Stage::Handshaking;
        self.walk.clear();
        self.last_handshake_start = None;
        self.candidates.clear();
    }

    fn deadline(&self) -> Option<Instant> {
        self.config.overall_deadline.map(|d| self.effort_start + d)
    }

    pub(super) fn pick(&self, p: u8) -> Option<AttemptId> {
        (!self.seen.is_empty()).then(|| self.seen[usize::from(p) % self.seen.len()])
    }

    /// Live: started and not closed (the session's attempt counts as closed).
    fn is_live(&self, attempt: AttemptId) -> bool {
        self.attempts.get(&attempt).is_some_and(|a| !a.closed && !a.walked)
    }

    /// Waiting for a reply: live and not a reply already held.
    pub(super) fn waits(&self, attempt: AttemptId) -> bool {
        self.is_live(attempt) && !self.candidates.iter().any(|c| c.2 == attempt)
    }

    pub(super) fn handshake_reply_cause(
        &self,
        attempt: AttemptId,
        wrong_id: bool,
        outcome: &HandshakeOutcome,
    ) -> Cause {
        if !self.waits(attempt) {
            return Cause::Ignored;
        }
        let valid = matches!(outcome, HandshakeOutcome::Ranked(list) if !list.entries.is_empty());
        // A handshake reply on a session attempt is of the wrong kind.
        if wrong_id || !valid || self.attempts[&attempt].phase == Phase::Session {
            Cause::Ends(attempt)
        } else {
            Cause::Candidate(attempt)
        }
    }

    pub(super) fn session_reply_cause(
        &self,
        attempt: AttemptId,
        wrong_id: bool,
        outcome: SessionOutcome,
    ) -> Cause {
        if !self.waits(attempt) {
            return Cause::Ignored;
        }
        match outcome {
            SessionOutcome::Accepted { session_id }
                if !wrong_id && self.attempts[&attempt].phase == Phase::Session =>
            {
                Cause::Accepts(attempt, session_id)
            }
            _ => Cause::Ends(attempt),
        }
    }

    pub(super) fn candidate(&mut self, attempt: AttemptId, list: RankedList, now: Instant) {
        if let Some(&(at, ..)) = self.candidates.first() {
            assert_eq!(at, now, "a reply held across instants");
        }
        let pos = self.attempts[&attempt].pos;
        self.candidates.push((now, pos, attempt, list));
    }

    /// The predicted winner: the earliest walk position among the replies of
    /// the instant.
    fn winner(&self) -> Option<&(Instant, usize, AttemptId, RankedList)> {
        self.candidates.iter().min_by_key(|c| c.1)
    }

    /// Phase 3's targets for the winning reply.
    fn targets(&self, seed_index: usize, list: &RankedList) -> Vec<(Endpoint, Option<InstanceId>)> {
        if !self.config.load_balance {
            let seed = &self.config.seeds[seed_index];
            let instance = list.entries.iter().find(|e| same_target(&e.endpoint, seed)).map(|e| e.id);
            return vec![(seed.clone(), instance)];
        }
        let cut = &list.entries[..list.entries.len().min(self.config.max_list_len)];
        cut.iter()
            .enumerate()
            .filter(|(i, e)| !cut[..*i].iter().any(|p| p.id == e.id || same_target(&p.endpoint, &e.endpoint)))
            .map(|(_, e)| (e.endpoint.clone(), Some(e.id)))
            .collect()
    }

    fn live_of_round(&self, phase: Phase) -> impl Iterator<Item = (&AttemptId, &Attempt)> {
        let (effort, round) = (self.effort, self.round);
        self.attempts.iter().filter(move |(_, a)| {
            !a.closed && !a.walked && a.effort == effort && a.round == round && a.phase == phase
        })
    }

    fn all_closed_but(&self, keep: Option<AttemptId>, what: &str) {
        let open: Vec<_> = self
            .attempts
            .iter()
            .filter(|(id, a)| !a.closed && Some(**id) != keep)
            .map(|(id, _)| id)
            .collect();
        assert!(open.is_empty(), "{what}: attempts {open:?} never closed");
    }

    fn done(&self) -> bool {
        matches!(self.stage, Stage::Connected { .. } | Stage::Closed | Stage::Failed)
    }

    /// A round that failed had tried every seed, or every target.
    fn check_exhausted(&self) {
        match &self.stage {
            Stage::Handshaking => {
                assert_eq!(self.walk.len(), self.config.seeds.len(), "round failed with seeds untried")
            }
            Stage::Connecting { targets, attempt } => {
                assert_eq!(self.attempts[attempt].pos + 1, targets.len(), "round failed with targets untried")
            }
            // The overall deadline can end a backoff.
            Stage::Backoff { .. } => {}
            other => panic!("a round failed in {other:?}"),
        }
    }

    fn backoff_bound(&self) -> Duration {
        let retry = &self.config.retry;
        let doubled = retry.base.as_nanos().checked_mul(1u128.checked_shl(self.round).unwrap_or(0));
        let bound = match doubled {
            Some(n) if n > 0 => n.min(retry.cap.as_nanos()),
            _ => retry.cap.as_nanos(),
        };
        Duration::from_nanos(u64::try_from(bound).unwrap_or(u64::MAX))
    }
}
