//! The invariants a Connector keeps whatever the network does, checked
//! after every action and every driver step.

use std::time::Instant;

use aos_cluster::client::{Action, AttemptId, AttemptOutcome, Connector, Phase};
use aos_cluster::wire::Message;

use super::*;

/// Checks the invariants after every driver step; panics with a message on
/// the first one broken.
#[derive(Debug, Default)]
pub struct Invariants {
    round: u32,
    handshakes_this_round: Vec<usize>,
    sessions_this_round: usize,
    connected: bool,
    finished: bool,
    /// Attempts the machine said to close, in order.
    closed: Vec<AttemptId>,
}

impl Invariants {
    /// Checks one action polled at `now` against what came before.
    pub fn action(&mut self, c: &Connector, now: Instant, action: &Action) {
        let cfg = c.config();
        let starts_attempt =
            matches!(action, Action::SendHandshake { .. } | Action::SendSessionRequest { .. });
        assert!(!(starts_attempt && self.connected), "attempt after Connected: {action:?}");
        assert!(!(starts_attempt && self.finished), "attempt after Failed: {action:?}");
        match action {
            Action::SendHandshake { attempt, seed_index, message, deadline, .. } => {
                let Message::HandshakeRequest(request) = message else {
                    panic!("a handshake action carries {message:?}")
                };
                assert_eq!(request.request_id, attempt.request_id());
                assert_eq!(*deadline, now + cfg.handshake_timeout, "the handshake's deadline");
                assert_eq!(request.load_balance, cfg.load_balance);
                assert!(
                    !self.handshakes_this_round.contains(seed_index),
                    "seed {seed_index} twice in a round"
                );
                if !cfg.shuffle_seeds {
                    assert_eq!(*seed_index, self.handshakes_this_round.len(), "seeds walked out of order");
                }
                let log = c.attempts();
                let this = log.iter().position(|r| r.attempt == *attempt).expect("logged");
                let previous =
                    log[..this].iter().rev().find(|r| r.round == self.round && r.phase == Phase::Handshake);
                if let Some(prev) = previous {
                    let failed_now = log[..this].iter().any(|r| {
                        r.round == self.round && r.ended == Some(log[this].started) && is_failure(&r.outcome)
                    });
                    match cfg.attempt_delay {
                        None => assert!(is_failure(&prev.outcome), "next seed before the previous failed"),
                        Some(delay) => assert!(
                            log[this].started >= prev.started + delay || failed_now,
                            "staggered seed started early"
                        ),
                    }
                }
                self.handshakes_this_round.push(*seed_index);
                assert!(self.handshakes_this_round.len() <= cfg.seeds.len());
            }
            Action::SendSessionRequest { attempt, rank, endpoint, message, deadline } => {
                let Message::SessionRequest(request) = message else {
                    panic!("a session action carries {message:?}")
                };
                assert_eq!(request.request_id, attempt.request_id());
                assert_eq!(*deadline, now + cfg.connect_timeout, "the session request's deadline");
                assert_eq!(*rank, self.sessions_this_round, "ranked list walked out of order");
                let winner = c
                    .attempts()
                    .iter()
                    .find(|r| {
                        r.round == self.round
                            && matches!(r.outcome, AttemptOutcome::Ranked { .. } | AttemptOutcome::Answered)
                    })
                    .expect("a session attempt follows a winning handshake");
                let limit = match winner.outcome {
                    AttemptOutcome::Ranked { entries, .. } => entries,
                    _ => 1,
                };
                if !cfg.load_balance {
                    assert_eq!(*endpoint, winner.endpoint, "direct mode targets the answering seed");
                }
                self.sessions_this_round += 1;
                assert!(self.sessions_this_round <= limit, "more session attempts than entries");
                let _ = now;
            }
            Action::Close { attempt } => {
                assert!(!self.closed.contains(attempt), "{attempt} closed twice");
                let record =
                    c.attempts().iter().find(|r| r.attempt == *attempt).expect("closes a logged attempt");
                assert!(record.ended.is_some(), "{attempt} closed while pending");
                assert!(
                    !matches!(record.outcome, AttemptOutcome::Accepted { .. }),
                    "the session's transport closed"
                );
                self.closed.push(*attempt);
            }
            Action::Connected { attempt, .. } => {
                self.connected = true;
                // Every other attempt of the effort has ended and was closed exactly once.
                for record in c.attempts().iter().filter(|r| r.attempt != *attempt) {
                    assert!(self.closed.contains(&record.attempt), "{} never closed", record.attempt);
                }
                assert!(!self.closed.contains(attempt));
            }
            Action::RoundFailed { round, retry_at } => {
                assert_eq!(*round, self.round);
                assert!(*retry_at >= now);
                self.round += 1;
                self.handshakes_this_round.clear();
                self.sessions_this_round = 0;
                assert!(self.round < cfg.retry.max_rounds);
            }
            Action::Failed(error) => {
                assert_eq!(error.attempts, c.attempts(), "the error lists every attempt");
                assert!(error.attempts.iter().all(|r| r.outcome != AttemptOutcome::Pending));
                for record in &error.attempts {
                    assert!(self.closed.contains(&record.attempt), "{} never closed", record.attempt);
                }
                self.finished = true;
            }
            _ => {}
        }
    }

    /// Checks the machine between inputs.
    pub fn idle(&self, c: &Connector) {
        use aos_cluster::client::State;
        match c.state() {
            State::Handshaking | State::Connecting | State::Backoff => {
                assert!(c.poll_timeout().is_some(), "waiting without a timer in {:?}", c.state())
            }
            State::Connected => assert!(self.connected),
            State::Failed => assert!(self.finished),
            State::Closed => {}
        }
    }
}
