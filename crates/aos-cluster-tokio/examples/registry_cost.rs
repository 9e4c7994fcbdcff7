//! What a cluster of M members costs its registry: M in-process members, each
//! with its own registry handle (its own connection, as M processes would
//! have), calling the registry as the server does, against a real engine.
//!
//! Each member heartbeats every `heartbeat_interval` (5 s) and purges once per
//! `member_ttl` (30 s): that is an idle instance, its figures steady. While
//! balancing, every member (or the `--balancers` first: the seeds clients
//! handshake with) also reads a snapshot once per `snapshot_ttl` (1 s). In a
//! login storm they balance and every member's live figures grow by a
//! session at every heartbeat (sessions arrive everywhere at once; 200
//! logins a second at 1 000 members), which its heartbeats publish as the
//! server's writer does: in steps while they move ([`FigureSteps`]). The
//! same storm with every change written runs just before it, as its baseline.
//! Every member heartbeats once before the first phase, so what is measured
//! is the steady state (etcd opens a member's keep-alive stream at its first
//! renewal).
//! The figures: registry requests per member per second, and the engine's CPU
//! (the processes named `postgres` and `pgbouncer`, or `etcd`, read from
//! `/proc`; SQLite runs inside this process, whose CPU is shown beside).
//!
//! ```text
//! cargo run --release -p aos-cluster-tokio --features postgres --example registry_cost -- \
//!     --registry postgres://postgres@127.0.0.1:6432/aos_test --members 10,100,1000
//! ```
//! Past PostgreSQL's `max_connections` (100 by default), name a PgBouncer.

#![allow(clippy::disallowed_methods)] // an example owns its clock

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_cluster::registry::Heartbeat;
use aos_cluster::{Endpoint, InstanceId, Role, Workload};
use aos_cluster_tokio::registry::{self, FigureSteps, Incarnation, MemberTiming, Registry};
use clap::Parser;

const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
const MEMBER_TTL: Duration = Duration::from_secs(30);
const SNAPSHOT_TTL: Duration = Duration::from_secs(1);
const TIMING: MemberTiming = MemberTiming { member_ttl: MEMBER_TTL, heartbeat_interval: HEARTBEAT_INTERVAL };

/// What the members do during one phase of the measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Heartbeats and purges, figures steady.
    Idle,
    /// Also a snapshot per second each, figures steady.
    Balancing,
    /// Also a snapshot per second each, figures that grow at every
    /// heartbeat, and every change written: the baseline of the next.
    LoginStormEveryChange,
    /// The same storm, published as the server's writer does.
    LoginStorm,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Balancing => "balancing",
            Phase::LoginStormEveryChange => "login storm, every change written (baseline)",
            Phase::LoginStorm => "login storm",
        }
    }

    fn figures(self) -> Figures {
        match self {
            Phase::Idle | Phase::Balancing => Figures::Steady,
            Phase::LoginStormEveryChange => Figures::GrowEveryChangeWritten,
            Phase::LoginStorm => Figures::GrowInSteps,
        }
    }
}

/// How a member's figures move, and what its heartbeats publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Figures {
    Steady,
    /// One more session at every heartbeat, every change written.
    GrowEveryChangeWritten,
    /// One more session at every heartbeat, published in steps ([`FigureSteps`]).
    GrowInSteps,
}

/// What one member does in a phase.
#[derive(Debug, Clone, Copy)]
struct Duty {
    /// It balances: a snapshot per `snapshot_ttl`.
    reads_snapshots: bool,
    figures: Figures,
}

/// Registry cost at M members.
#[derive(Parser)]
struct Args {
    /// The registry URL (sqlite://, postgres://, etcd://).
    #[arg(long)]
    registry: String,
    /// Cluster sizes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    members: Vec<u32>,
    /// Seconds per phase (idle, balancing, the two login storms). A storm
    /// publishes a step every sixth beat: 30 s covers one.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// How many members balance (read snapshots) while balancing and in the
    /// login storm: the instances clients handshake with. Clients walk their
    /// seed list in order and handshake with the first that answers, so
    /// these are the seeds the clients are configured with first. Every
    /// member when not given: the worst case.
    #[arg(long)]
    balancers: Option<u32>,
}

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    failed: AtomicU64,
}

/// CPU seconds used so far by the processes whose name is one of `names`
/// (all of this machine's), or by this process when `names` is empty. Each
/// process counts with its children that have ended: a PostgreSQL backend
/// that exits during a phase (PgBouncer closing an idle server connection)
/// would otherwise take its whole life's CPU out of the sum.
fn cpu_seconds(names: &[&str]) -> f64 {
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let read = |pid: &str| -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after_name = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // utime, stime, cutime, cstime.
        let ticks = fields.get(11..15)?.iter().map(|f| f.parse::<f64>().ok()).sum::<Option<f64>>()?;
        Some(ticks / ticks_per_second)
    };
    if names.is_empty() {
        return read("self").unwrap_or(0.0);
    }
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    dir.filter_map(Result::ok)
        .filter_map(|entry| {
            let pid = entry.file_name().into_string().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            names.contains(&comm.trim()).then(|| read(&pid)).flatten()
        })
        .sum()
}

fn engine_processes(url: &str) -> &'static [&'static str] {
    if url.starts_with("postgres") {
        &["postgres", "pgbouncer"]
    } else if url.starts_with("etcd") {
        &["etcd"]
    } else {
        &[]
    }
}

/// One member: heartbeats, purges, and (while it balances) snapshots on the
/// server's schedule, each starting at its own offset so the load is spread.
async fn member(
    registry: Arc<dyn Registry>,
    mut heartbeat: Heartbeat,
    incarnation: Incarnation,
    duty: Duty,
    until: tokio::time::Instant,
    offset: f64,
    tally: Arc<Tally>,
) {
    let cluster = heartbeat.cluster.clone();
    let start = tokio::time::Instant::now();
    let at = |period: Duration| start + period.mul_f64(offset);
    let (mut next_heartbeat, mut next_purge, mut next_snapshot) =
        (at(HEARTBEAT_INTERVAL), at(MEMBER_TTL), at(SNAPSHOT_TTL));
    // What this member's row shows, published as the server's writer does.
    let mut steps = FigureSteps::new(heartbeat.workload);
    let mut live = heartbeat.workload;
    loop {
        let next = if duty.reads_snapshots {
            next_heartbeat.min(next_purge).min(next_snapshot)
        } else {
            next_heartbeat.min(next_purge)
        };
        if next >= until {
            return;
        }
        tokio::time::sleep_until(next).await;
        let ok = if next == next_heartbeat {
            next_heartbeat += HEARTBEAT_INTERVAL;
            if duty.figures != Figures::Steady {
                let Workload { connected, max_sessions } = live;
                live = Workload::new((connected + 1) % max_sessions, max_sessions);
            }
            let publishes = duty.figures == Figures::GrowEveryChangeWritten || steps.publishes(live);
            steps.beat(live, publishes);
            heartbeat.workload = steps.published();
            registry.heartbeat(&heartbeat, incarnation).await.is_ok()
        } else if next == next_purge {
            next_purge += MEMBER_TTL;
            registry.purge(cluster.as_deref(), MEMBER_TTL * 10).await.is_ok()
        } else {
            next_snapshot += SNAPSHOT_TTL;
            registry.snapshot(cluster.as_deref(), TIMING).await.is_ok()
        };
        tally.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            tally.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let engine = engine_processes(&args.registry);
    println!("registry: {}", registry::redact_password(&args.registry));
    if let Some(balancers) = args.balancers {
        println!("balancing: the first {balancers} members");
    }
    println!(
        "engine CPU: {}",
        if engine.is_empty() { "in this process (SQLite)".to_owned() } else { engine.join(" + ") }
    );
    println!("| members | phase | requests/member/s | failed | engine CPU (% of one core) | this process CPU (%) |");
    println!("| ---: | --- | ---: | ---: | ---: | ---: |");
    for &m in &args.members {
        let cluster = format!("cost-{}-{m}", std::process::id());
        let mut members = Vec::new();
        for i in 0..m {
            let registry = registry::open(&args.registry).await?;
            // Ids of this run only: an interrupted run leaves live-looking rows behind.
            let id = InstanceId(1_000_000 + (std::process::id() % 2_000) * 1_000_000 + i);
            let heartbeat = Heartbeat {
                id,
                endpoint: Endpoint::from_str(&format!("AOS{i}@10.0.{}.{}:2712", i / 250, i % 250))?,
                cluster: Some(cluster.clone()),
                role: Role::Serving,
                accepting: true,
                workload: Workload::new(i % 50, 100),
            };
            let incarnation = Incarnation::random();
            registry.register(&heartbeat, incarnation, MEMBER_TTL).await?;
            members.push((registry, heartbeat, incarnation));
        }
        let balances = |i: usize| args.balancers.is_none_or(|balancers| i < balancers as usize);
        for (registry, heartbeat, incarnation) in &members {
            registry.heartbeat(heartbeat, *incarnation).await?;
        }
        for phase in [Phase::Idle, Phase::Balancing, Phase::LoginStormEveryChange, Phase::LoginStorm] {
            if phase != Phase::Idle {
                // Every balancer's replica is filled before the phase: an
                // etcd replica that no snapshot used for `member_ttl` (the
                // idle phase) has stopped following, and a thousand
                // restarting at once is a start-up, not the steady state.
                for (_, (registry, ..)) in members.iter().enumerate().filter(|&(i, _)| balances(i)) {
                    registry.snapshot(Some(&cluster), TIMING).await?;
                }
            }
            let tally = Arc::new(Tally::default());
            let span = Duration::from_secs(args.seconds);
            let (engine_before, own_before, started) =
                (cpu_seconds(engine), cpu_seconds(&[]), Instant::now());
            let until = tokio::time::Instant::now() + span;
            let mut tasks = tokio::task::JoinSet::new();
            for (i, (registry, heartbeat, incarnation)) in members.iter().enumerate() {
                let offset = i as f64 / f64::from(m);
                tasks.spawn(member(
                    Arc::clone(registry),
                    heartbeat.clone(),
                    *incarnation,
                    Duty { reads_snapshots: phase != Phase::Idle && balances(i), figures: phase.figures() },
                    until,
                    offset,
                    Arc::clone(&tally),
                ));
            }
            while tasks.join_next().await.is_some() {}
            let wall = started.elapsed().as_secs_f64();
            let engine_cpu = (cpu_seconds(engine) - engine_before) / wall * 100.0;
            let own_cpu = (cpu_seconds(&[]) - own_before) / wall * 100.0;
            let requests = tally.requests.load(Ordering::Relaxed) as f64;
            println!(
                "| {m} | {} | {:.3} | {} | {} | {own_cpu:.1} |",
                phase.name(),
                requests / f64::from(m) / wall,
                tally.failed.load(Ordering::Relaxed),
                if engine.is_empty() { "-".to_owned() } else { format!("{engine_cpu:.1}") },
            );
        }
        for (registry, heartbeat, incarnation) in &members {
            let _ = registry.remove(heartbeat.id, *incarnation).await;
        }
    }
    Ok(())
}
