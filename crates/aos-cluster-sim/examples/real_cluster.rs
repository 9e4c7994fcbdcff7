//! Runs a scenario on a real cluster on loopback and in the simulator, side
//! by side, and prints the simulator's columns for both.
//!
//! ```text
//! cargo run --release -p aos-cluster-sim --features real --example real_cluster -- \
//!     SCENARIO... [--rng-seed N] [--registry URL] [--strategy S] [--real-only]
//! ```
//!
//! `SCENARIO` is any built-in name the simulator takes (`burst-99`,
//! `waves-30`, `crash-99`, `join-30`, `drain`, `flood-aftermath`, ...) or a
//! scenario file (TOML or JSON). Each real instance is an in-process server
//! with its own registry handle (`--registry`: `sqlite:///path.db`,
//! `postgres://...` or, built with `--features real-etcd`, `etcd://HOST:PORT/PREFIX`;
//! default a SQLite file in a temporary directory).

use std::path::Path;
use std::process::ExitCode;

use aos_cluster_sim::real::{self, RealOptions, RealReport};
use aos_cluster_sim::{RunMetrics, Scenario, Simulation, Strategy};

/// Runs scenarios on a real loopback cluster and in the simulator, side by side.
#[derive(Debug, clap::Parser)]
#[command(name = "real_cluster")]
struct Args {
    /// Built-in scenarios (burst-N, waves-N, crash-N, join-N, login-storm-N, drain,
    /// flood-aftermath, ...) or scenario files (TOML or JSON).
    #[arg(required = true)]
    scenarios: Vec<String>,
    /// Seeds arrival times and every random choice, on both sides.
    #[arg(long, default_value_t = 0)]
    rng_seed: u64,
    /// The registry every real instance opens (default: SQLite in a temporary directory).
    #[arg(long)]
    registry: Option<String>,
    /// The balancing strategy (default, full, bounded, ax-plain).
    #[arg(long, default_value = "default")]
    strategy: Strategy,
    /// Run each instance as an `aos-instance` process (default: in-process servers). The
    /// binary is looked for beside this program's folder (`cargo build --release -p
    /// aos-cluster-tokio --bin aos-instance`) unless `--aos-instance` names it.
    #[arg(long)]
    processes: bool,
    /// The `aos-instance` binary for `--processes`.
    #[arg(long)]
    aos_instance: Option<std::path::PathBuf>,
    /// Also print each instance's measured admissions.
    #[arg(long)]
    per_instance: bool,
    /// Run the real cluster only.
    #[arg(long, conflicts_with = "sim_only")]
    real_only: bool,
    /// Run the simulator only.
    #[arg(long)]
    sim_only: bool,
}

fn load(name: &str) -> Result<Vec<Scenario>, String> {
    if let Some(found) = Scenario::builtin(name) {
        return Ok(found);
    }
    let path = Path::new(name);
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{name}: not a built-in scenario, and {e}"))?;
    let scenario: Scenario = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?,
        _ => toml::from_str(&text).map_err(|e| format!("{name}: {e}"))?,
    };
    Ok(vec![scenario])
}

const HEADER: &str = "| scenario | side | sessions/clients | busiest/mean | admitted b/m | spread (pts) | \
                      tts p50 / p99 (ms) | attempts/session | rounds | peer queries/round | \
                      left out late/round | registry calls/s | wall (s) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|";

fn row(name: &str, side: &str, m: &RunMetrics, extra: Option<&RealReport>, wall: f64) -> String {
    let (late, registry) = match extra {
        Some(r) => (
            format!("{:.3}", r.left_out_late_per_round),
            r.registry_calls_per_sec.map_or_else(|| "-".into(), |c| format!("{c:.1}")),
        ),
        None => ("-".into(), "-".into()),
    };
    format!(
        "| {name} | {side} | {}/{} | {:.3} | {:.3} | {:.1} | {:.0} / {:.0} | {:.2} | {} | {:.2} | {late} | {registry} | {wall:.1} |",
        m.sessions,
        m.clients,
        m.busiest_over_mean,
        m.admitted_busiest_over_mean,
        m.spread_points,
        m.time_to_session_p50_ms,
        m.time_to_session_p99_ms,
        m.attempts_per_session,
        m.rounds,
        m.peer_queries_per_round,
    )
}

fn main() -> ExitCode {
    let args: Args = clap::Parser::parse();
    let mut scenarios = Vec::new();
    for name in &args.scenarios {
        match load(name) {
            Ok(found) => scenarios.extend(found),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    }
    println!("{HEADER}");
    let processes = args.processes.then(|| {
        args.aos_instance.clone().unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap_or_default();
            // target/<profile>/examples/real_cluster -> target/<profile>/aos-instance
            exe.parent().and_then(Path::parent).map(|p| p.join("aos-instance")).unwrap_or_default()
        })
    });
    let options = RealOptions {
        registry: args.registry.clone(),
        rng_seed: args.rng_seed,
        strategy: args.strategy,
        processes,
    };
    let mut failed = false;
    for scenario in &scenarios {
        if !args.real_only {
            // The simulator's epoch, and its wall time for the table.
            #[allow(clippy::disallowed_methods)]
            let started = std::time::Instant::now();
            match Simulation::new(scenario, args.strategy, args.rng_seed, started).and_then(|s| s.run()) {
                Ok(outcome) => {
                    if args.per_instance {
                        let mut admitted = vec![0u32; scenario.instance_count() as usize];
                        for c in outcome.clients.iter().filter(|c| c.measured) {
                            if let aos_cluster_sim::ClientOutcome::Connected { instance, .. } = c.outcome {
                                admitted[instance as usize] += 1;
                            }
                        }
                        eprintln!("{} (sim): admissions per instance: {admitted:?}", scenario.name);
                    }
                    println!(
                        "{}",
                        row(&scenario.name, "sim", &outcome.metrics, None, started.elapsed().as_secs_f64())
                    );
                }
                Err(e) => {
                    eprintln!("{}: simulator: {e}", scenario.name);
                    failed = true;
                }
            }
        }
        if args.sim_only {
            continue;
        }
        match real::run(scenario, &options) {
            Ok(report) => {
                let m = &report.metrics;
                println!("{}", row(&scenario.name, "real", m, Some(&report), report.wall.as_secs_f64()));
                if args.per_instance {
                    eprintln!("{}: admissions per instance: {:?}", scenario.name, report.admitted);
                }
                if m.failed + m.lost > 0 {
                    eprintln!("{}: {} failed, {} lost", scenario.name, m.failed, m.lost);
                }
            }
            Err(e) => {
                eprintln!("{}: real cluster: {e}", scenario.name);
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
