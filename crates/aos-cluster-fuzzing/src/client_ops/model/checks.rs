//! The model's checks: each action against what the last input may cause,
//! and the machine's state after every input.

use super::*;

impl Model {
    pub(crate) fn action(&mut self, c: &Connector, action: &Action, cause: Cause, now: Instant) {
        if let Some(deadline) = self.deadline() {
            if matches!(action, Action::SendHandshake { .. } | Action::SendSessionRequest { .. }) {
                assert!(now < deadline, "an attempt started at or after the overall deadline");
            }
        }
        match action {
            Action::SendHandshake { attempt, seed_index, endpoint, message, .. } => {
                let Message::HandshakeRequest(request) = message else {
                    panic!("a handshake action carries {message:?}")
                };
                if let Stage::Backoff { retry_at } = self.stage {
                    assert!(now >= retry_at, "a round started before its backoff ended");
                    assert_eq!(cause, Cause::Timeout, "a round started by an event");
                    self.round += 1;
                    self.walk.clear();
                    self.last_handshake_start = None;
                    self.stage = Stage::Handshaking;
                }
                assert!(matches!(self.stage, Stage::Handshaking), "handshake in {:?}", self.stage);
                assert!(self.seen.last().is_none_or(|last| last < attempt), "attempt ids not fresh");
                assert_eq!(request.request_id, attempt.request_id());
                assert_eq!(request.cluster, self.config.cluster, "the cluster name");
                assert_eq!(request.load_balance, self.config.load_balance);
                assert_eq!(*endpoint, self.config.seeds[*seed_index]);
                assert!(!self.walk.contains(seed_index), "a seed twice in one round");
                if !self.config.shuffle_seeds {
                    assert_eq!(*seed_index, self.walk.len(), "seeds out of order");
                }
                assert!(self.candidates.is_empty(), "a handshake started while a reply was held");
                let others = self.live_of_round(Phase::Handshake).count();
                match (self.config.attempt_delay, self.last_handshake_start) {
                    (None, _) => assert_eq!(others, 0, "two handshakes at once without staggering"),
                    // A failure starts the next seed at once; otherwise the
                    // delay must have passed since the last start.
                    (Some(delay), Some(last)) if others > 0 && !self.handshake_ended_in_drain => {
                        assert!(now >= last + delay, "a staggered handshake before its delay")
                    }
                    _ => {}
                }
                self.attempts.insert(
                    *attempt,
                    Attempt {
                        phase: Phase::Handshake,
                        round: self.round,
                        pos: self.walk.len(),
                        seed_index: *seed_index,
                        deadline: now + self.config.handshake_timeout,
                        closed: false,
                        walked: false,
                        session: false,
                        effort: self.effort,
                    },
                );
                self.walk.push(*seed_index);
                self.last_handshake_start = Some(now);
                self.seen.push(*attempt);
            }
            Action::SendSessionRequest { attempt, rank, endpoint, message, .. } => {
                let Message::SessionRequest(request) = message else {
                    panic!("a session action carries {message:?}")
                };
                assert_eq!(request.request_id, attempt.request_id());
                let targets = match std::mem::replace(&mut self.stage, Stage::Failed) {
                    Stage::Handshaking => {
                        // The decision: the predicted winner, with every other
                        // handshake of the round closed.
                        let (_, _, winner, list) = self.winner().expect("a winner among the replies").clone();
                        let won = &self.attempts[&winner];
                        assert!(!won.closed, "the winning handshake {winner} closed before its walk");
                        let record = c.attempts().iter().find(|r| r.attempt == winner).expect("logged");
                        let targets = self.targets(won.seed_index, &list);
                        let expected = if self.config.load_balance {
                            AttemptOutcome::Ranked { entries: targets.len(), stale: list.stale }
                        } else {
                            AttemptOutcome::Answered
                        };
                        assert_eq!(record.outcome, expected, "the winning handshake {winner}");
                        if let Some(won) = self.attempts.get_mut(&winner) {
                            won.walked = true;
                        }
                        let open: Vec<_> = self.live_of_round(Phase::Handshake).map(|(id, _)| *id).collect();
                        assert!(open.is_empty(), "handshakes {open:?} still open after {winner} won");
                        self.candidates.clear();
                        assert_eq!(*rank, 0);
                        targets
                    }
                    Stage::Connecting { targets, attempt: previous } => {
                        assert!(self.attempts[&previous].closed, "the previous session attempt not closed");
                        let walk_closed = self.attempts.values().any(|a| {
                            a.walked && a.closed && a.round == self.round && a.effort == self.effort
                        });
                        assert!(!walk_closed, "the walked handshake closed while its walk goes on");
                        assert_eq!(*rank, self.attempts[&previous].pos + 1, "ranked list out of order");
                        targets
                    }
                    other => panic!("session request in {other:?}"),
                };
                assert!(*rank < targets.len(), "more session requests than targets");
                assert_eq!(*endpoint, targets[*rank].0, "session request to the wrong target");
                self.attempts.insert(
                    *attempt,
                    Attempt {
                        phase: Phase::Session,
                        round: self.round,
                        pos: *rank,
                        seed_index: 0,
                        deadline: now + self.config.connect_timeout,
                        closed: false,
                        walked: false,
                        session: false,
                        effort: self.effort,
                    },
                );
                self.seen.push(*attempt);
                self.stage = Stage::Connecting { targets, attempt: *attempt };
            }
            Action::Close { attempt } => {
                let session = self.attempts.get(attempt).is_some_and(|a| a.session);
                assert!(!session, "Close for the session's attempt {attempt}");
                let walked_open = self.attempts.get(attempt).is_some_and(|a| a.walked && !a.closed);
                assert!(self.is_live(*attempt) || walked_open, "Close for {attempt}, which is not live");
                if let Some(a) = self.attempts.get_mut(attempt) {
                    a.closed = true;
                    self.handshake_ended_in_drain |= a.phase == Phase::Handshake;
                }
            }
            Action::Connected { attempt, endpoint, instance, session_id } => {
                assert_eq!(cause, Cause::Accepts(*attempt, *session_id), "Connected without its reply");
                let Stage::Connecting { targets, attempt: live } = &self.stage else {
                    panic!("Connected in {:?}", self.stage)
                };
                assert_eq!(live, attempt);
                let target = &targets[self.attempts[attempt].pos];
                assert_eq!((endpoint, instance), (&target.0, &target.1), "Connected to the wrong target");
                self.all_closed_but(Some(*attempt), "Connected");
                if let Some(a) = self.attempts.get_mut(attempt) {
                    a.closed = true;
                    a.session = true;
                }
                self.stage = Stage::Connected { attempt: *attempt, endpoint: endpoint.clone() };
                assert_eq!(c.state(), State::Connected);
            }
            Action::RoundFailed { round, retry_at } => {
                assert!(!self.done(), "RoundFailed after the effort ended");
                assert_eq!(*round, self.round);
                assert!(self.round + 1 < self.config.retry.max_rounds, "a round beyond max_rounds");
                self.all_closed_but(None, "RoundFailed");
                assert!(self.candidates.is_empty(), "a round failed with a reply held");
                self.check_exhausted();
                let wait = retry_at.checked_duration_since(now).expect("retry_at before now");
                assert!(wait <= self.backoff_bound(), "backoff {wait:?} beyond its bound in round {round}");
                self.stage = Stage::Backoff { retry_at: *retry_at };
            }
            Action::Failed(error) => {
                assert!(!self.done(), "Failed after the effort ended");
                self.all_closed_but(None, "Failed");
                assert_eq!(error.rounds, self.round + 1);
                assert_eq!(error.attempts, c.attempts());
                assert!(error.attempts.iter().all(|r| r.outcome != AttemptOutcome::Pending));
                match error.reason {
                    FailReason::DeadlineExceeded => {
                        assert_eq!(cause, Cause::Timeout);
                        assert!(self.deadline().is_some_and(|d| now >= d), "deadline failure too early");
                    }
                    FailReason::RoundsExhausted => {
                        assert_eq!(self.round + 1, self.config.retry.max_rounds);
                        self.check_exhausted();
                    }
                    other => panic!("a failure reason this model does not know: {other:?}"),
                }
                self.candidates.clear();
                self.stage = Stage::Failed;
            }
            Action::SessionClosed { endpoint, lost } => {
                assert_eq!(cause, Cause::SessionOver);
                let Stage::Connected { endpoint: open, .. } = &self.stage else {
                    panic!("SessionClosed in {:?}", self.stage)
                };
                assert_eq!(endpoint, open);
                assert_eq!(*lost, self.session_lost);
                self.stage = Stage::Closed;
            }
            other => panic!("an action this model does not know: {other:?}"),
        }
    }

    /// After every input: the predicted effects happened.
    pub(crate) fn after(&mut self, c: &Connector, cause: Cause, now: Instant) {
        self.handshake_ended_in_drain = false;
        let state = match self.stage {
            Stage::Handshaking => State::Handshaking,
            Stage::Connecting { .. } => State::Connecting,
            Stage::Backoff { .. } => State::Backoff,
            Stage::Connected { .. } => State::Connected,
            Stage::Closed => State::Closed,
            Stage::Failed => State::Failed,
        };
        assert_eq!(c.state(), state, "the machine's state");
        match cause {
            Cause::Ends(attempt) => assert!(self.attempts[&attempt].closed, "{attempt} not closed"),
            Cause::Accepts(attempt, _) => {
                assert!(matches!(self.stage, Stage::Connected { attempt: s, .. } if s == attempt))
            }
            Cause::SessionOver => assert!(matches!(self.stage, Stage::Closed)),
            _ => {}
        }
        if !self.candidates.is_empty() {
            // Still held: only while the instant is open and an earlier seed
            // is pending; every other candidate lost and was closed.
            assert!(cause != Cause::Timeout, "a held reply survived a timeout");
            let (_, best, winner, _) = self.winner().expect("candidates").clone();
            assert!(
                self.live_of_round(Phase::Handshake).any(|(_, a)| a.pos < best),
                "a reply held with no earlier seed pending"
            );
            for (_, _, attempt, _) in &self.candidates {
                assert_eq!(self.attempts[attempt].closed, *attempt != winner, "superseded reply {attempt}");
            }
        }
        if cause == Cause::Timeout {
            let due: Vec<_> = self
                .attempts
                .iter()
                .filter(|(_, a)| a.deadline <= now && !a.closed && !a.walked)
                .map(|(id, _)| id)
                .collect();
            assert!(due.is_empty(), "attempts {due:?} past their timeout still live");
            if self.deadline().is_some_and(|d| now >= d) {
                assert!(self.done(), "still {:?} at the overall deadline", self.stage);
            }
            if let Stage::Backoff { retry_at } = self.stage {
                assert!(now < retry_at, "backoff over but no round started");
            }
        }
        // Every waiting state has a timer, and none later than what it waits for.
        let next = c.poll_timeout();
        if !self.done() {
            let next = next.unwrap_or_else(|| panic!("waiting in {:?} with no timer", self.stage));
            assert!(next > now || cause != Cause::Timeout, "handle_timeout left a due deadline");
            let live = self.attempts.values().filter(|a| !a.closed && !a.walked).map(|a| a.deadline);
            let mut wanted: Vec<Instant> = live.chain(self.deadline()).collect();
            if let Stage::Backoff { retry_at } = self.stage {
                wanted.push(retry_at);
            }
            if let Some(&soonest) = wanted.iter().min() {
                assert!(next <= soonest, "poll_timeout {next:?} later than a deadline {soonest:?}");
            }
        } else {
            assert_eq!(next, None, "a timer once {:?}", self.stage);
        }
        let most =
            self.config.retry.max_rounds as usize * (self.config.seeds.len() + self.config.max_list_len);
        assert!(c.attempts().len() <= most, "{} attempts, at most {most} allowed", c.attempts().len());
    }
}
