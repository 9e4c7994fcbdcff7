//! The simulator against the truth: each scenario run by the simulator and
//! by real instances over real TCP on loopback (in-process servers, each
//! with its own handle on a SQLite registry), compared on the simulator's
//! own columns. They must agree (busiest/mean within 0.05, attempts per
//! session within 10 %), and the real cluster must meet the balance goal.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use aos_cluster_sim::real::{self, RealOptions};
use aos_cluster_sim::{RunMetrics, Scenario, Simulation, Strategy};

fn scenario(name: &str) -> Scenario {
    Scenario::builtin(name).and_then(|mut all| all.pop()).expect("a built-in scenario")
}

fn simulated(scenario: &Scenario) -> RunMetrics {
    #[allow(clippy::disallowed_methods)]
    let epoch = Instant::now();
    Simulation::new(scenario, Strategy::Default, 0, epoch).and_then(|s| s.run()).expect("simulates").metrics
}

/// One real cluster at a time: they share two cores, and a cluster starved
/// by another's burst would measure the machine, not the protocol.
fn alone() -> MutexGuard<'static, ()> {
    static MACHINE: Mutex<()> = Mutex::new(());
    MACHINE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn measured(scenario: &Scenario) -> RunMetrics {
    let _alone = alone();
    real::run(scenario, &RealOptions::default()).expect("a real cluster runs").metrics
}

/// Both sides, every client connected, and in agreement.
fn agree(name: &str) -> (RunMetrics, RunMetrics) {
    let scenario = scenario(name);
    let (sim, real) = (simulated(&scenario), measured(&scenario));
    for (side, m) in [("simulated", &sim), ("real", &real)] {
        assert_eq!((m.failed, m.lost), (0, 0), "{name} {side}: every client connects");
        assert_eq!(m.sessions, m.clients, "{name} {side}");
    }
    let (s, r) = (sim.busiest_over_mean, real.busiest_over_mean);
    assert!((s - r).abs() <= 0.05, "{name}: busiest/mean simulated {s:.3}, real {r:.3}");
    let (s, r) = (sim.admitted_busiest_over_mean, real.admitted_busiest_over_mean);
    assert!((s - r).abs() <= 0.05, "{name}: admitted busiest/mean simulated {s:.3}, real {r:.3}");
    let (s, r) = (sim.attempts_per_session, real.attempts_per_session);
    assert!((s - r).abs() <= 0.1 * s, "{name}: attempts per session simulated {s:.2}, real {r:.2}");
    (sim, real)
}

#[test]
fn a_burst_at_8_instances_agrees_and_balances() {
    let (_, real) = agree("burst-8");
    assert!(real.busiest_over_mean <= 1.05, "{}", real.busiest_over_mean);
}

#[test]
fn a_burst_at_30_instances_agrees_and_balances() {
    let (_, real) = agree("burst-30");
    assert!(real.busiest_over_mean <= 1.05, "{}", real.busiest_over_mean);
}

#[test]
fn a_burst_at_99_instances_agrees_and_balances() {
    let (_, real) = agree("burst-99");
    assert!(real.busiest_over_mean <= 1.05, "{}", real.busiest_over_mean);
}

#[test]
fn after_a_handshake_flood_real_clients_split_by_capacity() {
    // 7 s of hostile handshakes (the built-in scenario's 6 000 in 12 s,
    // compressed so the test takes less real time), then (one
    // reservation_ttl and one snapshot later) 30 clients over 50/100/150:
    // 5/10/15, within one session.
    let mut scenario = scenario("flood-aftermath");
    let flood = &mut scenario.floods[0];
    flood.duration = Duration::from_secs(7);
    flood.rate_per_sec = 860.0;
    scenario.arrivals[0].start = flood.duration + Duration::from_secs(6);
    let real = measured(&scenario);
    assert_eq!((real.failed, real.lost, real.sessions), (0, 0, 30));
    assert!(real.hostile_handshakes > 5_000, "the flood ran: {}", real.hostile_handshakes);
    assert!(real.busiest_over_mean <= 1.2, "busiest/mean {:.3}", real.busiest_over_mean);
    let sim = simulated(&scenario);
    assert!(sim.busiest_over_mean <= 1.2, "simulated busiest/mean {:.3}", sim.busiest_over_mean);
}
