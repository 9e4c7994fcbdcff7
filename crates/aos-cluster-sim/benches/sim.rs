//! Simulated sessions per second of wall time: login-storm (1 000 clients
//! within 1 s) at 8, 99 and 1 000 instances, each with the seed's plain
//! ranking (`ax-plain`, the baseline) side by side with herd control
//! (`default`). Throughput is in sessions (elements) per second.

use std::time::Instant;

use aos_cluster_sim::{Scenario, Simulation, Strategy};
use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};

fn login_storm(c: &mut Criterion) {
    #[allow(clippy::disallowed_methods)] // the simulations' epoch
    let epoch = Instant::now();
    let mut group = c.benchmark_group("sim/login-storm");
    group.sample_size(10);
    for instances in [8u32, 99, 1000] {
        let scenario = Scenario::login_storm(instances, 1000);
        group.throughput(Throughput::Elements(u64::from(scenario.client_count())));
        for strategy in [Strategy::AxPlain, Strategy::Default] {
            let mut seed = 0;
            group.bench_function(BenchmarkId::new(strategy.name(), instances), |b| {
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
    login_storm(&mut criterion);
}
criterion_main!(benches);
