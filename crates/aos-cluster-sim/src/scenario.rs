//! Scenarios as data: a cluster, its network and registry, client arrivals
//! and faults. Every field reads from TOML or JSON (durations as `"250ms"`),
//! so users can describe their own cluster; [`Scenario::builtin`] gives the
//! built-in ones (see [`builtin`](crate::builtin)).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::arrivals::{ArrivalGroup, Flood};
use crate::net::Network;
use crate::registry::RegistryModel;
use aos_cluster::config::{duration, ClientConfig, InstanceConfig};
use aos_cluster::workload::Role;

/// A whole simulated cluster and what happens to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Shown in reports and file names.
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// The cluster name every instance and client uses.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// The instances, in index order (group by group).
    pub instances: Vec<InstanceGroup>,
    /// Every client's seed list, in order. Empty: the first three instances.
    #[serde(default)]
    pub seeds: Vec<Seed>,
    /// The client configuration template (its `seeds` are replaced).
    #[serde(default)]
    pub client: ClientConfig,
    /// The instance configuration template (id, endpoint, cluster, role,
    /// `max_sessions`, `accepting`, `herd_control` and `fan_out` are set per instance and
    /// strategy).
    #[serde(default = "instance_template")]
    pub instance: InstanceConfig,
    /// Latencies, loss and partitions.
    #[serde(default)]
    pub network: Network,
    /// Registry behaviour.
    #[serde(default)]
    pub registry: RegistryModel,
    /// Client arrival groups.
    pub arrivals: Vec<ArrivalGroup>,
    /// Hostile clients that handshake and never ask for a session.
    #[serde(default)]
    pub floods: Vec<Flood>,
    /// Instance faults and admin actions, in any order.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Stop conditions and sampling.
    #[serde(default)]
    pub run: RunLimits,
}

fn default_cluster() -> String {
    "sim".to_owned()
}

fn instance_template() -> InstanceConfig {
    InstanceConfig { max_sessions: 1, ..InstanceConfig::default() }
}

/// `count` instances alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceGroup {
    /// How many.
    #[serde(default = "one")]
    pub count: u32,
    /// "Max concurrent sessions" of each.
    pub max_sessions: u32,
    /// Their role.
    #[serde(default = "serving")]
    pub role: Role,
    /// When they start (later than zero: they join a running cluster).
    #[serde(with = "duration", default)]
    pub start_at: Duration,
    /// Whether they start accepting sessions.
    #[serde(default = "yes")]
    pub accepting: bool,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn serving() -> Role {
    Role::Serving
}

impl InstanceGroup {
    /// `count` serving instances of `max_sessions`, running from the start.
    pub fn serving(count: u32, max_sessions: u32) -> Self {
        InstanceGroup { count, max_sessions, role: Role::Serving, start_at: Duration::ZERO, accepting: true }
    }
}

/// One entry of the clients' seed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seed {
    /// The instance with this index.
    Instance(u32),
    /// A dead host that never answers (the handshake times out).
    Blackhole,
    /// A host that refuses connections (the handshake fails after one round trip).
    Refused,
}

/// Something that happens to an instance at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// When.
    #[serde(with = "duration")]
    pub at: Duration,
    /// The instance's index.
    pub instance: u32,
    /// What.
    pub kind: FaultKind,
}

/// What happens to an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultKind {
    /// The process dies: its sessions are lost, its state is gone, its row
    /// ages out of the registry.
    Crash {
        /// The host is gone too: connections are blackholed rather than refused.
        #[serde(default)]
        host_down: bool,
        /// Whether its clients come back (reconnect from phase 1).
        #[serde(default = "yes")]
        clients_return: bool,
        /// They notice and come back at uniform times within this window.
        #[serde(with = "duration", default = "default_return_window")]
        return_within: Duration,
        /// Whether the returning clients count in the metrics.
        #[serde(default = "yes")]
        measure_returns: bool,
    },
    /// A crashed instance starts again, empty, with a fresh machine.
    Restart,
    /// Its client listener refuses connections while it still answers peers
    /// and heartbeats: a dead entry that still ranks (it looks empty).
    RefuseClients,
    /// Client connections are accepted again.
    AcceptClients,
    /// Workload answers to peers come this much later.
    SlowPeerAnswers {
        /// The added delay.
        #[serde(with = "duration")]
        extra: Duration,
    },
    /// Workload queries from peers go unanswered.
    SilentPeerAnswers,
    /// Workload answers are normal again.
    NormalPeerAnswers,
    /// "Reject new clients": `Instance::set_accepting(false)`.
    Drain,
    /// `Instance::set_accepting(true)`.
    Undrain,
    /// Changes "Max concurrent sessions".
    SetMaxSessions {
        /// The new value.
        max_sessions: u32,
    },
}

pub(crate) fn default_return_window() -> Duration {
    Duration::from_millis(500)
}

/// Stop conditions and sampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunLimits {
    /// Hard stop; a client still connecting then counts as lost.
    #[serde(with = "duration")]
    pub horizon: Duration,
    /// How long the run goes on once every client has settled and no arrival
    /// or fault is left (so charts show the steady state).
    #[serde(with = "duration")]
    pub settle: Duration,
    /// Step bound (events processed); 0 picks one from the scenario's size.
    /// Reaching it fails the run: a livelock is a bug.
    pub max_steps: u64,
    /// Sessions per instance are sampled this often for the time series.
    #[serde(with = "duration")]
    pub sample_every: Duration,
    /// The window for arrivals per instance relative to their fair share.
    #[serde(with = "duration")]
    pub window: Duration,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            horizon: Duration::from_secs(600),
            settle: Duration::from_millis(500),
            max_steps: 0,
            sample_every: Duration::from_millis(100),
            window: Duration::from_millis(100),
        }
    }
}

impl Scenario {
    /// The instances' count.
    pub fn instance_count(&self) -> u32 {
        self.instances.iter().map(|g| g.count).sum()
    }

    /// The clients that arrive (returning clients not counted).
    pub fn client_count(&self) -> u32 {
        self.arrivals.iter().map(|a| a.process.count()).sum()
    }

    /// Checks what serde cannot: indices in range, distributions ordered.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.instance_count();
        if n == 0 {
            return Err("a scenario needs at least one instance".into());
        }
        if self.instances.iter().any(|g| g.max_sessions == 0) {
            return Err("max_sessions must be at least 1".into());
        }
        for seed in &self.seeds {
            if let Seed::Instance(i) = seed {
                if *i >= n {
                    return Err(format!("seed names instance {i}, but there are {n}"));
                }
            }
        }
        for fault in &self.faults {
            if fault.instance >= n {
                return Err(format!("fault names instance {}, but there are {n}", fault.instance));
            }
        }
        for p in &self.network.partitions {
            if let Some(i) = p.instances.iter().find(|&&i| i >= n) {
                return Err(format!("partition names instance {i}, but there are {n}"));
            }
        }
        self.network.validate()?;
        for group in &self.arrivals {
            group.process.validate()?;
        }
        for flood in &self.floods {
            flood.validate()?;
            if let Some(i) = flood.targets.iter().find(|&&i| i >= n) {
                return Err(format!("flood names instance {i}, but there are {n}"));
            }
        }
        if self.run.sample_every.is_zero() || self.run.window.is_zero() {
            return Err("run.sample_every and run.window must be positive".into());
        }
        Ok(())
    }

    /// The worst client round trip, for goals such as "3 RTT".
    pub fn client_rtt_max(&self) -> Duration {
        self.network.client_rtt_max()
    }

    pub(crate) fn base(
        name: String,
        description: &str,
        instances: Vec<InstanceGroup>,
        arrivals: Vec<ArrivalGroup>,
    ) -> Self {
        Scenario {
            name,
            description: description.to_owned(),
            cluster: default_cluster(),
            instances,
            seeds: Vec::new(),
            client: ClientConfig::default(),
            instance: instance_template(),
            network: Network::default(),
            registry: RegistryModel::default(),
            arrivals,
            floods: Vec::new(),
            faults: Vec::new(),
            run: RunLimits::default(),
        }
    }
}
