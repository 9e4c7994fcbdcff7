//! A deterministic discrete-event simulator of a whole `aos-cluster` cluster.
//!
//! It drives the **real** machines, through the core's public API only: one
//! [`Connector`](aos_cluster::client::Connector) per client and one
//! [`Instance`](aos_cluster::instance::Instance) per instance,
//! wired through a simulated network ([`net`]), a simulated registry
//! ([`registry`]) and client arrival processes ([`arrivals`]), under the
//! faults a [`Scenario`] lists. Nothing here re-implements the protocol.
//!
//! # Time, randomness and replay
//!
//! Time is virtual: a `Duration` since an `epoch` the caller passes in (the
//! crate never reads a clock). The event queue ([`queue`]) pops the earliest
//! event, ties in scheduling order, and every machine's timer is scheduled at
//! exactly the instant its `poll_timeout` names, so time jumps straight to the
//! next thing that happens. Every random draw comes from SplitMix64 streams
//! (the core's generator, re-exported as [`rng`]) derived
//! from the run seed and the party's identity (arrivals, network,
//! faults, each instance, each client), so the same scenario, strategy and
//! seed replay the identical event trace, and two strategies run on the same
//! arrivals and session lengths. A run that processes more events than its
//! step bound fails with [`SimError::StepBound`]: a livelock is a bug.
//!
//! # Messages
//!
//! Messages travel as [`Message`](aos_cluster::wire::Message) values, not encoded
//! bytes: the codec is tested on its own, and encoding every simulated
//! message would only cost time against the sessions-per-minute goal.
//!
//! # Strategies
//!
//! [`Strategy`]: `ax-plain` (herd control off), `default` (on, with the
//! core's default fan-out), `full` and `bounded` (on, with every peer or
//! k = 8 peers asked per round), and two client-side baselines, `random` and
//! `p2c`, which reorder the ranked list in the reply before the `Connector`
//! sees it (see [`strategy`]).
//!
//! # Scale
//!
//! The `scale` family ([`SCALE_SIZES`]: `login-storm-N`, `crash-N`, `join-N`
//! at 100, 1 000 and 5 000 instances) and the metrics it needs: peer queries
//! per round and events per session ([`RunMetrics`]).
//!
//! # Staleness in `login-storm`
//!
//! The protocol ranks on live peer answers, so "5 s stale snapshots" is
//! modelled where staleness exists in it: heartbeats every 5 s and registry
//! snapshots reused for 5 s (`snapshot_ttl`), and
//! [`RegistryModel::read_lag`](registry::RegistryModel) for a lagging read.
//! The herd the seed's rule suffers then comes from concurrent handshakes that
//! share one query round and so rank on the same figures, and from sessions
//! in flight that no figure shows yet; herd control counts those as
//! reservations.
//!
//! ```no_run
//! # #[allow(clippy::disallowed_methods)]
//! # let epoch = std::time::Instant::now();
//! use aos_cluster_sim::{Scenario, Simulation, Strategy};
//! let scenario = Scenario::login_storm(8, 1000);
//! let outcome = Simulation::new(&scenario, Strategy::Default, 1, epoch).unwrap().run().unwrap();
//! assert_eq!(outcome.metrics.lost, 0);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod arrivals;
pub mod builtin;
pub mod dist;
pub mod metrics;
pub mod net;
pub mod queue;
#[cfg(feature = "real")]
pub mod real;
pub mod registry;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod strategy;
mod world;

use std::time::{Duration, Instant};

pub use arrivals::Flood;
pub use builtin::{BUILTIN, FLOOD_FACTORS, SCALE_SIZES};
pub use metrics::{ClientOutcome, ClientRecord, RunMetrics, Stat, Summary};
pub use scenario::{Fault, FaultKind, InstanceGroup, RunLimits, Scenario, Seed};
pub use strategy::Strategy;
pub use world::{Outcome, Record, Series, Simulation};

/// Why a run could not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The scenario is inconsistent.
    #[error("scenario: {0}")]
    Scenario(String),
    /// A configuration built from the scenario is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The step bound was reached: the run livelocked.
    #[error("step bound of {steps} events reached at {at:?}: livelock")]
    StepBound {
        /// The bound.
        steps: u64,
        /// Virtual time when it was reached.
        at: Duration,
    },
    /// A machine reported misuse by the simulator (a simulator bug).
    #[error("machine usage error: {0}")]
    Usage(String),
    /// The simulator's own bookkeeping broke (a simulator bug).
    #[error("driver: {0}")]
    Driver(String),
}

/// Runs `scenario` with `strategy` for each seed in `seeds`, calling
/// `progress` after each run, and returns every run's metrics in seed order.
pub fn run_seeds(
    scenario: &Scenario,
    strategy: Strategy,
    seeds: std::ops::Range<u64>,
    epoch: Instant,
    mut progress: impl FnMut(&RunMetrics),
) -> Result<Vec<RunMetrics>, SimError> {
    let mut runs = Vec::with_capacity(seeds.end.saturating_sub(seeds.start) as usize);
    for seed in seeds {
        let outcome = Simulation::new(scenario, strategy, seed, epoch)?.run()?;
        progress(&outcome.metrics);
        runs.push(outcome.metrics);
    }
    Ok(runs)
}
