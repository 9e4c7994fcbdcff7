//! Instance machine throughput, each figure side by side with the bare
//! `rank()` call on the same figures, so the machine's overhead is a ratio.
//!
//! - `handshake/{8,99,1000}`: one handshake answered by a full round (a warm
//!   snapshot, one workload query and report per peer, the ranked reply),
//!   against `rank()` of the same members; `instance_round_bounded`: the
//!   same with the default bounded fan-out (8 peers asked, the rest ranked
//!   on registry figures).
//! - `burst_10000/{99,1000}`: 10 000 handshakes coalesced into one round,
//!   against 10 000 `rank()` calls (what the round cost when every reply
//!   re-ranked in full; replies now re-insert only the head). The queries
//!   the burst cost are printed, with the bounded fan-out and
//!   with `FanOut::FULL`.
//! - memory per instance, printed against the raw snapshot it was built from.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::mem::size_of;
use std::time::{Duration, Instant};

use aos_cluster::config::{FanOut, InstanceConfig};
use aos_cluster::endpoint::Endpoint;
use aos_cluster::instance::{Action, ConnectionId, Event, Instance};
use aos_cluster::registry::MemberRecord;
use aos_cluster::wire::{HandshakeRequest, WorkloadReport};
use aos_cluster::workload::{rank, Candidate, InstanceId, Role, Workload};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const CLUSTER: &str = "bench";

fn endpoint(id: u32) -> Endpoint {
    Endpoint::new(&format!("aos{id}.contoso.com"), 2712).expect("valid")
}

/// Peer `id`'s figures: spread loads with some ties.
fn figures(id: u32) -> Workload {
    Workload::new((id * 7) % 50, 100)
}

fn members(n: u32) -> Vec<MemberRecord> {
    (1..n)
        .map(|id| MemberRecord {
            id: InstanceId(id),
            endpoint: endpoint(id),
            role: Role::Serving,
            accepting: true,
            workload: figures(id),
            heartbeat_age: Duration::from_secs(1),
        })
        .collect()
}

fn candidates(n: u32) -> Vec<Candidate> {
    (0..n)
        .map(|id| Candidate {
            role: Role::Serving,
            accepting: true,
            workload: if id == 0 { Workload::new(0, 1_000_000) } else { figures(id) },
        })
        .collect()
}

fn request(request_id: u64) -> HandshakeRequest {
    HandshakeRequest { request_id, salt: request_id, load_balance: true, cluster: Some(CLUSTER.to_owned()) }
}

/// Instance 0 of an `n`-member cluster whose snapshot stays warm.
fn warm_instance(n: u32, now: Instant) -> Instance {
    warm_instance_with(n, FanOut::default(), now)
}

fn warm_instance_with(n: u32, fan_out: FanOut, now: Instant) -> Instance {
    let mut config = InstanceConfig::new(InstanceId(0), endpoint(0), 1_000_000);
    config.fan_out = fan_out;
    config.cluster = Some(CLUSTER.to_owned());
    config.snapshot_ttl = Duration::from_secs(3600);
    config.member_ttl = Duration::from_secs(7200);
    let mut inst = Instance::new(config, now, 1).expect("valid");
    inst.handle_event(Event::HandshakeRequest { conn: ConnectionId(0), request: request(0) }, now)
        .expect("ok");
    let mut queries = Vec::new();
    while let Some(action) = inst.poll_action() {
        match action {
            Action::QueryRegistry { query_id, .. } => {
                inst.handle_event(Event::RegistrySnapshot { query_id, members: members(n) }, now)
                    .expect("ok");
            }
            Action::QueryPeer { query_id, peer, .. } => queries.push((query_id, peer)),
            _ => {}
        }
    }
    answer(&mut inst, &queries, now);
    while inst.poll_action().is_some() {}
    inst
}

fn answer(inst: &mut Instance, queries: &[(aos_cluster::wire::QueryId, InstanceId)], now: Instant) {
    for &(query_id, id) in queries {
        let report =
            WorkloadReport { query_id, id, role: Role::Serving, accepting: true, workload: figures(id.0) };
        inst.handle_event(Event::WorkloadReport { report }, now).expect("ok");
    }
}

/// One handshake through a full round; returns the reply count (1).
fn one_round(
    inst: &mut Instance,
    request_id: u64,
    queries: &mut Vec<(aos_cluster::wire::QueryId, InstanceId)>,
    now: Instant,
) -> usize {
    inst.handle_event(
        Event::HandshakeRequest { conn: ConnectionId(request_id), request: request(request_id) },
        now,
    )
    .expect("ok");
    queries.clear();
    while let Some(action) = inst.poll_action() {
        if let Action::QueryPeer { query_id, peer, .. } = action {
            queries.push((query_id, peer));
        }
    }
    answer(inst, queries, now);
    let mut replies = 0;
    while let Some(action) = inst.poll_action() {
        replies += usize::from(matches!(action, Action::Reply { .. }));
    }
    replies
}

fn handshakes(c: &mut Criterion) {
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let mut group = c.benchmark_group("handshake");
    for n in [8u32, 99, 1000] {
        group.throughput(Throughput::Elements(1));
        let cands = candidates(n);
        group.bench_with_input(BenchmarkId::new("bare_rank", n), &n, |b, _| {
            let mut salt = 0u64;
            b.iter(|| {
                salt += 1;
                black_box(rank(black_box(&cands), salt))
            })
        });
        for (name, fan_out) in
            [("instance_round", FanOut::FULL), ("instance_round_bounded", FanOut::default())]
        {
            if name != "instance_round" && fan_out.is_full_for(n as usize - 1) {
                continue;
            }
            let mut inst = warm_instance_with(n, fan_out, now);
            let mut queries = Vec::new();
            let mut id = 1u64;
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    id += 1;
                    black_box(one_round(&mut inst, id, &mut queries, now))
                })
            });
        }
    }
    group.finish();
}

const BURST: u64 = 10_000;

fn burst(c: &mut Criterion) {
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let mut group = c.benchmark_group("burst_10000");
    group.throughput(Throughput::Elements(BURST));
    group.sample_size(10);
    for n in [99u32, 1000] {
        burst_of(&mut group, n, now);
    }
    group.finish();
}

fn burst_of(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    n: u32,
    now: Instant,
) {
    let cands = candidates(n);
    group.bench_function(BenchmarkId::new("bare_rank", n), |b| {
        b.iter(|| {
            for salt in 0..BURST {
                black_box(rank(black_box(&cands), salt));
            }
        })
    });
    let run = |inst: &mut Instance| {
        let before = inst.stats().clone();
        let mut queries = Vec::new();
        for r in 1..=BURST {
            inst.handle_event(Event::HandshakeRequest { conn: ConnectionId(r), request: request(r) }, now)
                .expect("ok");
            while let Some(action) = inst.poll_action() {
                if let Action::QueryPeer { query_id, peer, .. } = action {
                    queries.push((query_id, peer));
                }
            }
        }
        answer(inst, &queries, now);
        let mut replies = 0u64;
        while let Some(action) = inst.poll_action() {
            replies += u64::from(matches!(action, Action::Reply { .. }));
        }
        assert_eq!(replies, BURST);
        let after = inst.stats();
        (
            after.round.registry_queries - before.round.registry_queries,
            after.round.peer_queries - before.round.peer_queries,
        )
    };
    {
        // A cold instance: the burst pays for the registry query too.
        let mut config = InstanceConfig::new(InstanceId(0), endpoint(0), 1_000_000);
        config.cluster = Some(CLUSTER.to_owned());
        let mut inst = Instance::new(config, now, 1).expect("valid");
        while inst.poll_action().is_some() {}
        inst.handle_event(Event::HandshakeRequest { conn: ConnectionId(0), request: request(0) }, now)
            .expect("ok");
        let registry = matches!(inst.poll_action(), Some(Action::QueryRegistry { .. }));
        let mut extra = 0;
        for r in 1..BURST {
            inst.handle_event(Event::HandshakeRequest { conn: ConnectionId(r), request: request(r) }, now)
                .expect("ok");
            while inst.poll_action().is_some() {
                extra += 1;
            }
        }
        eprintln!(
            "burst_10000/{n}: cold: {} registry query, {extra} further actions before the registry answers",
            u8::from(registry)
        );
        for (name, fan_out) in [("bounded (default)", FanOut::default()), ("full", FanOut::FULL)] {
            let mut warm = warm_instance_with(n, fan_out, now);
            let (registry_queries, peer_queries) = run(&mut warm);
            eprintln!(
                "burst_10000/{n}: warm, {name} fan-out: {BURST} handshakes cost {registry_queries} registry queries and {peer_queries} peer queries ({} peers)",
                n - 1
            );
        }
    }
    let mut inst = warm_instance(n, now);
    group.bench_function(BenchmarkId::new("instance", n), |b| b.iter(|| black_box(run(&mut inst))));
}

fn memory(_c: &mut Criterion) {
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    for n in [8u32, 99, 1000] {
        let rows = members(n);
        let raw = rows.capacity() * size_of::<MemberRecord>()
            + rows.iter().map(|m| m.endpoint.host().len()).sum::<usize>();
        let mut inst = warm_instance(n, now);
        let warm = inst.memory_footprint();
        for r in 1..=1000u64 {
            inst.handle_event(Event::HandshakeRequest { conn: ConnectionId(r), request: request(r) }, now)
                .expect("ok");
        }
        let mut queries = Vec::new();
        while let Some(action) = inst.poll_action() {
            if let Action::QueryPeer { query_id, peer, .. } = action {
                queries.push((query_id, peer));
            }
        }
        let in_flight = inst.memory_footprint();
        answer(&mut inst, &queries, now);
        while inst.poll_action().is_some() {}
        let after = inst.memory_footprint();
        eprintln!(
            "memory/{n}: raw snapshot rows {raw} B (baseline); instance warm {warm} B ({:.2}x), \
             1000 handshakes in flight {in_flight} B, after the burst {after} B",
            warm as f64 / raw as f64
        );
    }
}

criterion_group!(benches, handshakes, burst, memory);
criterion_main!(benches);
