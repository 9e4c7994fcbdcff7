//! Scenarios as data: a cluster, its network and registry, client arrivals
//! and faults. Every field reads from TOML or JSON (durations as `"250ms"`),
//! so users can describe their own cluster; [`Scenario::builtin`] gives the
//! scenarios of the issue.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::arrivals::{ArrivalGroup, Process};
use super::dist::SessionLength;
use super::net::Network;
use super::registry::RegistryModel;
use crate::config::{duration, ClientConfig, InstanceConfig, DEFAULT_ATTEMPT_DELAY};
use crate::workload::Role;

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
    /// `max_sessions`, `accepting` and `herd_control` are set per instance and
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
    /// "Reject new clients": `SetAccepting(false)`.
    Drain,
    /// `SetAccepting(true)`.
    Undrain,
    /// Changes "Max concurrent sessions".
    SetMaxSessions {
        /// The new value.
        max_sessions: u32,
    },
}

fn default_return_window() -> Duration {
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

/// Every built-in scenario family name, in report order.
pub const BUILTIN: [&str; 7] =
    ["login-storm", "heterogeneous", "rejections", "dead-seeds", "crash", "join", "drain"];

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
        if self.run.sample_every.is_zero() || self.run.window.is_zero() {
            return Err("run.sample_every and run.window must be positive".into());
        }
        Ok(())
    }

    /// The built-in family `name` (several variants for `dead-seeds`), or `None`.
    pub fn builtin(name: &str) -> Option<Vec<Scenario>> {
        Some(match name {
            "login-storm" => vec![Scenario::login_storm(8, 1000)],
            "heterogeneous" => vec![Scenario::heterogeneous()],
            "rejections" => vec![Scenario::rejections()],
            "dead-seeds" => {
                let mut all = Vec::new();
                for delay in [None, Some(DEFAULT_ATTEMPT_DELAY)] {
                    for k in 0..=3 {
                        all.push(Scenario::dead_seeds(k, delay));
                    }
                }
                all
            }
            "crash" => vec![Scenario::crash()],
            "join" => vec![Scenario::join()],
            "drain" => vec![Scenario::drain()],
            _ => return None,
        })
    }

    fn base(
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
            faults: Vec::new(),
            run: RunLimits::default(),
        }
    }

    /// `clients` clients log in within one second to `instances` equal
    /// instances (each sized so the storm fills half the cluster), and every
    /// ranking works from 5 s old figures wherever the protocol allows it:
    /// heartbeats every 5 s, registry snapshots reused for 5 s. Peers still
    /// answer workload queries live, so the herd comes from concurrent
    /// handshakes ranked on the same figures (one shared query round) and
    /// from sessions in flight that no figure shows yet.
    pub fn login_storm(instances: u32, clients: u32) -> Self {
        let max = (2 * clients).div_ceil(instances).max(1);
        let mut s = Scenario::base(
            if instances == 8 && clients == 1000 {
                "login-storm".into()
            } else {
                format!("login-storm-{instances}x{clients}")
            },
            "clients log in within 1 s to equal instances, 5 s stale snapshots",
            vec![InstanceGroup::serving(instances, max)],
            vec![ArrivalGroup {
                start: Duration::from_millis(200),
                process: Process::Burst { count: clients, within: Duration::from_secs(1) },
                session: SessionLength::Forever,
                measured: true,
            }],
        );
        s.instance.heartbeat_interval = Duration::from_secs(5);
        s.instance.snapshot_ttl = Duration::from_secs(5);
        s
    }

    /// Instances of 50, 100, 200 and 400 sessions (two of each), filled to 80 %.
    pub fn heterogeneous() -> Self {
        let sizes = [50, 100, 200, 400];
        let total: u32 = sizes.iter().sum::<u32>() * 2;
        Scenario::base(
            "heterogeneous".into(),
            "max_sessions 50/100/200/400 (two of each) filled to 80 % within 2 s",
            sizes.iter().map(|&m| InstanceGroup::serving(2, m)).collect(),
            vec![ArrivalGroup {
                start: Duration::from_millis(200),
                process: Process::Burst { count: total * 8 / 10, within: Duration::from_secs(2) },
                session: SessionLength::Forever,
                measured: true,
            }],
        )
    }

    /// Eight instances of 100 filled to 90 % within one second.
    pub fn rejections() -> Self {
        Scenario::base(
            "rejections".into(),
            "8 x 100 sessions, 90 % aggregate utilisation reached within 1 s",
            vec![InstanceGroup::serving(8, 100)],
            vec![ArrivalGroup {
                start: Duration::from_millis(200),
                process: Process::Burst { count: 720, within: Duration::from_secs(1) },
                session: SessionLength::Forever,
                measured: true,
            }],
        )
    }

    /// The first `k` seeds are blackholed hosts, then three live seeds; the
    /// top-ranked instance is dead to clients (it refuses connections but
    /// still answers its peers, so it ranks first: it looks empty).
    pub fn dead_seeds(k: u32, attempt_delay: Option<Duration>) -> Self {
        let delay = match attempt_delay {
            Some(d) => duration::format(d),
            None => "off".into(),
        };
        let mut s = Scenario::base(
            format!("dead-seeds-k{k}-delay-{delay}"),
            "k blackholed seeds before the live ones; the top-ranked entry refuses clients",
            vec![InstanceGroup::serving(8, 100)],
            vec![ArrivalGroup {
                start: Duration::from_millis(200),
                process: Process::Poisson { count: 200, rate_per_sec: 100.0 },
                session: SessionLength::Forever,
                measured: true,
            }],
        );
        s.seeds = (0..k).map(|_| Seed::Blackhole).chain((0..3).map(Seed::Instance)).collect();
        s.client.attempt_delay = attempt_delay;
        s.faults.push(Fault { at: Duration::ZERO, instance: 7, kind: FaultKind::RefuseClients });
        s
    }

    /// Eight instances hold 200 sessions each; one crashes and its clients
    /// come back within 500 ms.
    pub fn crash() -> Self {
        let mut s = Scenario::base(
            "crash".into(),
            "8 x 250, 200 sessions each; instance 0 crashes at 20 s, its clients return within 500 ms",
            vec![InstanceGroup::serving(8, 250)],
            vec![ArrivalGroup {
                start: Duration::from_millis(200),
                process: Process::Even { count: 1600, within: Duration::from_secs(16) },
                session: SessionLength::Forever,
                measured: false,
            }],
        );
        s.faults.push(Fault {
            at: Duration::from_secs(20),
            instance: 0,
            kind: FaultKind::Crash {
                host_down: false,
                clients_return: true,
                return_within: default_return_window(),
                measure_returns: true,
            },
        });
        s
    }

    /// An empty instance joins a cluster at 70 % while clients keep arriving.
    pub fn join() -> Self {
        let mut instances = vec![InstanceGroup::serving(8, 250)];
        instances.push(InstanceGroup { start_at: Duration::from_secs(15), ..InstanceGroup::serving(1, 250) });
        Scenario::base(
            "join".into(),
            "8 x 250 at 70 %; an empty ninth joins at 15 s; 200 clients arrive at 100/s from 16 s",
            instances,
            vec![
                ArrivalGroup {
                    start: Duration::from_millis(200),
                    process: Process::Even { count: 1400, within: Duration::from_secs(14) },
                    session: SessionLength::Forever,
                    measured: false,
                },
                ArrivalGroup {
                    start: Duration::from_secs(16),
                    process: Process::Poisson { count: 200, rate_per_sec: 100.0 },
                    session: SessionLength::Forever,
                    measured: true,
                },
            ],
        )
    }

    /// One instance of a busy cluster drains while sessions come and go.
    pub fn drain() -> Self {
        let mut s = Scenario::base(
            "drain".into(),
            "8 x 250 with 20-40 s sessions; instance 0 drains at 15 s; 400 more clients from 16 s",
            vec![InstanceGroup::serving(8, 250)],
            vec![
                ArrivalGroup {
                    start: Duration::from_millis(200),
                    process: Process::Even { count: 1200, within: Duration::from_secs(12) },
                    session: SessionLength::Uniform {
                        min: Duration::from_secs(20),
                        max: Duration::from_secs(40),
                    },
                    measured: false,
                },
                ArrivalGroup {
                    start: Duration::from_secs(16),
                    process: Process::Poisson { count: 400, rate_per_sec: 100.0 },
                    session: SessionLength::Forever,
                    measured: true,
                },
            ],
        );
        s.faults.push(Fault { at: Duration::from_secs(15), instance: 0, kind: FaultKind::Drain });
        s
    }

    /// The worst client round trip, for goals such as "3 RTT".
    pub fn client_rtt_max(&self) -> Duration {
        self.network.client_rtt_max()
    }
}
