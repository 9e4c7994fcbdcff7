//! A simulated network for the Connector: seeds and instances that behave
//! per round as a [`Scenario`] says, the reference model of a sequential
//! walk, and [`run`], which drives a Connector through it.

use std::time::{Duration, Instant};

use aos_cluster::client::{Action, AttemptId, AttemptOutcome, Connector, Event};
use aos_cluster::wire::{HandshakeOutcome, HandshakeReply, RankedEntry, RankedList, RejectReason};
use aos_cluster::{ClientConfig, Endpoint, InstanceId, Workload};

use super::*;

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
