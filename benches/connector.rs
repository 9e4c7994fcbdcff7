//! Whole connection rounds through a canned driver, scaling over dead seeds
//! and ranked-list sizes, each beside a baseline that only builds the same
//! requests and clones the same list (what any hand-written client must do),
//! so the machine's overhead shows as a ratio. Also the idle cost of
//! `poll_action` + `poll_timeout` beside a bare empty-queue pop and timer min.
//!
//! Allocations per round: `stats_alloc` counts every allocation (its
//! instrumented system allocator needs no `unsafe` here); before the timings,
//! each scenario's whole round and its baseline are counted side by side.

use std::alloc::System;
use std::hint::black_box;
use std::time::{Duration, Instant};

use aos_cluster::client::{Action, Connector, Event};
use aos_cluster::wire::{
    HandshakeOutcome, HandshakeReply, HandshakeRequest, RankedEntry, RankedList, RejectReason,
    SessionOutcome, SessionReply, SessionRequest,
};
use aos_cluster::{ClientConfig, Endpoint, InstanceId, Workload};
use criterion::{BenchmarkId, Criterion};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const STEP_LIMIT: usize = 10_000;

fn ep(host: String) -> Endpoint {
    Endpoint::new(&host, 2712).expect("bench endpoint")
}

/// `dead` silent seeds, then one that answers with `list_len` entries; every
/// entry but the last is full, the last admits.
struct Scenario {
    config: ClientConfig,
    dead: usize,
    list: Vec<RankedEntry>,
}

impl Scenario {
    fn new(dead: usize, list_len: usize) -> Self {
        let mut config = ClientConfig::with_seeds((0..=dead).map(|i| ep(format!("seed{i}"))).collect());
        config.cluster = Some("contoso".into());
        let list = (0..list_len)
            .map(|i| RankedEntry {
                id: InstanceId(i as u32),
                endpoint: ep(format!("aos{i}")),
                workload: Workload::new(i as u32, 1000),
            })
            .collect();
        Scenario { config, dead, list }
    }

    /// One whole round: a Connector built and driven to `Connected`, dead
    /// seeds timing out. Returns the driver steps taken.
    fn run(&self, base: Instant) -> usize {
        let mut c = Connector::new(self.config.clone(), base, 42).expect("valid config");
        let mut now = base;
        for step in 0..STEP_LIMIT {
            let mut reply = None;
            while let Some(action) = c.poll_action() {
                match action {
                    Action::SendHandshake { attempt, seed_index, .. } if seed_index == self.dead => {
                        let list = RankedList { stale: false, entries: self.list.clone() };
                        let outcome = HandshakeOutcome::Ranked(list);
                        let message = HandshakeReply { request_id: attempt.request_id(), outcome };
                        reply = Some(Event::HandshakeReply { attempt, reply: message });
                    }
                    Action::SendSessionRequest { attempt, rank, .. } => {
                        let outcome = if rank + 1 == self.list.len() {
                            SessionOutcome::Accepted { session_id: aos_cluster::wire::SessionId(7) }
                        } else {
                            SessionOutcome::Rejected(RejectReason::Full)
                        };
                        let message = SessionReply { request_id: attempt.request_id(), outcome };
                        reply = Some(Event::SessionReply { attempt, reply: message });
                    }
                    Action::Connected { .. } => return step,
                    other => {
                        black_box(other);
                    }
                }
            }
            match reply {
                Some(event) => c.handle_event(event, now).expect("fits"),
                None => {
                    now = c.poll_timeout().expect("waiting");
                    c.handle_timeout(now);
                }
            }
        }
        panic!("no session within {STEP_LIMIT} steps");
    }

    /// The baseline: the same requests built, the same list cloned and walked.
    fn baseline(&self) -> usize {
        let mut work = 0;
        for (i, seed) in self.config.seeds.iter().enumerate() {
            let request = HandshakeRequest {
                request_id: i as u64,
                salt: i as u64,
                load_balance: true,
                cluster: self.config.cluster.clone(),
            };
            black_box((seed.clone(), request));
            work += 1;
        }
        let entries = black_box(self.list.clone());
        for (rank, entry) in entries.iter().enumerate() {
            black_box((entry.endpoint.clone(), SessionRequest { request_id: rank as u64, credential: None }));
            work += 1;
        }
        work
    }
}

const SCENARIOS: [(usize, usize); 7] = [(0, 2), (1, 2), (4, 2), (16, 2), (0, 8), (0, 32), (0, 99)];

/// Allocations (count, bytes) of `f`, on average over `n` calls.
fn allocations_per_call(n: u64, mut f: impl FnMut()) -> (u64, u64) {
    let region = Region::new(GLOBAL);
    for _ in 0..n {
        f();
    }
    let stats = region.change();
    ((stats.allocations + stats.reallocations) as u64 / n, stats.bytes_allocated as u64 / n)
}

/// Prints allocations per whole round beside the baseline's, and fails when
/// the machine's own allocations beyond the baseline's are more than a small
/// constant: they must not grow with dead seeds or list length (a copy per
/// step or per entry would).
fn allocations(base: Instant) {
    const CALLS: u64 = 200;
    for (dead, list_len) in SCENARIOS {
        let scenario = Scenario::new(dead, list_len);
        let (count, bytes) = allocations_per_call(CALLS, || {
            black_box(scenario.run(base));
        });
        let (base_count, base_bytes) = allocations_per_call(CALLS, || {
            black_box(scenario.baseline());
        });
        println!(
            "allocations/round/dead{dead}_list{list_len}: connector {count} ({bytes} B), \
             baseline {base_count} ({base_bytes} B)"
        );
        let allowed = base_count + 16;
        assert!(count <= allowed, "dead{dead}_list{list_len}: {count} allocations > {allowed}");
    }
}

fn rounds(c: &mut Criterion) {
    #[allow(clippy::disallowed_methods)]
    let base = Instant::now();
    let mut group = c.benchmark_group("round");
    for (dead, list_len) in SCENARIOS {
        let scenario = Scenario::new(dead, list_len);
        let label = format!("dead{dead}_list{list_len}");
        group.bench_with_input(BenchmarkId::new("connector", &label), &scenario, |b, s| {
            b.iter(|| s.run(base))
        });
        group.bench_with_input(BenchmarkId::new("baseline", &label), &scenario, |b, s| {
            b.iter(|| s.baseline())
        });
    }
    group.finish();
}

fn idle(c: &mut Criterion) {
    #[allow(clippy::disallowed_methods)]
    let base = Instant::now();
    let mut connector = Connector::new(Scenario::new(0, 2).config, base, 1).expect("valid");
    while connector.poll_action().is_some() {}
    let mut group = c.benchmark_group("idle");
    group.bench_function("connector_poll_action_and_timeout", |b| {
        b.iter(|| (black_box(&mut connector).poll_action().is_none(), black_box(&connector).poll_timeout()))
    });
    let mut queue = std::collections::VecDeque::<Action>::with_capacity(8);
    let timers = [None, Some(base + Duration::from_secs(5)), None, None, None];
    group.bench_function("baseline_pop_and_min", |b| {
        b.iter(|| {
            (black_box(&mut queue).pop_front().is_none(), black_box(&timers).iter().flatten().min().copied())
        })
    });
    group.finish();
}

fn main() {
    #[allow(clippy::disallowed_methods)]
    let base = Instant::now();
    allocations(base);
    let mut criterion = Criterion::default().configure_from_args();
    rounds(&mut criterion);
    idle(&mut criterion);
    criterion.final_summary();
}
