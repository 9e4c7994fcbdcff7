//! Fuzz body `client_ops`: an arbitrary client configuration and an arbitrary
//! sequence of events and time advances through a [`Connector`](crate::client::Connector), with the
//! machine's invariants checked after every step and the whole run replayed
//! once more to check it is deterministic.

use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};

use crate::client::{Action, AttemptId, AttemptOutcome, Connector, Event, Phase, State};
use crate::config::ClientConfig;
use crate::endpoint::Endpoint;
use crate::wire::{HandshakeOutcome, HandshakeReply, SessionOutcome, SessionReply};
use crate::RetryPolicy;

#[derive(Debug, Arbitrary)]
struct Setup {
    seeds: u8,
    attempt_delay_ms: Option<u16>,
    shuffle_seeds: bool,
    load_balance: bool,
    max_list_len: u8,
    max_rounds: u8,
    deadline_ms: Option<u16>,
    rng_seed: u64,
}

#[derive(Debug, Clone, Arbitrary)]
enum Op {
    HandshakeReply { pick: u8, wrong_id: bool, outcome: HandshakeOutcome },
    SessionReply { pick: u8, wrong_id: bool, outcome: SessionOutcome },
    TransportFailed { pick: u8 },
    SessionEnded,
    SessionLost,
    Advance { ms: u16 },
    JumpToTimeout,
    Backwards { ms: u16 },
    Reconnect,
}

/// Runs the ops twice and checks both runs produced the same actions.
/// Every time is an offset from `base`, which the caller (the fuzz target or
/// the corpus replay) reads from its clock: the library never does.
pub fn client_ops(data: &[u8], base: Instant) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else { return };
    let Ok(ops) = Vec::<Op>::arbitrary(&mut u) else { return };
    let Some(config) = config(&setup) else { return };
    let first = run(&config, setup.rng_seed, &ops, base);
    let second = run(&config, setup.rng_seed, &ops, base);
    assert_eq!(first, second, "same seed and inputs gave different actions");
}

fn config(setup: &Setup) -> Option<ClientConfig> {
    let n = usize::from(setup.seeds % 8) + 1;
    let seeds = (0..n).map(|i| Endpoint::new(&format!("s{i}"), 2712)).collect::<Result<Vec<_>, _>>().ok()?;
    let config = ClientConfig {
        seeds,
        handshake_timeout: Duration::from_millis(1000),
        connect_timeout: Duration::from_millis(800),
        attempt_delay: setup.attempt_delay_ms.map(|ms| Duration::from_millis(u64::from(ms % 500) + 10)),
        shuffle_seeds: setup.shuffle_seeds,
        load_balance: setup.load_balance,
        max_list_len: usize::from(setup.max_list_len % 40) + 1,
        retry: RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
            max_rounds: u32::from(setup.max_rounds % 4) + 1,
        },
        overall_deadline: setup.deadline_ms.map(|ms| Duration::from_millis(u64::from(ms) + 1)),
        ..ClientConfig::default()
    };
    config.validate().ok()?;
    Some(config)
}

fn run(config: &ClientConfig, rng_seed: u64, ops: &[Op], base: Instant) -> Vec<Action> {
    let Ok(mut c) = Connector::new(config.clone(), base, rng_seed) else { return Vec::new() };
    let mut check = Checker::default();
    let mut now = base;
    let mut trace = Vec::new();
    check.drain(&mut c, &mut trace);
    for op in ops {
        let pick = |p: u8| (!check.seen.is_empty()).then(|| check.seen[usize::from(p) % check.seen.len()]);
        match op.clone() {
            Op::HandshakeReply { pick: p, wrong_id, outcome } => {
                if let Some(attempt) = pick(p) {
                    let request_id = attempt.request_id() ^ u64::from(wrong_id);
                    let reply = HandshakeReply { request_id, outcome };
                    let _ = c.handle_event(Event::HandshakeReply { attempt, reply }, now);
                }
            }
            Op::SessionReply { pick: p, wrong_id, outcome } => {
                if let Some(attempt) = pick(p) {
                    let request_id = attempt.request_id() ^ u64::from(wrong_id);
                    let reply = SessionReply { request_id, outcome };
                    let _ = c.handle_event(Event::SessionReply { attempt, reply }, now);
                }
            }
            Op::TransportFailed { pick: p } => {
                if let Some(attempt) = pick(p) {
                    let _ = c.handle_event(Event::TransportFailed { attempt, reason: "fuzz".into() }, now);
                }
            }
            Op::SessionEnded => {
                let connected = c.state() == State::Connected;
                assert_eq!(c.handle_event(Event::SessionEnded, now).is_ok(), connected);
            }
            Op::SessionLost => {
                let connected = c.state() == State::Connected;
                assert_eq!(
                    c.handle_event(Event::SessionLost { reason: "fuzz".into() }, now).is_ok(),
                    connected
                );
            }
            Op::Advance { ms } => {
                now += Duration::from_millis(u64::from(ms));
                c.handle_timeout(now);
                check.drain(&mut c, &mut trace);
                check.after_timeout(&c, now);
            }
            Op::JumpToTimeout => {
                if let Some(deadline) = c.poll_timeout() {
                    now = now.max(deadline);
                    c.handle_timeout(now);
                    check.drain(&mut c, &mut trace);
                    check.after_timeout(&c, now);
                }
            }
            Op::Backwards { ms } => {
                let earlier = now.checked_sub(Duration::from_millis(u64::from(ms))).unwrap_or(now);
                let before = c.poll_timeout();
                c.handle_timeout(earlier);
                if before.is_some_and(|d| d > now) {
                    assert_eq!(c.poll_timeout(), before, "time going backwards fired a timer");
                }
            }
            Op::Reconnect => {
                let allowed = matches!(c.state(), State::Closed | State::Failed);
                assert_eq!(c.reconnect(now).is_ok(), allowed);
                if allowed {
                    check.new_effort();
                }
            }
        }
        check.drain(&mut c, &mut trace);
    }
    // Left alone, a waiting machine ends in `Connected` or `Failed` within a bounded number of timeouts.
    let bound = 4 + config.retry.max_rounds as usize * (config.seeds.len() + config.max_list_len + 2) * 2;
    for _ in 0..bound {
        match c.poll_timeout() {
            Some(deadline) => {
                now = now.max(deadline);
                c.handle_timeout(now);
                check.drain(&mut c, &mut trace);
            }
            None => break,
        }
    }
    assert!(
        matches!(c.state(), State::Connected | State::Failed | State::Closed),
        "still {:?} after {bound} timeouts",
        c.state()
    );
    trace
}

/// The invariants, fed every action in order.
#[derive(Debug, Default)]
struct Checker {
    seen: Vec<AttemptId>,
    round: u32,
    handshakes: Vec<usize>,
    sessions: usize,
    done: bool,
}

impl Checker {
    fn new_effort(&mut self) {
        self.round = 0;
        self.handshakes.clear();
        self.sessions = 0;
        self.done = false;
    }

    fn drain(&mut self, c: &mut Connector, trace: &mut Vec<Action>) {
        while let Some(action) = c.poll_action() {
            self.action(c, &action);
            trace.push(action);
        }
        if matches!(c.state(), State::Handshaking | State::Connecting | State::Backoff) {
            assert!(c.poll_timeout().is_some(), "waiting in {:?} with no timer", c.state());
        }
        let cfg = c.config();
        let most = cfg.retry.max_rounds as usize * (cfg.seeds.len() + cfg.max_list_len);
        assert!(c.attempts().len() <= most, "{} attempts, at most {most} allowed", c.attempts().len());
    }

    fn after_timeout(&self, c: &Connector, now: Instant) {
        assert!(c.poll_timeout().map_or(true, |d| d > now), "handle_timeout left a due deadline");
    }

    fn action(&mut self, c: &Connector, action: &Action) {
        let cfg = c.config();
        match action {
            Action::SendHandshake { attempt, seed_index, request, .. } => {
                assert!(!self.done, "handshake after Connected or Failed");
                assert_eq!(request.request_id, attempt.request_id());
                assert!(!self.handshakes.contains(seed_index), "a seed twice in one round");
                if !cfg.shuffle_seeds {
                    assert_eq!(*seed_index, self.handshakes.len(), "seeds out of order");
                }
                self.handshakes.push(*seed_index);
                self.seen.push(*attempt);
            }
            Action::SendSessionRequest { attempt, rank, .. } => {
                assert!(!self.done, "session request after Connected or Failed");
                assert_eq!(*rank, self.sessions, "ranked list out of order");
                let limit = c
                    .attempts()
                    .iter()
                    .find_map(|r| match r.outcome {
                        _ if r.round != self.round || r.phase != Phase::Handshake => None,
                        AttemptOutcome::Ranked { entries, .. } => Some(entries),
                        AttemptOutcome::Answered => Some(1),
                        _ => None,
                    })
                    .expect("a session request follows a winning handshake");
                self.sessions += 1;
                assert!(self.sessions <= limit, "more session requests than entries");
                self.seen.push(*attempt);
            }
            Action::Connected { .. } => {
                assert_eq!(c.state(), State::Connected);
                self.done = true;
            }
            Action::RoundFailed { round, .. } => {
                assert_eq!(*round, self.round);
                self.round += 1;
                assert!(self.round < cfg.retry.max_rounds);
                self.handshakes.clear();
                self.sessions = 0;
            }
            Action::Failed(error) => {
                assert_eq!(error.attempts, c.attempts());
                assert!(error.attempts.iter().all(|r| r.outcome != AttemptOutcome::Pending));
                self.done = true;
            }
            Action::Close { .. } | Action::SessionClosed { .. } => {}
        }
    }
}
