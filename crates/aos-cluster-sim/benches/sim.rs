//! Simulated sessions per second of wall time.
//!
//! - `sim/login-storm`: 1 000 clients within 1 s at 8 and 99 instances, the
//!   seed's plain ranking (`ax-plain`, the baseline) side by side with herd
//!   control (`default`).
//! - `sim/scale`: login storms at 1 000 instances, the full fan-out (`full`,
//!   the baseline: every round asks all 999 peers) side by side with the
//!   bounded one (`bounded`, k = 8), with 1 000 clients (two sessions per
//!   instance) and 10 000 clients (twenty), sized as the `scale` family
//!   (`Scenario::fit_to_size`: lists of 64 entries); and `login-storm-1000`'s
//!   125 000 clients with the bounded fan-out alone (the full one takes about
//!   a minute a run).
//!
//! Throughput is in sessions (elements) per second; per minute is 60 times it.

use std::time::Instant;

use aos_cluster_sim::{Scenario, Simulation, Strategy};
use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};

fn storm(c: &mut Criterion, group: &str, sizes: &[(u32, u32, &[Strategy])], fit: bool) {
    #[allow(clippy::disallowed_methods)] // the simulations' epoch
    let epoch = Instant::now();
    let mut group = c.benchmark_group(group);
    group.sample_size(10);
    for &(instances, clients, strategies) in sizes {
        let mut scenario = Scenario::login_storm(instances, clients);
        if fit {
            scenario.fit_to_size();
        }
        group.throughput(Throughput::Elements(u64::from(scenario.client_count())));
        for &strategy in strategies {
            let mut seed = 0;
            let id = BenchmarkId::new(strategy.name(), format!("{instances}x{clients}"));
            group.bench_function(id, |b| {
                b.iter(|| {
                    seed += 1;
                    let outcome = Simulation::new(&scenario, strategy, seed, epoch).and_then(Simulation::run);
                    let outcome = outcome.expect("the built-in scenario runs");
                    assert_eq!(outcome.metrics.lost, 0);
                    outcome.metrics.sessions
                })
            });
        }
    }
    group.finish();
}

fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    let plain: &[Strategy] = &[Strategy::AxPlain, Strategy::Default];
    let both: &[Strategy] = &[Strategy::Full, Strategy::Bounded];
    storm(&mut criterion, "sim/login-storm", &[(8, 1000, plain), (99, 1000, plain)], false);
    // 125 000 clients is `login-storm-1000`; its full fan-out (about a minute
    // a run) is left out to keep the bench short: baseline at 10 000.
    let scale = [(1000, 1000, both), (1000, 10_000, both), (1000, 125_000, &[Strategy::Bounded][..])];
    storm(&mut criterion, "sim/scale", &scale, true);
}
criterion_main!(benches);
