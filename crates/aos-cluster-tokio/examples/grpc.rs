//! gRPC over balanced sessions: tonic's prebuilt health service on every
//! instance of an in-process cluster (a memory registry, loopback), served
//! with `serve_with_incoming(server.incoming())`, and tonic channels made
//! with `Endpoint::connect_with_connector(BalancedConnector)`.
//!
//! ```sh
//! cargo run -p aos-cluster-tokio --features tonic --example grpc
//! ```
//!
//! It opens 30 channels (capacities 10/20/30: 5/10/15 sessions), checks the
//! health service on each, crashes instance 1 and checks again: the channels
//! that were on it reconnect, through the protocol, to live instances.
//!
//! `tests/grpc.rs` runs this program's parts and checks what it shows.

use std::sync::Arc;
use std::time::Duration;

use aos_cluster_tokio::registry::MemoryRegistry;
use aos_cluster_tokio::tower::BalancedConnector;
use aos_cluster_tokio::{
    Client, ClientConfig, Endpoint, InstanceConfig, InstanceId, RetryPolicy, Server, ServerConfig,
    ServerHandle,
};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// The cluster's name, in every instance's and the client's configuration.
pub const CLUSTER: &str = "grpc-demo";

/// One `Uri` for the whole cluster: the instance is the cluster's choice,
/// this is only the requests' `:authority`.
pub const URI: &str = "http://aos-cluster";

/// Instances on 127.0.0.1, one per capacity (ids from 1), each serving gRPC.
pub struct Cluster {
    /// Each instance's handle, in id order.
    pub handles: Vec<ServerHandle>,
    /// Each instance's endpoint, in id order.
    pub seeds: Vec<Endpoint>,
}

impl Cluster {
    /// Starts one instance per capacity, sharing a memory registry.
    pub async fn start(capacities: &[u32]) -> Result<Cluster, Box<dyn std::error::Error>> {
        let registry = Arc::new(MemoryRegistry::new());
        let (mut handles, mut seeds) = (Vec::new(), Vec::new());
        for (i, &max_sessions) in capacities.iter().enumerate() {
            let instance = InstanceConfig {
                cluster: Some(CLUSTER.into()),
                heartbeat_interval: Duration::from_millis(100),
                snapshot_ttl: Duration::from_millis(100),
                ..InstanceConfig::new(InstanceId(i as u32 + 1), Endpoint::new("127.0.0.1", 1)?, max_sessions)
            };
            let server =
                Server::bind(ServerConfig::new("127.0.0.1:0".parse()?, instance), registry.clone()).await?;
            handles.push(server.handle());
            seeds.push(server.endpoint().clone());
            // tonic serves the admitted sessions; the stream ends when the server stops.
            // (With tonic's `router` feature: `.add_service(health).serve_with_incoming(incoming)`.)
            let (_reporter, health) = tonic_health::server::health_reporter();
            let serve = tonic::transport::Server::builder().serve_with_incoming(health, server.incoming());
            tokio::spawn(serve);
        }
        Ok(Cluster { handles, seeds })
    }

    /// A client configuration: every instance a seed, in order.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            cluster: Some(CLUSTER.into()),
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(1),
            retry: RetryPolicy {
                base: Duration::from_millis(20),
                cap: Duration::from_millis(200),
                max_rounds: 5,
            },
            ..ClientConfig::with_seeds(self.seeds.clone())
        }
    }

    /// Sessions open on instance `index` (from 0).
    pub async fn connected(&self, index: usize) -> u32 {
        self.handles[index].stats().await.map_or(0, |s| s.workload.connected)
    }
}

/// A tonic channel over one balanced session (made now, not lazily). When
/// its instance dies, the channel's next call dials again through the
/// protocol.
pub async fn channel(connector: &BalancedConnector) -> Result<Channel, tonic::transport::Error> {
    tonic::transport::Endpoint::from_static(URI).connect_with_connector(connector.clone()).await
}

/// The overall health of whichever instance the channel's session is on.
/// A call that fails is made again, 3 times at most: one sent on a
/// connection as it died fails (`Unavailable`, or `Unknown` for a broken
/// pipe), and the channel's next call dials a new session.
pub async fn check(channel: &Channel) -> Result<ServingStatus, tonic::Status> {
    let mut client = HealthClient::new(channel.clone());
    let mut attempts = 0;
    loop {
        attempts += 1;
        match client.check(HealthCheckRequest { service: String::new() }).await {
            Ok(reply) => return Ok(reply.into_inner().status()),
            Err(_) if attempts < 3 => continue,
            Err(status) => return Err(status),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let capacities = [10, 20, 30];
    let cluster = Cluster::start(&capacities).await?;
    let connector = BalancedConnector::new(Client::new(cluster.client_config()))?;
    let mut channels = Vec::new();
    for _ in 0..30 {
        channels.push(channel(&connector).await?);
    }
    for c in &channels {
        assert_eq!(check(c).await?, ServingStatus::Serving);
    }
    for (i, cap) in capacities.iter().enumerate() {
        println!("instance {}: {} of {cap} sessions", i + 1, cluster.connected(i).await);
    }

    cluster.handles[0].crash().await;
    println!("instance 1 crashed");
    for c in &channels {
        assert_eq!(check(c).await?, ServingStatus::Serving);
    }
    for (i, cap) in capacities.iter().enumerate().skip(1) {
        println!("instance {}: {} of {cap} sessions", i + 1, cluster.connected(i).await);
    }
    for handle in &cluster.handles {
        handle.shutdown().await;
    }
    Ok(())
}
