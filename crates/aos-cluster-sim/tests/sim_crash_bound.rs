//! What the `crash` goal asks of a balancer: at most
//! 1.25x fair share of arrivals per 100 ms window at p99 over 50 seeds, with
//! the scenario's client latency jitter kept.
//!
//! A balancer decides who gets a client when it answers the handshake; the
//! client lands one reply and one request later. The best it can do with
//! what it knows is an exact round robin over the survivors in the order the
//! handshakes reach it (every survivor holds the same load). This file
//! measures that ideal, with the scenario's own latency distribution, return
//! window and the simulator's own metric, so the protocol's figure can be
//! read against it.

use std::time::Duration;

use aos_cluster_sim::metrics::{Admission, InstanceLoad, RunData, RunMetrics};
use aos_cluster_sim::rng::Rng;
use aos_cluster_sim::{FaultKind, Scenario, Stat};

const SEEDS: u64 = 50;
/// The crashed instance's sessions (`crash`: 1 600 clients over 8 instances).
const RETURNING: usize = 200;

/// The worst arrivals/fair-share ratio of one run of the ideal balancer.
fn ideal_round_robin(scenario: &Scenario, seed: u64) -> f64 {
    let FaultKind::Crash { return_within, .. } = scenario.faults[0].kind else { panic!("crash has a crash") };
    let survivors = scenario.instances[0].count as usize - 1;
    let latency = &scenario.network.client_latency;
    let mut rng = Rng::new(seed);
    let span = return_within.as_nanos() as u64;
    // When each returning client's handshake reaches the balancer (no time
    // is charged for the refused first seed: that only helps the ideal).
    let mut at_balancer: Vec<Duration> = (0..RETURNING)
        .map(|_| Duration::from_nanos(rng.below_or_eq(span)) + latency.sample(&mut rng))
        .collect();
    at_balancer.sort();
    let mut admissions: Vec<Admission> = at_balancer
        .iter()
        .enumerate()
        .map(|(k, &t)| Admission {
            // Reply to the client, then its request to the target.
            at: t + latency.sample(&mut rng) + latency.sample(&mut rng),
            instance: 1 + (k % survivors) as u32,
            measured: true,
        })
        .collect();
    admissions.sort_by_key(|a| a.at);
    let max_sessions = scenario.instances[0].max_sessions;
    let loads: Vec<InstanceLoad> =
        (0..=survivors).map(|i| InstanceLoad { connected: 0, max_sessions, survivor: i > 0 }).collect();
    let data = RunData::admissions_only(seed, &admissions, &loads, Duration::from_millis(100));
    RunMetrics::compute(&data).arrival_peak_ratio
}

/// An exact round robin, knowing everything a balancer can know, misses
/// 1.25x at p99: the landing jitter (two one-way client latencies of 5-15 ms,
/// a 20 ms spread against one arrival per 2.5 ms) reorders admissions across
/// window edges by more than a rotation of seven survivors. Measured: the
/// ideal gives p50 1.167 and p99 1.289 over these 50 seeds (1.312 over 300);
/// the protocol in the full simulation (`sim_cluster.rs`) p50 1.17 and p99
/// 1.35 over 50 seeds, 1.32 over 300. It sits at the ideal's level, so the
/// gap to 1.25 is the network's, not the ranking's.
#[test]
fn an_exact_round_robin_misses_the_crash_goal_at_p99() {
    let scenario = Scenario::crash();
    let ideal = Stat::of((0..SEEDS).map(|seed| ideal_round_robin(&scenario, seed)));
    eprintln!("exact round robin in crash, {SEEDS} seeds: p50 {:.3}, p99 {:.3}", ideal.p50, ideal.p99);
    assert!(ideal.p50 <= 1.25, "the median window is within the goal: {}", ideal.p50);
    assert!(ideal.p99 > 1.25, "p99 of the ideal balancer: {}", ideal.p99);
}

/// The model is the metric's, not a strawman: without jitter the same round
/// robin is judged perfect up to whole sessions.
#[test]
fn without_jitter_the_same_round_robin_meets_the_goal() {
    let mut scenario = Scenario::crash();
    scenario.network.client_latency =
        aos_cluster_sim::dist::Dist::Constant { value: Duration::from_millis(10) };
    let ideal = Stat::of((0..SEEDS).map(|seed| ideal_round_robin(&scenario, seed)));
    assert!(ideal.p99 <= 1.25, "p99 without jitter: {}", ideal.p99);
}
