//! `rank_into` against two baselines in the same run:
//! - `floor`: `sort_unstable_by_key` over precomputed `u64` keys, one per
//!   eligible member (a fresh copy per iteration, made outside the timing):
//!   no filtering, no key computation, no tie handling. Nothing that sorts
//!   the members can be much faster.
//! - `floor_indexed`: the same with each key tagged by its index (`key << 20 | i`;
//!   these keys are below 2^52), as any sort that answers with indices must
//!   carry them: many loads tie, and a sort of untagged keys profits from the
//!   duplicates.
//! - `naive_f64`: what most would write: filter, `connected as f64 / max`,
//!   `sort_by(partial_cmp)`, collect the indices. Inexact (1/3 and 333_333/1_000_000
//!   can compare wrongly) and without tie rotation.
//!
//! Run: `cargo bench --all-features --bench rank -- --warm-up-time 1 --measurement-time 3`

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use aos_cluster::rng::Rng;
use aos_cluster::workload::{rank_into, Candidate, Role, Workload};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};

/// A cluster of `n` members with AX-like capacities, about one in ten left out
/// (full, draining, stale or load-balancer-only).
fn cluster(n: usize, seed: u64) -> Vec<Candidate> {
    let mut rng = Rng::new(seed);
    const CAPACITIES: [u32; 6] = [50, 100, 200, 500, 1000, 2000];
    (0..n)
        .map(|_| {
            let max_sessions = CAPACITIES[rng.below_or_eq(CAPACITIES.len() as u64 - 1) as usize];
            let connected = rng.below_or_eq(u64::from(max_sessions)) as u32;
            let (role, accepting) = match rng.below_or_eq(29) {
                0 => (Role::LoadBalancerOnly, true),
                1 | 2 => (Role::Serving, false),
                _ => (Role::Serving, true),
            };
            Candidate { role, accepting, workload: Workload::new(connected, max_sessions) }
        })
        .collect()
}

fn eligible(c: &Candidate) -> bool {
    c.role == Role::Serving && c.accepting && c.workload.connected < c.workload.max_sessions
}

fn bench_rank(c: &mut Criterion) {
    let mut group = c.benchmark_group("rank");
    for n in [8usize, 99, 1_000, 100_000] {
        let cands = cluster(n, 0x5eed ^ n as u64);
        let size = if n > 10_000 { BatchSize::LargeInput } else { BatchSize::SmallInput };

        let mut out = Vec::with_capacity(n);
        let mut salt = 0u64;
        group.bench_with_input(BenchmarkId::new("rank_into", n), &cands, |b, cands| {
            b.iter(|| {
                salt = salt.wrapping_add(1);
                rank_into(black_box(cands), salt, &mut out);
                black_box(out.len())
            })
        });

        // Any order-preserving u64 key will do for the floor; this one is exact
        // for these capacities.
        let keys: Vec<u64> = cands
            .iter()
            .filter(|c| eligible(c))
            .map(|c| (u64::from(c.workload.connected) << 32) / u64::from(c.workload.max_sessions))
            .collect();
        group.bench_with_input(BenchmarkId::new("floor", n), &keys, |b, keys| {
            b.iter_batched(
                || keys.clone(),
                |mut keys| {
                    keys.sort_unstable_by_key(|&k| k);
                    keys
                },
                size,
            )
        });

        // The same keys carrying their member's index in the low bits, as any
        // sort that must answer with indices carries it: no duplicate keys left.
        let tagged: Vec<u64> = keys.iter().enumerate().map(|(i, &k)| (k << 20) | i as u64).collect();
        group.bench_with_input(BenchmarkId::new("floor_indexed", n), &tagged, |b, tagged| {
            b.iter_batched(
                || tagged.clone(),
                |mut tagged| {
                    tagged.sort_unstable_by_key(|&k| k);
                    tagged
                },
                size,
            )
        });

        group.bench_with_input(BenchmarkId::new("naive_f64", n), &cands, |b, cands| {
            b.iter(|| {
                let mut loads: Vec<(usize, f64)> = black_box(cands)
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| eligible(c))
                    .map(|(i, c)| (i, f64::from(c.workload.connected) / f64::from(c.workload.max_sessions)))
                    .collect();
                loads.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal));
                loads.into_iter().map(|(i, _)| i).collect::<Vec<usize>>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_rank);
criterion_main!(benches);
