//! The instances of a real run: in-process servers on loopback, each with
//! its own registry handle and an application that holds every session.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aos_cluster::workload::{InstanceId, Role};
use aos_cluster::{Endpoint, InstanceConfig};
use aos_cluster_tokio::registry::{self, Registry};
use aos_cluster_tokio::{Server, ServerConfig, ServerHandle};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::process::Process;
use super::registry::{Counted, RegistryCalls};
use super::{Figures, RealError, RealOptions};
use crate::scenario::Scenario;

/// When instance `index` starts, from the run's start.
pub(super) fn start_of(scenario: &Scenario, index: u32) -> Duration {
    let mut first = 0;
    for group in &scenario.instances {
        if index < first + group.count {
            return group.start_at;
        }
        first += group.count;
    }
    Duration::ZERO
}

/// One instance of the run.
struct Node {
    endpoint: Endpoint,
    runner: Runner,
}

/// How an instance runs.
enum Runner {
    /// A server in this process.
    InProcess {
        handle: ServerHandle,
        /// Closes every session the application holds (a crash).
        kill: watch::Sender<bool>,
    },
    /// An `aos-instance` process.
    Process(Process),
}

impl Runner {
    async fn figures(&self) -> Option<Figures> {
        match self {
            Runner::InProcess { handle, .. } => handle.stats().await.ok().map(|s| Figures {
                connected: s.workload.connected,
                rounds: s.instance.round.rounds,
                peer_queries: s.instance.round.peer_queries,
                peer_silent: s.instance.round.peer_silent,
            }),
            Runner::Process(p) => p.figures().await,
        }
    }
}

/// Totals of every instance's machine counters, read at the end.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Totals {
    pub(super) rounds: u64,
    pub(super) peer_queries: u64,
    pub(super) peer_silent: u64,
}

pub(super) struct Cluster {
    /// Per instance index: `None` until it starts and after it stopped.
    nodes: tokio::sync::Mutex<Vec<Option<Node>>>,
    /// Per instance index: its endpoint once started.
    endpoints: Mutex<Vec<Option<Endpoint>>>,
    /// `aos-instance` to run each instance as a process of its own.
    binary: Option<std::path::PathBuf>,
    pub(super) configs: Vec<InstanceConfig>,
    url: String,
    calls: Arc<RegistryCalls>,
    /// Instance files and logs (processes), and the default registry.
    dir: tempfile::TempDir,
    /// Totals of the instances already stopped (crashed).
    stopped: Mutex<Totals>,
    /// Per instance: how its clients come back after it crashed.
    pub(super) returns: Mutex<Vec<Option<Return>>>,
    /// Per instance: `max_sessions` and accepting as the admin last set them.
    admin: Mutex<Vec<(u32, bool)>>,
}

/// How the clients of a crashed instance come back.
#[derive(Debug, Clone, Copy)]
pub(super) struct Return {
    /// They come back at uniform times within this.
    pub(super) within: Duration,
    /// Whether their new efforts count in the metrics.
    pub(super) measured: bool,
}

impl Cluster {
    /// Starts every instance that starts at zero (the rest join through
    /// [`Cluster::start_node`]).
    pub(super) async fn start(
        scenario: &Scenario,
        options: &RealOptions,
        calls: Arc<RegistryCalls>,
    ) -> Result<Cluster, RealError> {
        let dir = tempfile::tempdir().map_err(|e| RealError::Start(format!("temp dir: {e}")))?;
        let url = match &options.registry {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", dir.path().join("registry.db").display()),
        };
        let mut configs = Vec::new();
        for group in &scenario.instances {
            for _ in 0..group.count {
                let index = configs.len() as u32;
                let endpoint = Endpoint::new("127.0.0.1", 1).map_err(|e| RealError::Start(e.to_string()))?;
                let mut config = InstanceConfig {
                    id: InstanceId(index),
                    endpoint,
                    cluster: (group.role != Role::Standalone).then(|| scenario.cluster.clone()),
                    role: group.role,
                    max_sessions: group.max_sessions,
                    accepting: group.accepting,
                    herd_control: options.strategy.herd_control(),
                    fan_out: options.strategy.fan_out(),
                    ..scenario.instance.clone()
                };
                config.limits.max_members = config.limits.max_members.max(scenario.instance_count() as usize);
                configs.push(config);
            }
        }
        let cluster = Cluster {
            nodes: tokio::sync::Mutex::new((0..configs.len()).map(|_| None).collect()),
            endpoints: Mutex::new(vec![None; configs.len()]),
            binary: options.processes.clone(),
            returns: Mutex::new(vec![None; configs.len()]),
            admin: Mutex::new(configs.iter().map(|c| (c.max_sessions, c.accepting)).collect()),
            configs,
            url,
            calls,
            dir,
            stopped: Mutex::new(Totals::default()),
        };
        // A fresh cluster: rows of an earlier run on a shared database would
        // be taken for live members until they age out.
        let shared = registry::open(&cluster.url).await.map_err(|e| RealError::Start(e.to_string()))?;
        clear_rows(&*shared, &scenario.cluster).await;
        for index in 0..cluster.configs.len() as u32 {
            if start_of(scenario, index).is_zero() {
                cluster.start_node(index).await?;
            }
        }
        Ok(cluster)
    }

    /// Starts instance `index` (registered when this returns) and its
    /// application.
    pub(super) async fn start_node(&self, index: u32) -> Result<(), RealError> {
        let config = self.configs[index as usize].clone();
        let mut server_config = ServerConfig::new("127.0.0.1:0".parse().expect("loopback"), config);
        server_config.max_connections_per_ip = server_config.max_connections;
        // A scenario's stop closes the held sessions at once (no drain), in a
        // process as in-process.
        server_config.shutdown_grace = std::time::Duration::ZERO;
        let failed = |e: String| RealError::Start(format!("instance {index}: {e}"));
        let node = match &self.binary {
            Some(binary) => {
                let (process, endpoint) = Process::start(binary, self.dir.path(), &self.url, server_config)
                    .await
                    .map_err(failed)?;
                Node { endpoint, runner: Runner::Process(process) }
            }
            None => {
                let inner = registry::open(&self.url).await.map_err(|e| failed(e.to_string()))?;
                let counted: Arc<dyn Registry> = Arc::new(Counted { inner, calls: self.calls.clone() });
                let server = Server::bind(server_config, counted).await.map_err(|e| failed(e.to_string()))?;
                let (kill, killed) = watch::channel(false);
                let endpoint = server.endpoint().clone();
                let handle = server.handle();
                serve_and_hold(server, killed);
                Node { endpoint, runner: Runner::InProcess { handle, kill } }
            }
        };
        self.endpoints.lock().unwrap_or_else(PoisonError::into_inner)[index as usize] =
            Some(node.endpoint.clone());
        self.nodes.lock().await[index as usize] = Some(node);
        Ok(())
    }

    /// Whether the instances run as processes (the registry is then not counted).
    pub(super) fn processes(&self) -> bool {
        self.binary.is_some()
    }

    pub(super) fn endpoint(&self, index: u32) -> Option<Endpoint> {
        self.endpoints.lock().unwrap_or_else(PoisonError::into_inner).get(index as usize)?.clone()
    }

    /// The instance that listens at `endpoint`.
    pub(super) fn index_of(&self, endpoint: &Endpoint) -> Option<u32> {
        let endpoints = self.endpoints.lock().unwrap_or_else(PoisonError::into_inner);
        endpoints.iter().position(|e| e.as_ref().is_some_and(|e| e.same_target(endpoint))).map(|i| i as u32)
    }

    /// The figures of instance `index`, if it runs.
    pub(super) async fn figures(&self, index: u32) -> Option<Figures> {
        let nodes = self.nodes.lock().await;
        nodes.get(index as usize)?.as_ref()?.runner.figures().await
    }

    /// "Reject new clients" on (`false`) or off.
    pub(super) async fn set_accepting(&self, index: u32, accepting: bool) {
        if let Some(node) = &self.nodes.lock().await[index as usize] {
            match &node.runner {
                Runner::InProcess { handle, .. } => {
                    let _ = handle.set_accepting(accepting).await;
                }
                Runner::Process(p) => p.set_accepting(accepting).await,
            }
        }
        self.admin.lock().unwrap_or_else(PoisonError::into_inner)[index as usize].1 = accepting;
    }

    /// "Max concurrent sessions".
    pub(super) async fn set_max_sessions(&self, index: u32, max_sessions: u32) {
        if let Some(node) = &self.nodes.lock().await[index as usize] {
            match &node.runner {
                Runner::InProcess { handle, .. } => {
                    let _ = handle.set_max_sessions(max_sessions).await;
                }
                Runner::Process(p) => p.set_max_sessions(max_sessions).await,
            }
        }
        self.admin.lock().unwrap_or_else(PoisonError::into_inner)[index as usize].0 = max_sessions;
    }

    /// `max_sessions` and accepting of instance `index` as last set.
    pub(super) fn admin_view(&self, index: u32) -> (u32, bool) {
        self.admin.lock().unwrap_or_else(PoisonError::into_inner)[index as usize]
    }

    /// Crashes instance `index`: it stops as a dead process does (a process
    /// is killed) and every session it held drops.
    pub(super) async fn crash(&self, index: u32) {
        let node = self.nodes.lock().await[index as usize].take();
        let Some(node) = node else { return };
        let figures = node.runner.figures().await.unwrap_or_default();
        match node.runner {
            Runner::InProcess { handle, kill } => {
                kill.send_replace(true);
                handle.crash().await;
            }
            Runner::Process(p) => p.kill().await,
        }
        add(&mut self.stopped.lock().unwrap_or_else(PoisonError::into_inner), figures);
    }

    /// Stops every instance gracefully and sums their counters.
    pub(super) async fn stop(&self) -> Totals {
        let nodes: Vec<Node> = self.nodes.lock().await.iter_mut().filter_map(Option::take).collect();
        let mut totals = *self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        for node in &nodes {
            add(&mut totals, node.runner.figures().await.unwrap_or_default());
        }
        for node in nodes {
            match node.runner {
                Runner::InProcess { handle, kill } => {
                    kill.send_replace(true);
                    handle.shutdown().await;
                }
                Runner::Process(p) => p.stop().await,
            }
        }
        totals
    }
}

fn add(sum: &mut Totals, more: Figures) {
    sum.rounds += more.rounds;
    sum.peer_queries += more.peer_queries;
    sum.peer_silent += more.peer_silent;
}

/// Removes the rows a previous run on the same database left in `cluster`:
/// a purge deletes every row older than its argument, here all of them.
async fn clear_rows(registry: &dyn Registry, cluster: &str) {
    let _ = registry.purge(Some(cluster), Duration::ZERO).await;
}

/// The application: holds each session, reading until the client closes it
/// or the instance crashes.
fn serve_and_hold(mut server: Server, killed: watch::Receiver<bool>) {
    tokio::spawn(async move {
        while let Some(accepted) = server.accept().await {
            let mut stream = accepted.stream;
            let mut killed = killed.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                tokio::select! {
                    _ = async { while let Ok(1..) = stream.read(&mut buf).await {} } => {}
                    _ = killed.wait_for(|k| *k) => {}
                }
            });
        }
    });
}
