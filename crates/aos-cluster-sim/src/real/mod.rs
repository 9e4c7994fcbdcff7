//! The real-cluster harness (feature `real`): a [`Scenario`] played by real
//! instances over real TCP on loopback, on a real registry, with real
//! clients, measured into the simulator's own [`RunMetrics`].
//!
//! Each instance is an in-process [`aos_cluster_tokio::Server`] with its own
//! registry handle (as separate processes have), bound to `127.0.0.1:0`,
//! serving an application that holds each session until the client closes
//! it. Each client is the runtime's async client on its own task. The
//! network is loopback and the registry is the real engine, so the
//! scenario's `network` and `registry` models are not used; faults that
//! only a model can stage (a slow or silent peer, a client-refusing
//! listener, a restart) are refused with [`RealError::Unsupported`].
//!
//! Two things differ from the machines' defaults on purpose:
//! `max_connections_per_ip` is raised to `max_connections` (every client of
//! the harness comes from 127.0.0.1, which real clients do not), and the
//! clients' retry policy is the scenario's.

mod clients;
mod cluster;
mod process;
mod registry;

use std::sync::Arc;
use std::time::Duration;

use aos_cluster::workload::Role;

pub use self::registry::RegistryCalls;
use crate::metrics::{InstanceLoad, RunData, RunMetrics};
use crate::scenario::{FaultKind, Scenario};
use crate::strategy::Strategy;

/// One instance's figures, as its stats show them.
#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    connected: u32,
    rounds: u64,
    peer_queries: u64,
    peer_silent: u64,
}

/// How to run a scenario for real.
#[derive(Debug, Clone)]
pub struct RealOptions {
    /// The registry URL every instance opens (`sqlite://...`,
    /// `postgres://...`); `None`: a SQLite file in a temporary directory.
    pub registry: Option<String>,
    /// Seeds the arrival times, session lengths and the clients' randomness.
    pub rng_seed: u64,
    /// The balancing strategy (only those the machines implement).
    pub strategy: Strategy,
    /// Run each instance as a process of this `aos-instance` binary (with
    /// its own runtime, registry connection and admin endpoint) instead of
    /// in this process. Registry calls are then not counted.
    pub processes: Option<std::path::PathBuf>,
}

impl Default for RealOptions {
    fn default() -> Self {
        RealOptions { registry: None, rng_seed: 0, strategy: Strategy::Default, processes: None }
    }
}

/// Why a real run could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RealError {
    /// The scenario asks for something only the simulator can stage.
    #[error("not possible in a real cluster: {0}")]
    Unsupported(String),
    /// The scenario is inconsistent.
    #[error("scenario: {0}")]
    Scenario(String),
    /// An instance, the registry or the runtime could not start.
    #[error("cannot start: {0}")]
    Start(String),
}

/// What a real run measured.
#[derive(Debug, Clone)]
pub struct RealReport {
    /// The simulator's columns, computed by the simulator's own code.
    pub metrics: RunMetrics,
    /// Measured admissions per instance index over the run.
    pub admitted: Vec<u64>,
    /// Query rounds, over every instance.
    pub rounds: u64,
    /// Peer queries, over every instance.
    pub peer_queries: u64,
    /// Members left out of a round because they did not answer within
    /// `peer_timeout`, per round.
    pub left_out_late_per_round: f64,
    /// Registry calls per second over the run (every instance together);
    /// `None` when the instances ran as processes.
    pub registry_calls_per_sec: Option<f64>,
    /// Registry calls by kind.
    pub registry_calls: Arc<RegistryCalls>,
    /// The run's wall time.
    pub wall: Duration,
}

/// Runs `scenario` on a real cluster on loopback (its own tokio runtime).
pub fn run(scenario: &Scenario, options: &RealOptions) -> Result<RealReport, RealError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| RealError::Start(format!("tokio runtime: {e}")))?;
    runtime.block_on(run_async(scenario, options))
}

/// [`run`] on the caller's tokio runtime (multi-threaded).
pub async fn run_async(scenario: &Scenario, options: &RealOptions) -> Result<RealReport, RealError> {
    scenario.validate().map_err(RealError::Scenario)?;
    check_supported(scenario, options.strategy)?;
    check_descriptors(scenario, options)?;
    let started = tokio::time::Instant::now();
    let calls = Arc::new(RegistryCalls::default());
    let cluster = Arc::new(cluster::Cluster::start(scenario, options, calls.clone()).await?);
    let outcome = clients::drive(scenario, options, &cluster).await?;
    let stats = cluster.stop().await;
    let processes = cluster.processes();
    let wall = started.elapsed();

    let loads: Vec<InstanceLoad> = outcome.loads;
    let metrics = RunMetrics::compute(&RunData {
        rng_seed: options.rng_seed,
        clients: &outcome.records,
        admissions: &outcome.admissions,
        loads: &loads,
        end_of_arrivals: outcome.end_of_arrivals,
        window: scenario.run.window,
        over_capacity: outcome.over_capacity,
        admitted_while_draining: 0,
        steps: 0,
        hostile_handshakes: outcome.hostile_handshakes,
        hostile_answered: outcome.hostile_answered,
        peer_queries: stats.peer_queries,
        rounds: stats.rounds,
        max_peer_queries_in_a_round: 0,
    });
    let mut admitted = vec![0u64; loads.len()];
    for a in outcome.admissions.iter().filter(|a| a.measured) {
        if let Some(n) = admitted.get_mut(a.instance as usize) {
            *n += 1;
        }
    }
    Ok(RealReport {
        metrics,
        admitted,
        rounds: stats.rounds,
        peer_queries: stats.peer_queries,
        left_out_late_per_round: if stats.rounds == 0 {
            0.0
        } else {
            stats.peer_silent as f64 / stats.rounds as f64
        },
        registry_calls_per_sec: (!processes).then(|| calls.total() as f64 / wall.as_secs_f64().max(1e-9)),
        registry_calls: calls,
        wall,
    })
}

/// Refuses a run that would run out of file descriptors halfway (a client
/// and, in-process, its server side each hold one; instances hold listeners,
/// peer links and registry files), rather than report the failures as the
/// protocol's. Linux only (`/proc/self/limits`); elsewhere nothing is checked.
fn check_descriptors(scenario: &Scenario, options: &RealOptions) -> Result<(), RealError> {
    let Some(limit) = std::fs::read_to_string("/proc/self/limits").ok().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("Max open files"))?;
        line.split_whitespace().nth(3)?.parse::<u64>().ok()
    }) else {
        return Ok(());
    };
    let clients = u64::from(scenario.client_count());
    let instances = u64::from(scenario.instance_count());
    // Processes: each client's socket and each instance's output pipe here;
    // in-process: both ends of every session, and each instance's listener,
    // registry files and peer links.
    let needed = match options.processes {
        Some(_) => clients + instances + 32,
        None => 2 * clients + 24 * instances + 256,
    };
    if needed > limit {
        return Err(RealError::Start(format!(
            "{} needs about {needed} file descriptors here and the limit is {limit}: raise it \
             (`ulimit -n`){}",
            scenario.name,
            if options.processes.is_some() { "" } else { ", or run the instances as processes" }
        )));
    }
    Ok(())
}

fn check_supported(scenario: &Scenario, strategy: Strategy) -> Result<(), RealError> {
    if strategy.transforms() {
        return Err(RealError::Unsupported(format!(
            "strategy {} reorders lists in the simulated client; real clients use the lists as sent",
            strategy.name()
        )));
    }
    for fault in &scenario.faults {
        match fault.kind {
            FaultKind::Crash { host_down: false, .. }
            | FaultKind::Drain
            | FaultKind::Undrain
            | FaultKind::SetMaxSessions { .. } => {}
            ref other => {
                return Err(RealError::Unsupported(format!(
                    "fault {other:?} at instance {} needs a modelled network or process",
                    fault.instance
                )))
            }
        }
    }
    for (i, seed) in scenario.seeds.iter().enumerate() {
        if let crate::scenario::Seed::Instance(n) = seed {
            if cluster::start_of(scenario, *n) > Duration::ZERO {
                return Err(RealError::Unsupported(format!(
                    "seed {i} names instance {n}, which starts later"
                )));
            }
        }
    }
    if scenario.instances.iter().any(|g| g.role == Role::Standalone) {
        return Err(RealError::Unsupported("standalone instances form no cluster".into()));
    }
    Ok(())
}
