//! Transcript helpers for the client's `Connector`, in the happy-eyeballs
//! style: `expect(want, now)` advances time to `now` and checks the next
//! action; `expect_idle(now)` checks there is none.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aos_cluster::client::{Action, AttemptId, AttemptOutcome, Connector, Event, Phase};
use aos_cluster::wire::{
    HandshakeOutcome, HandshakeReply, Message, RankedEntry, RankedList, RefuseReason, RejectReason,
    SessionId, SessionOutcome, SessionReply,
};
use aos_cluster::{ClientConfig, Endpoint, InstanceId, Workload};

/// The one base instant every test time is built from.
pub fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    #[allow(clippy::disallowed_methods)]
    let base = *BASE.get_or_init(Instant::now);
    base
}

/// `base() + ms` milliseconds.
pub fn at(ms: u64) -> Instant {
    base() + Duration::from_millis(ms)
}

/// `name:2712`.
pub fn ep(name: &str) -> Endpoint {
    name.parse().expect("test endpoint")
}

/// The defaults with seeds `s0`, `s1`, ... (`n` of them).
pub fn config(n: usize) -> ClientConfig {
    ClientConfig::with_seeds((0..n).map(|i| ep(&format!("s{i}"))).collect())
}

/// The instance id tests give an endpoint name: the sum of its bytes.
pub fn id_of(name: &str) -> InstanceId {
    InstanceId(name.bytes().map(u32::from).sum())
}

/// A ranked list reply for `attempt`: `(name, connected, max_sessions)`, best first.
pub fn ranked(attempt: AttemptId, entries: &[(&str, u32, u32)]) -> Event {
    let entries = entries
        .iter()
        .map(|&(name, connected, max)| RankedEntry {
            id: id_of(name),
            endpoint: ep(name),
            workload: Workload::new(connected, max),
        })
        .collect();
    handshake(attempt, HandshakeOutcome::Ranked(RankedList { stale: false, entries }))
}

/// A handshake reply with this outcome and the attempt's request id.
pub fn handshake(attempt: AttemptId, outcome: HandshakeOutcome) -> Event {
    Event::HandshakeReply { attempt, reply: HandshakeReply { request_id: attempt.request_id(), outcome } }
}

/// A refusal (`Busy`).
pub fn refused(attempt: AttemptId) -> Event {
    handshake(attempt, HandshakeOutcome::Refused(RefuseReason::Busy))
}

/// A well-formed list under another request's id.
pub fn wrong_id(attempt: AttemptId) -> Event {
    let reply = HandshakeReply {
        request_id: attempt.request_id().wrapping_add(1000),
        outcome: HandshakeOutcome::Ranked(RankedList { stale: false, entries: vec![] }),
    };
    Event::HandshakeReply { attempt, reply }
}

/// Admission accepted.
pub fn accepted(attempt: AttemptId, session_id: u64) -> Event {
    Event::SessionReply {
        attempt,
        reply: SessionReply {
            request_id: attempt.request_id(),
            outcome: SessionOutcome::Accepted { session_id: SessionId(session_id) },
        },
    }
}

/// Admission rejected.
pub fn rejected(attempt: AttemptId, reason: RejectReason) -> Event {
    Event::SessionReply {
        attempt,
        reply: SessionReply { request_id: attempt.request_id(), outcome: SessionOutcome::Rejected(reason) },
    }
}

/// The transport failed.
pub fn transport_failed(attempt: AttemptId) -> Event {
    Event::TransportFailed { attempt, reason: "connection refused".into() }
}

/// What a transcript expects next, without the random parts (salts, times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// `SendHandshake` to this seed index.
    Handshake(usize),
    /// `SendSessionRequest` to this endpoint name.
    Session(&'static str),
    /// `Close` of this attempt.
    Close(AttemptId),
    /// `Connected` to this endpoint name.
    Connected(&'static str),
    /// `RoundFailed` of this round.
    RoundFailed(u32),
    /// `Failed`.
    Failed,
    /// `SessionClosed`, lost or not.
    SessionClosed { lost: bool },
}

/// Does `action` match `want`?
pub fn matches(action: &Action, want: &Want) -> bool {
    match (action, want) {
        (Action::SendHandshake { seed_index, .. }, Want::Handshake(i)) => seed_index == i,
        (Action::SendSessionRequest { endpoint, .. }, Want::Session(name)) => *endpoint == ep(name),
        (Action::Close { attempt }, Want::Close(a)) => attempt == a,
        (Action::Connected { endpoint, .. }, Want::Connected(name)) => *endpoint == ep(name),
        (Action::RoundFailed { round, .. }, Want::RoundFailed(r)) => round == r,
        (Action::Failed(_), Want::Failed) => true,
        (Action::SessionClosed { lost, .. }, Want::SessionClosed { lost: l }) => lost.is_some() == *l,
        _ => false,
    }
}

/// The attempt an action names, if any.
pub fn attempt_of(action: &Action) -> Option<AttemptId> {
    match action {
        Action::SendHandshake { attempt, .. }
        | Action::SendSessionRequest { attempt, .. }
        | Action::Close { attempt }
        | Action::Connected { attempt, .. } => Some(*attempt),
        _ => None,
    }
}

/// A Connector under a transcript.
pub struct Transcript {
    /// The machine.
    pub c: Connector,
}

impl Transcript {
    /// A Connector started at `at(0)` with rng seed 7.
    pub fn new(config: ClientConfig) -> Self {
        Transcript { c: Connector::new(config, at(0), 7).expect("valid config") }
    }

    /// Advances to `now`: calls `handle_timeout` when a deadline is due.
    pub fn advance(&mut self, now: Instant) {
        if self.c.poll_timeout().is_some_and(|t| t <= now) {
            self.c.handle_timeout(now);
        }
    }

    /// Delivers `event` at `now`; it must be accepted.
    pub fn event(&mut self, event: Event, now: Instant) {
        self.c.handle_event(event, now).expect("event fits");
    }

    /// Advances to `now` and checks the next action; returns it.
    #[track_caller]
    pub fn expect(&mut self, want: Want, now: Instant) -> Action {
        self.advance(now);
        let action = self.c.poll_action();
        match action {
            Some(action) if matches(&action, &want) => action,
            other => panic!("expected {want:?} at {:?}, got {other:?}", now - base()),
        }
    }

    /// Like [`expect`](Self::expect), returning the action's attempt id.
    #[track_caller]
    pub fn expect_attempt(&mut self, want: Want, now: Instant) -> AttemptId {
        let action = self.expect(want, now);
        attempt_of(&action).expect("the action names an attempt")
    }

    /// Advances to `now` and checks there is no action.
    #[track_caller]
    pub fn expect_idle(&mut self, now: Instant) {
        self.advance(now);
        if let Some(action) = self.c.poll_action() {
            panic!("expected no action at {:?}, got {action:?}", now - base());
        }
    }
}

/// How a seed treats one handshake in the simulated network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedBehaviour {
    /// Replies with this list (instance pool indices, best first) after `latency` ms.
    Answers { latency: u64, list: Vec<usize> },
    /// Never replies.
    Silent,
    /// Refuses after `latency` ms.
    Refuses { latency: u64 },
    /// Replies under a wrong request id after `latency` ms.
    Garbage { latency: u64 },
    /// Its transport fails after `latency` ms.
    Fails { latency: u64 },
    /// Replies with this list only `late` ms after the handshake timeout.
    Slow { late: u64, list: Vec<usize> },
}

/// How an instance treats one session request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Accepts after `latency` ms.
    Accept { latency: u64 },
    /// Rejects after `latency` ms.
    Reject { latency: u64, reason: RejectReason },
    /// Never replies.
    Silent,
    /// Its transport fails after `latency` ms.
    Fails { latency: u64 },
}

/// Instances the simulated seeds rank: `i0`, `i1`, ...
pub const POOL: usize = 12;
/// Most seeds a scenario has.
pub const MAX_SEEDS: usize = 32;

/// The endpoint name of pool instance `k`.
pub fn pool_name(k: usize) -> String {
    format!("i{k}")
}

/// Admission-table index of an endpoint: pool instances first, then seeds
/// (direct mode connects to a seed).
pub fn admission_index(endpoint: &Endpoint) -> usize {
    let host = endpoint.host();
    let n: usize = host[1..].parse().expect("simulated endpoint");
    if host.starts_with('i') {
        n
    } else {
        POOL + n
    }
}

/// A whole simulated network: behaviour per round, per seed and per instance.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The Connector's configuration.
    pub config: ClientConfig,
    /// `seeds[round][seed]`.
    pub seeds: Vec<Vec<SeedBehaviour>>,
    /// `admissions[round][admission_index]`.
    pub admissions: Vec<Vec<Admission>>,
    /// Rng seed.
    pub rng_seed: u64,
    /// Driver steps at which to call `handle_timeout` early (must be a no-op).
    pub spurious: Vec<usize>,
}

/// The ranked list a seed sends for pool indices.
pub fn pool_list(list: &[usize]) -> Vec<RankedEntry> {
    list.iter()
        .map(|&k| RankedEntry {
            id: InstanceId(k as u32),
            endpoint: ep(&pool_name(k)),
            workload: Workload::new(0, 10),
        })
        .collect()
}

/// The list the Connector should walk: cut to `max_len`, duplicates dropped.
pub fn effective_list(list: &[usize], max_len: usize) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    for &k in list.iter().take(max_len) {
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// What the reference model and the trace are compared on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A handshake to this seed index.
    Handshake(usize),
    /// A session request to this admission index.
    Session(usize),
    /// Connected to this admission index.
    Connected(usize),
    /// This round failed.
    RoundFailed(u32),
    /// Gave up.
    Failed,
}

/// The reference model for sequential walks (no staggering, no shuffle, no
/// deadline): the exact steps the Connector must take.
pub fn model(s: &Scenario) -> Vec<Step> {
    let cfg = &s.config;
    let mut steps = Vec::new();
    for round in 0..cfg.retry.max_rounds as usize {
        let mut targets = None;
        for (i, behaviour) in s.seeds[round].iter().enumerate() {
            steps.push(Step::Handshake(i));
            // An empty list is a refusal in both modes (SPEC 1.1, 1.4).
            if let SeedBehaviour::Answers { list, .. } = behaviour {
                if !list.is_empty() {
                    let walk = if cfg.load_balance {
                        effective_list(list, cfg.max_list_len)
                    } else {
                        vec![POOL + i]
                    };
                    targets = Some(walk);
                    break;
                }
            }
        }
        for target in targets.unwrap_or_default() {
            steps.push(Step::Session(target));
            if let Admission::Accept { .. } = s.admissions[round][target] {
                steps.push(Step::Connected(target));
                return steps;
            }
        }
        if round + 1 < cfg.retry.max_rounds as usize {
            steps.push(Step::RoundFailed(round as u32));
        }
    }
    steps.push(Step::Failed);
    steps
}

/// A run of a scenario through the simulated network.
#[derive(Debug)]
pub struct Run {
    /// Every action, in order, with the time it was polled.
    pub actions: Vec<(Instant, Action)>,
    /// The comparable steps.
    pub steps: Vec<Step>,
    /// Driver steps taken.
    pub driver_steps: usize,
    /// The machine at the end.
    pub connector: Connector,
}

fn event_for(attempt: AttemptId, behaviour: &SeedBehaviour) -> Option<(u64, Event)> {
    let id = attempt.request_id();
    let reply =
        |outcome| Event::HandshakeReply { attempt, reply: HandshakeReply { request_id: id, outcome } };
    let list = |l: &[usize]| HandshakeOutcome::Ranked(RankedList { stale: false, entries: pool_list(l) });
    match behaviour {
        SeedBehaviour::Answers { latency, list: l } => Some((*latency, reply(list(l)))),
        SeedBehaviour::Silent => None,
        SeedBehaviour::Refuses { latency } => Some((*latency, refused(attempt))),
        SeedBehaviour::Garbage { latency } => Some((*latency, wrong_id(attempt))),
        SeedBehaviour::Fails { latency } => Some((*latency, transport_failed(attempt))),
        SeedBehaviour::Slow { late, list: l } => Some((1000 + late, reply(list(l)))),
    }
}

fn admission_event(attempt: AttemptId, admission: Admission) -> Option<(u64, Event)> {
    match admission {
        Admission::Accept { latency } => Some((latency, accepted(attempt, attempt.request_id() * 10))),
        Admission::Reject { latency, reason } => Some((latency, rejected(attempt, reason))),
        Admission::Silent => None,
        Admission::Fails { latency } => Some((latency, transport_failed(attempt))),
    }
}

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

/// A handshake or session attempt that ended without success.
pub fn is_failure(outcome: &AttemptOutcome) -> bool {
    !matches!(
        outcome,
        AttemptOutcome::Pending
            | AttemptOutcome::Ranked { .. }
            | AttemptOutcome::Answered
            | AttemptOutcome::Accepted { .. }
            | AttemptOutcome::Superseded
    )
}

/// Runs `s` through the simulated network, time jumping to the next delivery
/// or exactly to `poll_timeout`, checking [`Invariants`] after every step.
/// Keeps going after `Connected` until every queued reply is delivered, to
/// prove no further attempt appears.
pub fn run(s: &Scenario) -> Run {
    let mut c = Connector::new(s.config.clone(), at(0), s.rng_seed).expect("valid config");
    let mut now = at(0);
    let mut queue: Vec<(Instant, u64, Event)> = Vec::new();
    let mut seq = 0u64;
    let mut actions = Vec::new();
    let mut steps = Vec::new();
    let mut inv = Invariants::default();
    let mut round = 0usize;
    let bound = 64 + 16 * s.seeds.len() * (MAX_SEEDS + 2 * POOL + 4);
    let mut driver_steps = 0;
    loop {
        while let Some(action) = c.poll_action() {
            inv.action(&c, now, &action);
            let mut schedule = |delay_and_event: Option<(u64, Event)>| {
                if let Some((delay, event)) = delay_and_event {
                    queue.push((now + Duration::from_millis(delay), seq, event));
                    seq += 1;
                }
            };
            match &action {
                Action::SendHandshake { attempt, seed_index, .. } => {
                    steps.push(Step::Handshake(*seed_index));
                    schedule(event_for(*attempt, &s.seeds[round][*seed_index]));
                }
                Action::SendSessionRequest { attempt, endpoint, .. } => {
                    let k = admission_index(endpoint);
                    steps.push(Step::Session(k));
                    schedule(admission_event(*attempt, s.admissions[round][k]));
                }
                Action::Connected { endpoint, .. } => steps.push(Step::Connected(admission_index(endpoint))),
                Action::RoundFailed { round: r, .. } => {
                    steps.push(Step::RoundFailed(*r));
                    round += 1;
                }
                Action::Failed(_) => steps.push(Step::Failed),
                _ => {}
            }
            actions.push((now, action));
        }
        inv.idle(&c);
        driver_steps += 1;
        assert!(driver_steps <= bound, "no end after {bound} driver steps");
        if s.spurious.contains(&driver_steps) && c.poll_timeout().map_or(true, |d| d > now) {
            let before = c.poll_timeout();
            c.handle_timeout(now);
            assert_eq!(c.poll_timeout(), before, "a handle_timeout before the deadline changed the timer");
            assert!(c.poll_action().is_none(), "a handle_timeout before the deadline acted");
        }
        let next_delivery = queue.iter().map(|(t, q, _)| (*t, *q)).min();
        let timeout = c.poll_timeout();
        match next_delivery {
            Some((t, q)) if timeout.map_or(true, |d| t <= d) => {
                let i = queue.iter().position(|(_, qq, _)| *qq == q).expect("queued");
                let (_, _, event) = queue.swap_remove(i);
                now = t;
                c.handle_event(event, now).expect("replies always fit");
            }
            _ => match timeout {
                Some(deadline) => {
                    assert!(deadline >= now, "deadline in the past: the machine did not act on it");
                    now = deadline;
                    c.handle_timeout(now);
                }
                None => break,
            },
        }
    }
    Run { actions, steps, driver_steps, connector: c }
}
