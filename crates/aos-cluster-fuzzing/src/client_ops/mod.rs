//! Fuzz body `client_ops`: an arbitrary client configuration (timeouts,
//! staggering, retry policy, overall deadline and cluster name all drawn from
//! the input) and an arbitrary sequence of replies, failures and time
//! advances through a [`Connector`](aos_cluster::client::Connector), checked after every action against a
//! reference model that predicts:
//!
//! - the winning handshake reply: among the valid, non-empty replies
//!   delivered at one instant before the instant closes, the earliest seed in
//!   walk order (see the module docs of [`aos_cluster::client`] on staggering);
//! - the targets of phase 3 (the winning list cut and without repeats, or the
//!   answering seed in direct mode) and the `Connected` target;
//! - the `Close`s: every attempt closed exactly once, never the session's,
//!   and every attempt still pending closed when the round is decided, failed
//!   or abandoned;
//! - the backoff window (`retry_at - now` within `[0, min(cap, base * 2^round)]`)
//!   and that no round starts before it;
//! - the overall deadline: nothing starts at or after it, `Failed` comes no
//!   later than the first timeout handled at or after it, and no action after
//!   `Failed`.
//!
//! Seeds and ranked entries come from one shared host pool, so duplicate
//! seeds, repeated entries and seeds that are also entries all happen. The
//! whole run is replayed once more to check it is deterministic.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};

use aos_cluster::client::{Action, AttemptId, AttemptOutcome, Connector, Event, FailReason, Phase, State};
use aos_cluster::config::ClientConfig;
use aos_cluster::endpoint::Endpoint;
use aos_cluster::wire::{
    HandshakeOutcome, HandshakeReply, Message, RankedEntry, RankedList, RefuseReason, SessionId,
    SessionOutcome, SessionReply,
};
use aos_cluster::workload::{InstanceId, Workload};
use aos_cluster::RetryPolicy;

/// One host of the shared pool: seeds and ranked entries both pick from it.
#[derive(Debug, Arbitrary)]
struct PoolHost {
    host: u8,
    upper: bool,
    alt_port: bool,
    label: Option<bool>,
}

#[derive(Debug, Arbitrary)]
struct Setup {
    pool: Vec<PoolHost>,
    seeds: Vec<u8>,
    cluster: Option<String>,
    /// Durations in steps of 10 ms, so deadlines of different kinds coincide.
    handshake_timeout: u8,
    connect_timeout: u8,
    attempt_delay: Option<u8>,
    shuffle_seeds: bool,
    load_balance: bool,
    max_list_len: u8,
    retry_base: u8,
    retry_cap: u8,
    max_rounds: u8,
    overall_deadline: Option<u16>,
    rng_seed: u64,
}

/// A ranked entry: a pool host, an id from a small range (so ids repeat too)
/// and figures.
#[derive(Debug, Clone, Arbitrary)]
struct EntrySpec {
    host: u8,
    id: u8,
    connected: u8,
    max_sessions: u8,
}

#[derive(Debug, Clone, Arbitrary)]
enum HandshakeSpec {
    Ranked { stale: bool, entries: Vec<EntrySpec> },
    Refused(RefuseReason),
}

#[derive(Debug, Clone, Arbitrary)]
enum Op {
    HandshakeReply {
        pick: u8,
        wrong_id: bool,
        reply: HandshakeSpec,
    },
    SessionReply {
        pick: u8,
        wrong_id: bool,
        outcome: SessionOutcome,
    },
    TransportFailed {
        pick: u8,
    },
    SessionEnded,
    SessionLost,
    /// Advance by `ticks * 10 ms`.
    Tick {
        ticks: u8,
    },
    Advance {
        ms: u16,
    },
    JumpToTimeout,
    Backwards {
        ms: u16,
    },
    Reconnect,
}

mod model;

use self::model::{Model, Stage};

const TICK: Duration = Duration::from_millis(10);

/// Runs the ops twice and checks both runs produced the same actions.
/// Every time is an offset from `base`, which the caller (the fuzz target or
/// the corpus replay) reads from its clock: the library never does.
pub fn client_ops(data: &[u8], base: Instant) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else { return };
    let Ok(ops) = Vec::<Op>::arbitrary(&mut u) else { return };
    let Some(pool) = pool(&setup) else { return };
    let Some(config) = config(&setup, &pool) else { return };
    let first = run(&config, &pool, setup.rng_seed, &ops, base);
    let second = run(&config, &pool, setup.rng_seed, &ops, base);
    assert_eq!(first, second, "same seed and inputs gave different actions");
}

/// The model's target equality (SPEC 1.5): host case-insensitive and port;
/// the `instance@` label ignored.
fn same_target(a: &Endpoint, b: &Endpoint) -> bool {
    a.same_target(b)
}

fn pool(setup: &Setup) -> Option<Vec<Endpoint>> {
    const HOSTS: [&str; 3] = ["aos1", "aos2", "aos3.contoso.com"];
    if setup.pool.is_empty() {
        return None;
    }
    setup
        .pool
        .iter()
        .take(10)
        .map(|h| {
            let host = HOSTS[usize::from(h.host) % HOSTS.len()];
            let host = if h.upper { host.to_ascii_uppercase() } else { host.to_owned() };
            let port = if h.alt_port { 2713 } else { 2712 };
            let label = h.label.map(|b| if b { "AOS01" } else { "AOS02" });
            Endpoint::with_instance(label, &host, port).ok()
        })
        .collect()
}

fn config(setup: &Setup, pool: &[Endpoint]) -> Option<ClientConfig> {
    let picked: Vec<Endpoint> =
        setup.seeds.iter().take(8).map(|&i| pool[usize::from(i) % pool.len()].clone()).collect();
    let steps = |v: u8| TICK * (u32::from(v) + 1);
    let mut config = ClientConfig {
        seeds: picked.clone(),
        cluster: setup.cluster.clone(),
        handshake_timeout: steps(setup.handshake_timeout),
        connect_timeout: steps(setup.connect_timeout),
        attempt_delay: setup.attempt_delay.map(|v| steps(v % 50)),
        shuffle_seeds: setup.shuffle_seeds,
        load_balance: setup.load_balance,
        max_list_len: usize::from(setup.max_list_len % 12) + 1,
        retry: RetryPolicy {
            base: steps(setup.retry_base),
            cap: steps(setup.retry_cap),
            max_rounds: u32::from(setup.max_rounds % 6) + 1,
        },
        overall_deadline: setup.overall_deadline.map(|v| TICK * (u32::from(v % 2000) + 1)),
    };
    // A seed list with a repeated target is a configuration error; without
    // the repeats the same input goes on.
    let repeats = picked.iter().enumerate().any(|(i, s)| picked[..i].iter().any(|p| same_target(p, s)));
    let seed_problem = |p: &aos_cluster::config::ConfigProblem| {
        matches!(
            p,
            aos_cluster::config::ConfigProblem::EmptySeedList
                | aos_cluster::config::ConfigProblem::DuplicateSeed { .. }
        )
    };
    let refused = config.validate().err().is_some_and(|e| e.problems.iter().any(seed_problem));
    assert_eq!(refused, repeats || picked.is_empty(), "seed validation: {picked:?}");
    config.seeds.clear();
    for seed in picked {
        if !config.seeds.iter().any(|s| same_target(s, &seed)) {
            config.seeds.push(seed);
        }
    }
    config.validate().ok()?;
    Some(config)
}

fn run(config: &ClientConfig, pool: &[Endpoint], rng_seed: u64, ops: &[Op], base: Instant) -> Vec<Action> {
    let c = Connector::new(config.clone(), base, rng_seed).expect("a validated configuration");
    let mut h = Harness { c, model: Model::new(config.clone(), base), now: base, trace: Vec::new() };
    h.drain(Cause::Start);
    for op in ops {
        h.op(op, pool);
    }
    // Left alone, a waiting machine ends in `Connected` or `Failed` within a
    // bounded number of timeouts.
    let rounds = config.retry.max_rounds as usize;
    let bound = 4 + rounds * (config.seeds.len() + config.max_list_len + 2) * 2;
    for _ in 0..bound {
        match h.c.poll_timeout() {
            Some(deadline) => {
                h.now = h.now.max(deadline);
                h.c.handle_timeout(h.now);
                h.drain(Cause::Timeout);
            }
            None => break,
        }
    }
    assert!(
        matches!(h.c.state(), State::Connected | State::Failed | State::Closed),
        "still {:?} after {bound} timeouts",
        h.c.state()
    );
    h.trace
}

/// What the last input was, so the model knows what it may cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Start,
    /// `handle_timeout` (at or behind the latest `now`): the instant closes.
    Timeout,
    /// An event the model expects to end `attempt` (a fault, a refusal...).
    Ends(AttemptId),
    /// A valid, non-empty handshake reply for a live handshake.
    Candidate(AttemptId),
    /// An accepting session reply for the live session attempt.
    Accepts(AttemptId, SessionId),
    /// A session end or loss while connected.
    SessionOver,
    /// An event the machine must ignore: nothing happens.
    Ignored,
}

struct Harness {
    c: Connector,
    model: Model,
    now: Instant,
    trace: Vec<Action>,
}

impl Harness {
    fn op(&mut self, op: &Op, pool: &[Endpoint]) {
        let now = self.now;
        match op.clone() {
            Op::HandshakeReply { pick, wrong_id, reply } => {
                let Some(attempt) = self.model.pick(pick) else { return };
                let request_id = attempt.request_id() ^ u64::from(wrong_id);
                let outcome = match reply {
                    HandshakeSpec::Refused(reason) => HandshakeOutcome::Refused(reason),
                    HandshakeSpec::Ranked { stale, entries } => {
                        let entries = entries.iter().take(20).map(|e| entry(e, pool)).collect();
                        HandshakeOutcome::Ranked(RankedList { stale, entries })
                    }
                };
                let cause = self.model.handshake_reply_cause(attempt, wrong_id, &outcome);
                if let Cause::Candidate(_) = cause {
                    let HandshakeOutcome::Ranked(list) = &outcome else { unreachable!() };
                    self.model.candidate(attempt, list.clone(), now);
                }
                let reply = HandshakeReply { request_id, outcome };
                self.c.handle_event(Event::HandshakeReply { attempt, reply }, now).expect("a reply");
                self.drain(cause);
            }
            Op::SessionReply { pick, wrong_id, outcome } => {
                let Some(attempt) = self.model.pick(pick) else { return };
                let request_id = attempt.request_id() ^ u64::from(wrong_id);
                let cause = self.model.session_reply_cause(attempt, wrong_id, outcome);
                let reply = SessionReply { request_id, outcome };
                self.c.handle_event(Event::SessionReply { attempt, reply }, now).expect("a reply");
                self.drain(cause);
            }
            Op::TransportFailed { pick } => {
                let Some(attempt) = self.model.pick(pick) else { return };
                let cause = if self.model.waits(attempt) { Cause::Ends(attempt) } else { Cause::Ignored };
                let event = Event::TransportFailed { attempt, reason: "fuzz".into() };
                self.c.handle_event(event, now).expect("a transport failure");
                self.drain(cause);
            }
            Op::SessionEnded | Op::SessionLost => {
                let connected = matches!(self.model.stage, Stage::Connected { .. });
                assert_eq!(self.c.state() == State::Connected, connected);
                let event = match op {
                    Op::SessionEnded => Event::SessionEnded,
                    _ => Event::SessionLost { reason: "fuzz".into() },
                };
                let lost = matches!(event, Event::SessionLost { .. });
                assert_eq!(self.c.handle_event(event, now).is_ok(), connected);
                self.model.session_lost = lost.then(|| "fuzz".to_owned());
                self.drain(if connected { Cause::SessionOver } else { Cause::Ignored });
            }
            Op::Tick { ticks } => self.advance(TICK * u32::from(ticks)),
            Op::Advance { ms } => self.advance(Duration::from_millis(u64::from(ms))),
            Op::JumpToTimeout => {
                if let Some(deadline) = self.c.poll_timeout() {
                    self.advance(deadline.saturating_duration_since(self.now));
                }
            }
            Op::Backwards { ms } => {
                let earlier = now.checked_sub(Duration::from_millis(u64::from(ms))).unwrap_or(now);
                let clamped = self.c.stats().clamped;
                self.c.handle_timeout(earlier);
                let expected = clamped + u64::from(earlier < now);
                assert_eq!(self.c.stats().clamped, expected, "a backwards call not counted");
                // Clamped to `now`: the call is a timeout at `now`.
                self.drain(Cause::Timeout);
            }
            Op::Reconnect => {
                let allowed = matches!(self.model.stage, Stage::Closed | Stage::Failed);
                assert_eq!(self.c.reconnect(now).is_ok(), allowed);
                if allowed {
                    self.model.new_effort(now);
                    self.drain(Cause::Start);
                } else {
                    self.drain(Cause::Ignored);
                }
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.c.handle_timeout(self.now);
        self.drain(Cause::Timeout);
    }

    fn drain(&mut self, cause: Cause) {
        let mut count = 0;
        while let Some(action) = self.c.poll_action() {
            self.model.action(&self.c, &action, cause, self.now);
            self.trace.push(action);
            count += 1;
        }
        if cause == Cause::Ignored {
            assert_eq!(count, 0, "an ignored event caused actions");
        }
        self.model.after(&self.c, cause, self.now);
    }
}

fn entry(spec: &EntrySpec, pool: &[Endpoint]) -> RankedEntry {
    RankedEntry {
        id: InstanceId(u32::from(spec.id % 6)),
        endpoint: pool[usize::from(spec.host) % pool.len()].clone(),
        workload: Workload::new(u32::from(spec.connected), u32::from(spec.max_sessions)),
    }
}
