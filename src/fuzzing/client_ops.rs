//! Fuzz body `client_ops`: an arbitrary client configuration (timeouts,
//! staggering, retry policy, overall deadline and cluster name all drawn from
//! the input) and an arbitrary sequence of replies, failures and time
//! advances through a [`Connector`](crate::client::Connector), checked after every action against a
//! reference model that predicts:
//!
//! - the winning handshake reply: among the valid, non-empty replies
//!   delivered at one instant before the instant closes, the earliest seed in
//!   walk order (see the module docs of [`crate::client`] on staggering);
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

use crate::client::{Action, AttemptId, AttemptOutcome, Connector, Event, FailReason, Phase, State};
use crate::config::ClientConfig;
use crate::endpoint::Endpoint;
use crate::wire::{
    HandshakeOutcome, HandshakeReply, Message, RankedEntry, RankedList, RefuseReason, SessionId,
    SessionOutcome, SessionReply,
};
use crate::workload::{InstanceId, Workload};
use crate::RetryPolicy;

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
    let seed_problem = |p: &crate::config::ConfigProblem| {
        matches!(
            p,
            crate::config::ConfigProblem::EmptySeedList | crate::config::ConfigProblem::DuplicateSeed { .. }
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
enum Stage {
    Handshaking,
    Connecting { targets: Vec<(Endpoint, Option<InstanceId>)>, attempt: AttemptId },
    Backoff { retry_at: Instant },
    Connected { attempt: AttemptId, endpoint: Endpoint },
    Closed,
    Failed,
}

/// The reference model: fed every input's expected effect and every action.
#[derive(Debug)]
struct Model {
    config: ClientConfig,
    effort: u32,
    effort_start: Instant,
    round: u32,
    stage: Stage,
    attempts: BTreeMap<AttemptId, Attempt>,
    /// Every attempt ever started, in order, for picking.
    seen: Vec<AttemptId>,
    /// Seeds started this round, in walk order.
    walk: Vec<usize>,
    last_handshake_start: Option<Instant>,
    /// Valid replies delivered in the open instant: (instant, walk position,
    /// attempt, list).
    candidates: Vec<(Instant, usize, AttemptId, RankedList)>,
    session_lost: Option<String>,
    /// A handshake was closed since the last input.
    handshake_ended_in_drain: bool,
}

impl Model {
    fn new(config: ClientConfig, now: Instant) -> Self {
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

    fn new_effort(&mut self, now: Instant) {
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

    fn pick(&self, p: u8) -> Option<AttemptId> {
        (!self.seen.is_empty()).then(|| self.seen[usize::from(p) % self.seen.len()])
    }

    /// Live: started and not closed (the session's attempt counts as closed).
    fn is_live(&self, attempt: AttemptId) -> bool {
        self.attempts.get(&attempt).is_some_and(|a| !a.closed && !a.walked)
    }

    /// Waiting for a reply: live and not a reply already held.
    fn waits(&self, attempt: AttemptId) -> bool {
        self.is_live(attempt) && !self.candidates.iter().any(|c| c.2 == attempt)
    }

    fn handshake_reply_cause(&self, attempt: AttemptId, wrong_id: bool, outcome: &HandshakeOutcome) -> Cause {
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

    fn session_reply_cause(&self, attempt: AttemptId, wrong_id: bool, outcome: SessionOutcome) -> Cause {
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

    fn candidate(&mut self, attempt: AttemptId, list: RankedList, now: Instant) {
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

    fn action(&mut self, c: &Connector, action: &Action, cause: Cause, now: Instant) {
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
                assert!(self.seen.last().map_or(true, |last| last < attempt), "attempt ids not fresh");
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
        }
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

    /// After every input: the predicted effects happened.
    fn after(&mut self, c: &Connector, cause: Cause, now: Instant) {
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
