//! Runs a simulated cluster scenario with every strategy and compares them.
//!
//! ```text
//! cargo run --release -p aos-cluster-sim --example simulate -- SCENARIO [--runs N] [--strategy S|all] [--json]
//! ```
//!
//! `SCENARIO` is a built-in name (`login-storm`, `heterogeneous`, `rejections`,
//! `dead-seeds`, `crash`, `join`, `drain`, `handshake-flood`, or `all`; the
//! `scale` family: `login-storm-N`, `crash-N`, `join-N` for N = 100, 1000,
//! 5000, or `scale` for all nine) or a path to a scenario
//! file in TOML or JSON (see `aos_cluster_sim::Scenario`). It prints a table
//! (p50 / p99 over seeds) or, with `--json`, the summaries as JSON, and writes
//! SVG charts to `target/sim/`: sessions per instance over time (seed 0, one
//! chart per strategy) and a bar chart comparing the strategies.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use aos_cluster_sim::{report, Record, Scenario, Series, Simulation, Strategy, Summary, BUILTIN};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use plotters::prelude::*;

/// Runs simulated cluster scenarios with every strategy and compares them.
#[derive(Debug, clap::Parser)]
#[command(name = "simulate")]
struct Args {
    /// A built-in scenario (login-storm, heterogeneous, rejections, dead-seeds, crash, join,
    /// drain, handshake-flood), `all`, the scale family (`scale`, or one of login-storm-N,
    /// crash-N, join-N for N = 100, 1000, 5000), or a scenario file (TOML or JSON).
    scenario: String,
    /// Runs per strategy, each with its own rng seed (p50 / p99 are over these).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// One strategy (ax-plain, default, full, bounded, random, p2c) or `all`. Full-fan-out
    /// strategies are skipped above 2 000 instances, with the reason printed.
    #[arg(long, default_value = "all", value_parser = parse_strategies)]
    strategy: Strategies,
    /// Print the summaries as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone)]
struct Strategies(Vec<Strategy>);

fn parse_strategies(text: &str) -> Result<Strategies, String> {
    if text == "all" {
        Ok(Strategies(Strategy::ALL.to_vec()))
    } else {
        Ok(Strategies(vec![text.parse()?]))
    }
}

fn load(name: &str) -> Result<Vec<Scenario>, String> {
    if name == "all" {
        return Ok(BUILTIN.iter().flat_map(|b| Scenario::builtin(b).unwrap_or_default()).collect());
    }
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
    scenario.validate().map_err(|e| format!("{name}: {e}"))?;
    Ok(vec![scenario])
}

/// Progress over all runs: a bar redrawn in place on a terminal (indicatif
/// draws nothing when stderr is not one), and a plain line per scenario and
/// strategy otherwise, so `simulate all > out.txt` gets no control characters.
struct Progress {
    bar: ProgressBar,
    terminal: bool,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("[{bar:30}] {pos}/{len} runs {elapsed:>4} {msg}") {
            bar.set_style(style.progress_chars("#> "));
        }
        Progress { bar, terminal: std::io::stderr().is_terminal() }
    }

    fn tick(&self, label: &str) {
        self.bar.set_message(label.to_owned());
        self.bar.inc(1);
    }

    fn done_with(&self, label: &str) {
        if !self.terminal {
            eprintln!("done: {label} ({}/{} runs)", self.bar.position(), self.bar.length().unwrap_or(0));
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    let scenarios = match load(&args.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    #[allow(clippy::disallowed_methods)] // the simulation's epoch: every reported time is relative to it
    let epoch = Instant::now();
    // The workspace's target directory, two levels above this crate.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = manifest.ancestors().nth(2).unwrap_or(manifest).join("target/sim");
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        eprintln!("{}: {e}", out_dir.display());
        return ExitCode::FAILURE;
    }
    let mut skipped = Vec::new();
    let plan: Vec<(&Scenario, Vec<Strategy>)> = scenarios
        .iter()
        .map(|scenario| {
            let run = args.strategy.0.iter().copied().filter(|s| match s.skip_reason(scenario) {
                Some(reason) => {
                    eprintln!("{reason}");
                    skipped.push(reason);
                    false
                }
                None => true,
            });
            (scenario, run.collect())
        })
        .collect();
    let total = plan.iter().map(|(_, s)| s.len() as u64).sum::<u64>() * args.runs;
    let progress = Progress::new(total);
    let mut summaries = Vec::new();
    let mut charts = Vec::new();
    for (scenario, strategies) in &plan {
        let scenario: &Scenario = scenario;
        let mut rows = Vec::new();
        for &strategy in strategies {
            let mut runs = Vec::new();
            for seed in 0..args.runs {
                let record = Record { trace: false, series: seed == 0 };
                let outcome = match Simulation::new(scenario, strategy, seed, epoch)
                    .and_then(|s| s.record(record).run())
                {
                    Ok(o) => o,
                    Err(e) => {
                        progress.finish();
                        eprintln!("{} / {strategy} / seed {seed}: {e}", scenario.name);
                        return ExitCode::FAILURE;
                    }
                };
                if seed == 0 {
                    let file = out_dir.join(format!("{}-{}-sessions.svg", scenario.name, strategy));
                    match sessions_chart(&file, scenario, strategy, &outcome.series) {
                        Ok(()) => charts.push(file),
                        Err(e) => eprintln!("{}: {e}", file.display()),
                    }
                }
                runs.push(outcome.metrics);
                progress.tick(&format!("{} {strategy}", scenario.name));
            }
            progress.done_with(&format!("{} {strategy}", scenario.name));
            rows.push(Summary::of(&scenario.name, strategy.name(), &runs));
        }
        if rows.len() > 1 {
            let file = out_dir.join(format!("{}-strategies.svg", scenario.name));
            match strategies_chart(&file, &scenario.name, &rows) {
                Ok(()) => charts.push(file),
                Err(e) => eprintln!("{}: {e}", file.display()),
            }
        }
        summaries.extend(rows);
    }
    progress.finish();
    if args.json {
        match serde_json::to_string_pretty(&summaries) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("json: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", report::table(&summaries));
        for reason in &skipped {
            println!("{reason}");
        }
        println!("p50 / p99 over {} run(s) per row; charts:", args.runs);
        for chart in &charts {
            println!("  {}", chart.display());
        }
    }
    ExitCode::SUCCESS
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A chart label and how to read its value from a summary.
type Metric = (&'static str, fn(&Summary) -> f64);

/// Sessions per instance over time, one line per instance.
fn sessions_chart(file: &Path, scenario: &Scenario, strategy: Strategy, series: &Series) -> DrawResult {
    let root = SVGBackend::new(file, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let end = series.times.last().map_or(1.0, |t| t.as_secs_f64()).max(0.001);
    let top = series.sessions.iter().flatten().copied().max().unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{}: sessions per instance ({strategy}, seed 0)", scenario.name), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..end, 0u32..top + top / 10 + 1)?;
    chart.configure_mesh().x_desc("time (s)").y_desc("sessions").draw()?;
    let many = series.sessions.len() > 20;
    for (i, line) in series.sessions.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points = series.times.iter().zip(line).map(|(t, &n)| (t.as_secs_f64(), n));
        let drawn = chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
        if !many {
            drawn
                .label(format!("aos{i}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        }
    }
    if !many {
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    }
    root.present()?;
    Ok(())
}

/// One group of bars per metric (p99 over seeds), one bar per strategy,
/// each metric scaled to its largest value so they share an axis.
fn strategies_chart(file: &Path, name: &str, rows: &[Summary]) -> DrawResult {
    let metrics: [Metric; 5] = [
        ("busiest/mean", |s| s.busiest_over_mean.p99),
        ("spread pts", |s| s.spread_points.p99),
        ("full rej/sess", |s| s.full_rejections_per_session.p99),
        ("tts p99", |s| s.time_to_session_p99_ms.p99),
        ("peak/fair", |s| s.arrival_peak_ratio.p99),
    ];
    let root = SVGBackend::new(file, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let groups = metrics.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{name}: strategies compared (p99 over seeds, scaled to the largest)"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..groups, 0.0..1.15)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(metrics.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 && i < metrics.len() {
                metrics[i].0.to_owned()
            } else {
                String::new()
            }
        })
        .y_desc("relative to the worst strategy")
        .draw()?;
    let width = 0.8 / rows.len() as f64;
    for (k, row) in rows.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let bars = metrics.iter().enumerate().map(|(g, (_, get))| {
            let largest = rows.iter().map(get).fold(0.0, f64::max);
            let value = if largest > 0.0 { get(row) / largest } else { 0.0 };
            let x0 = g as f64 + 0.1 + k as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width * 0.9, value)], color.filled())
        });
        chart
            .draw_series(bars)?
            .label(row.strategy.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
