//! The quality goals at scale: the login storm at 1 000 and 5 000
//! instances with the bounded fan-out, and the full fan-out unchanged where
//! the cluster is small.
//!
//! Fewer seeds than the 50 of the README's figures: one login storm of
//! 125 000 clients at 1 000 instances is about a quarter of a million
//! simulated sessions' work for the machines, and CI runs every test of the
//! workspace in debug on two cores within a 20-minute budget. The 50-seed
//! figures come from `simulate scale --strategy all --runs 50` (crate README).

use std::time::Instant;

use aos_cluster_sim::strategy::BOUNDED_LIVE;
use aos_cluster_sim::{run_seeds, RunMetrics, Scenario, Simulation, Stat, Strategy};

/// Seeds of the 1 000-instance storm here (50 of `login-storm-1000` in the README).
const SEEDS_1000: u64 = 2;
/// Seeds of the 5 000-instance storm here.
const SEEDS_5000: u64 = 1;

/// The storms here have a fifth of `login-storm-N`'s clients per instance
/// at 1 000 instances (25: 25 000 clients, instances of 50) and 5 at 5 000
/// (25 000 clients, instances of 10), each instance sized so the storm fills
/// half of it as in every login storm: one `login-storm-1000` seed costs
/// about 10 s of CPU in the test profile, which CI cannot pay per seed.
fn test_storm(instances: u32, per_instance: u32) -> Scenario {
    let mut s = Scenario::login_storm(instances, instances * per_instance);
    s.fit_to_size();
    s
}

fn epoch() -> Instant {
    #[allow(clippy::disallowed_methods)] // the one base instant; every time is relative to it
    Instant::now()
}

fn runs(scenario: &Scenario, strategy: Strategy, seeds: u64) -> Vec<RunMetrics> {
    let runs = run_seeds(scenario, strategy, 0..seeds, epoch(), |_| {})
        .unwrap_or_else(|e| panic!("{} / {strategy}: {e}", scenario.name));
    for r in &runs {
        let what = format!("{} / {strategy} / seed {}", scenario.name, r.rng_seed);
        assert_eq!((r.lost, r.failed, r.over_capacity), (0, 0, 0), "{what}: lost, failed, over capacity");
        assert_eq!(r.sessions, r.clients, "{what}: every measured client connects");
    }
    runs
}

/// The storm's goals with the bounded fan-out: balance as good as the full
/// fan-out's at 8 instances (busiest/mean <= 1.05), and no round asks more
/// than k peers. The bound is k plus the members whose registry figures are
/// too old (`max_figure_age`, 10 s); in a storm of 1 s, with heartbeats
/// every 5 s since the start, there are none.
fn storm_goals(scenario: Scenario, seeds: u64) {
    let runs = runs(&scenario, Strategy::Bounded, seeds);
    assert!(runs.iter().all(|r| r.clients == scenario.client_count()), "every storm client is measured");
    let busiest = Stat::of(runs.iter().map(|r| r.busiest_over_mean));
    assert!(busiest.p99 <= 1.05, "{}: p99 busiest/mean {}", scenario.name, busiest.p99);
    for r in &runs {
        assert!(
            r.max_peer_queries_in_a_round <= BOUNDED_LIVE as u64,
            "{} / seed {}: a round asked {} peers (k = {BOUNDED_LIVE})",
            scenario.name,
            r.rng_seed,
            r.max_peer_queries_in_a_round
        );
        assert!(r.peer_queries_per_round > 0.0, "rounds asked peers at all");
    }
}

#[test]
fn goal_login_storm_1000_bounded_is_even_and_asks_k_peers_per_round() {
    storm_goals(test_storm(1000, 25), SEEDS_1000);
}

/// `login-storm-1000` itself (125 000 clients, instances of 250), one seed:
/// every client connects, no round asks more than k peers, and busiest/mean
/// meets the goal with the bounded fan-out (measured 1.008 on seed 0, and
/// at p99 over the README's 50 seeds). Before released reservations stayed
/// predicted until figures showed them, members the round does not ask
/// looked empty on their 5 s old registry figures while sessions piled up
/// on them, and the members asked live starved (1.048 here, 1.080 before
/// clients held the handshake's connection through their walk).
#[test]
fn goal_login_storm_1000_itself_with_the_bounded_fan_out() {
    let scenario = Scenario::login_storm_scaled(1000);
    let r = &runs(&scenario, Strategy::Bounded, 1)[0];
    assert_eq!((r.clients, r.sessions, r.failed, r.lost), (125_000, 125_000, 0, 0));
    assert!(r.max_peer_queries_in_a_round <= BOUNDED_LIVE as u64, "{}", r.max_peer_queries_in_a_round);
    assert!(r.busiest_over_mean <= 1.05, "busiest/mean {}", r.busiest_over_mean);
}

#[test]
fn goal_login_storm_5000_bounded_completes_evenly() {
    storm_goals(test_storm(5000, 5), SEEDS_5000);
}

/// The full fan-out asks every other instance in every round: the mean is
/// n - 1 exactly when no round starts before the registry lists everyone.
#[test]
fn full_fan_out_asks_every_peer_and_bounded_asks_k() {
    let scenario = Scenario::login_storm_scaled(100);
    let full = runs(&scenario, Strategy::Full, 1);
    assert_eq!(full[0].max_peer_queries_in_a_round, 99);
    let bounded = runs(&scenario, Strategy::Bounded, 1);
    assert!(bounded[0].max_peer_queries_in_a_round <= BOUNDED_LIVE as u64, "{:?}", bounded[0]);
    // Measured: 7 events per session against 19.
    assert!(bounded[0].events_per_session * 2.0 < full[0].events_per_session, "bounded is cheaper");
}

/// Crash and join at 100 instances with the bounded fan-out: every measured
/// client (the returning ones, the late arrivals) connects.
#[test]
fn crash_and_join_at_100_connect_everyone_with_the_bounded_fan_out() {
    for scenario in [Scenario::crash_at(100), Scenario::join_at(100)] {
        let r = &runs(&scenario, Strategy::Bounded, 1)[0];
        assert!(r.clients >= 2000, "{}: {} measured", scenario.name, r.clients);
    }
}

/// At 8 instances the defaults keep the full fan-out (`FanOut::default()`'s
/// `full_up_to` is above 7 peers): `default` and `full` are the same run, so
/// the 8-instance figures and goals of `sim_cluster` are the full fan-out's.
#[test]
fn default_is_the_full_fan_out_at_8_instances() {
    for scenario in [Scenario::login_storm(8, 1000), Scenario::crash()] {
        let run = |strategy| Simulation::new(&scenario, strategy, 5, epoch()).unwrap().run().unwrap();
        let (default, full) = (run(Strategy::Default), run(Strategy::Full));
        assert_eq!(default.metrics, full.metrics, "{}", scenario.name);
        assert_eq!(default.clients, full.clients, "{}", scenario.name);
        assert_eq!(default.metrics.max_peer_queries_in_a_round, 7);
    }
}

/// After a crash the dead members' registry rows keep their old figures,
/// the best in the cluster, for `member_ttl`. Bounded rounds ask a
/// replacement for every asked member found unreachable, so the returning
/// clients are sent to members that answered: one refused seed, one
/// handshake, one session request (3 attempts), in about the time of the
/// full fan-out, and evenly. Here 300 instances (38 crash, 7 600 clients
/// return); `crash-1000` in the README. Before replacements the lists were
/// headed by dead members nobody had asked yet (`crash-1000`: 4.05 attempts
/// per session, 1.1 s at p99, busiest/mean 1.094; now 3.00, 76 ms, 1.002).
#[test]
fn after_a_crash_the_bounded_fan_out_sends_nobody_to_the_dead() {
    let r = &runs(&Scenario::crash_at(300), Strategy::Bounded, 1)[0];
    assert!(r.clients >= 7_500, "{} returning clients measured", r.clients);
    assert!(r.attempts_per_session < 3.01, "attempts per session {}", r.attempts_per_session);
    assert!(r.time_to_session_p99_ms < 100.0, "time to session p99 {} ms", r.time_to_session_p99_ms);
    assert!(r.busiest_over_mean <= 1.01, "busiest/mean {}", r.busiest_over_mean);
}
