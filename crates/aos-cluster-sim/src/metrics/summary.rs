//! Figures over many seeds: each metric's median and 99th percentile, per
//! scenario and strategy.

use serde::Serialize;

use super::{percentile, RunMetrics};

/// A metric's median and 99th percentile over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Stat {
    /// Median over seeds.
    pub p50: f64,
    /// 99th percentile over seeds (nearest rank: the worst of fewer than 100).
    pub p99: f64,
}

impl Stat {
    /// p50 and p99 of `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Stat {
        let mut v: Vec<f64> = values.into_iter().collect();
        v.sort_by(f64::total_cmp);
        Stat { p50: percentile(&v, 0.5), p99: percentile(&v, 0.99) }
    }
}

/// One scenario and strategy over many seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The scenario's name.
    pub scenario: String,
    /// The strategy's name.
    pub strategy: String,
    /// Runs summarised (one per rng seed).
    pub runs: u32,
    /// Busiest/mean utilisation at the end of the arrivals.
    pub busiest_over_mean: Stat,
    /// Utilisation spread in points.
    pub spread_points: Stat,
    /// Full rejections per session.
    pub full_rejections_per_session: Stat,
    /// Attempts per session.
    pub attempts_per_session: Stat,
    /// Per-run median time to session (ms).
    pub time_to_session_p50_ms: Stat,
    /// Per-run p99 time to session (ms).
    pub time_to_session_p99_ms: Stat,
    /// Per-run worst time to session (ms).
    pub time_to_session_max_ms: Stat,
    /// Peak arrivals per window relative to fair share.
    pub arrival_peak_ratio: Stat,
    /// Peer queries per query round.
    pub peer_queries_per_round: Stat,
    /// The most peer queries in one round, over all seeds.
    pub max_peer_queries_in_a_round: u64,
    /// Events processed per admitted session.
    pub events_per_session: Stat,
    /// Clients lost over all seeds (must be 0).
    pub lost: u64,
    /// Clients failed over all seeds.
    pub failed: u64,
    /// Instances over capacity over all seeds (must be 0).
    pub over_capacity: u64,
    /// Sessions admitted while draining over all seeds (must be 0).
    pub admitted_while_draining: u64,
    /// Events processed over all seeds.
    pub steps: u64,
    /// Measured sessions over all seeds.
    pub sessions: u64,
    /// Hostile handshakes over all seeds.
    pub hostile_handshakes: u64,
}

impl Summary {
    /// Aggregates the runs of one scenario and strategy.
    pub fn of(scenario: &str, strategy: &str, runs: &[RunMetrics]) -> Summary {
        let stat = |f: fn(&RunMetrics) -> f64| Stat::of(runs.iter().map(f));
        let total = |f: fn(&RunMetrics) -> u32| runs.iter().map(|r| u64::from(f(r))).sum();
        Summary {
            scenario: scenario.to_owned(),
            strategy: strategy.to_owned(),
            runs: runs.len() as u32,
            busiest_over_mean: stat(|r| r.busiest_over_mean),
            spread_points: stat(|r| r.spread_points),
            full_rejections_per_session: stat(|r| r.full_rejections_per_session),
            attempts_per_session: stat(|r| r.attempts_per_session),
            time_to_session_p50_ms: stat(|r| r.time_to_session_p50_ms),
            time_to_session_p99_ms: stat(|r| r.time_to_session_p99_ms),
            time_to_session_max_ms: stat(|r| r.time_to_session_max_ms),
            arrival_peak_ratio: stat(|r| r.arrival_peak_ratio),
            peer_queries_per_round: stat(|r| r.peer_queries_per_round),
            max_peer_queries_in_a_round: runs
                .iter()
                .map(|r| r.max_peer_queries_in_a_round)
                .max()
                .unwrap_or(0),
            events_per_session: stat(|r| r.events_per_session),
            lost: total(|r| r.lost),
            failed: total(|r| r.failed),
            over_capacity: total(|r| r.over_capacity),
            admitted_while_draining: total(|r| r.admitted_while_draining),
            steps: runs.iter().map(|r| r.steps).sum(),
            sessions: total(|r| r.sessions),
            hostile_handshakes: runs.iter().map(|r| r.hostile_handshakes).sum(),
        }
    }
}
