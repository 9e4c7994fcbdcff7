//! A cluster of instance servers on 127.0.0.1 sharing one registry: what the
//! `cluster` and `load` examples run, and what the TCP tests start.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aos_cluster::{ClientConfig, Endpoint, InstanceConfig, InstanceId, RetryPolicy};

use super::registry::Registry;
use super::server::{bind_loopback, InstanceServer, Stats};

/// The cluster name every local instance uses.
pub const CLUSTER: &str = "local";

/// Timers short enough for a demo or a test to see staleness quickly.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A member whose heartbeat is older than this is not active.
    pub member_ttl: Duration,
    /// How often each instance publishes its heartbeat.
    pub heartbeat_interval: Duration,
    /// How long a registry snapshot is reused.
    pub snapshot_ttl: Duration,
    /// How long a peer may take to report its workload.
    pub peer_timeout: Duration,
}

impl Timing {
    /// One-second member expiry, heartbeats every 200 ms.
    pub const FAST: Timing = Timing {
        member_ttl: Duration::from_secs(1),
        heartbeat_interval: Duration::from_millis(200),
        snapshot_ttl: Duration::from_millis(200),
        peer_timeout: Duration::from_millis(500),
    };
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty directory unique to this process and call.
    pub fn new(prefix: &str) -> std::io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Instances on loopback ports, one registry, and the temp dir it may live in.
pub struct LocalCluster {
    /// The shared registry.
    pub registry: Arc<Registry>,
    /// The registry's URL.
    pub registry_url: String,
    /// One slot per instance, `None` once crashed or shut down.
    pub servers: Vec<Option<InstanceServer>>,
    /// Every instance's endpoint, in start order (the clients' seed list).
    pub endpoints: Vec<Endpoint>,
    /// The timers the instances run with.
    pub timing: Timing,
    _dir: Option<TempDir>,
}

impl LocalCluster {
    /// Starts one instance per entry of `capacities` (its `max_sessions`),
    /// with ids 1, 2, ... The registry is `registry_url`, or a fresh SQLite
    /// file in a temp dir when `None`.
    pub async fn start(
        capacities: &[u32],
        registry_url: Option<&str>,
        timing: Timing,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let (dir, url) = match registry_url {
            Some(url) => (None, url.to_owned()),
            None => {
                let dir = TempDir::new("aos-cluster")?;
                let url = format!("sqlite://{}", dir.0.join("registry.db").display());
                (Some(dir), url)
            }
        };
        let registry = Arc::new(Registry::connect(&url).await?);
        let mut servers = Vec::new();
        let mut endpoints = Vec::new();
        for (i, &max_sessions) in capacities.iter().enumerate() {
            let mut config = instance_config(InstanceId(i as u32 + 1), max_sessions, timing);
            let listener = bind_loopback(&mut config)?;
            endpoints.push(config.endpoint.clone());
            servers.push(Some(InstanceServer::start(config, listener, registry.clone(), 0xA05 + i as u64)?));
        }
        Ok(LocalCluster { registry, registry_url: url, servers, endpoints, timing, _dir: dir })
    }

    /// A client configuration whose seed list is every instance, in order.
    pub fn client_config(&self) -> ClientConfig {
        client_config(self.endpoints.clone())
    }

    /// The running server `index` (0-based).
    pub fn server(&self, index: usize) -> &InstanceServer {
        self.servers[index].as_ref().expect("instance is running")
    }

    /// Every running instance's counters, `None` for stopped ones.
    pub async fn stats(&self) -> Vec<Option<Stats>> {
        let mut all = Vec::new();
        for server in &self.servers {
            all.push(match server {
                Some(server) => server.stats().await,
                None => None,
            });
        }
        all
    }

    /// Crashes instance `index`: its sockets close, its registry row stays.
    pub async fn crash(&mut self, index: usize) {
        if let Some(server) = self.servers[index].take() {
            server.crash().await;
        }
    }

    /// Waits (polling the registry) until member `id`'s row is older than
    /// `member_ttl`, i.e. no instance may count it as active any more.
    pub async fn wait_until_stale(
        &self,
        id: InstanceId,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        loop {
            let members = self.registry.snapshot(Some(CLUSTER)).await?.members;
            match members.iter().find(|m| m.id == id) {
                Some(m) if m.heartbeat_age <= self.timing.member_ttl => {
                    tokio::time::sleep(self.timing.member_ttl - m.heartbeat_age + Duration::from_millis(10))
                        .await
                }
                _ => return Ok(()),
            }
        }
    }

    /// Waits until every running instance is in the registry.
    pub async fn wait_registered(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        loop {
            let members = self.registry.snapshot(Some(CLUSTER)).await?.members;
            let running = self.servers.iter().flatten();
            if running.clone().all(|s| members.iter().any(|m| m.id == s.id)) {
                return Ok(());
            }
            tokio::time::sleep(self.timing.heartbeat_interval / 4).await;
        }
    }

    /// Stops every instance, removing their rows.
    pub async fn shutdown(mut self) {
        for server in self.servers.iter_mut().filter_map(Option::take) {
            server.shutdown().await;
        }
    }
}

/// The configuration of local instance `id`.
pub fn instance_config(id: InstanceId, max_sessions: u32, timing: Timing) -> InstanceConfig {
    let endpoint = Endpoint::new("127.0.0.1", 1).expect("valid");
    InstanceConfig {
        cluster: Some(CLUSTER.to_owned()),
        member_ttl: timing.member_ttl,
        heartbeat_interval: timing.heartbeat_interval,
        snapshot_ttl: timing.snapshot_ttl,
        peer_timeout: timing.peer_timeout,
        ..InstanceConfig::new(id, endpoint, max_sessions)
    }
}

/// A client configuration for local instances: short timeouts, since a
/// loopback instance answers in microseconds or not at all.
pub fn client_config(seeds: Vec<Endpoint>) -> ClientConfig {
    ClientConfig {
        cluster: Some(CLUSTER.to_owned()),
        handshake_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(500),
            max_rounds: 5,
        },
        ..ClientConfig::with_seeds(seeds)
    }
}
