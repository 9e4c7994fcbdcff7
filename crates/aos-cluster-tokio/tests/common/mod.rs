//! Shared by the server tests: the memory registry with an outage switch
//! (the real backends are tested on their own), fast
//! configurations, and a raw protocol client built on `aos_cluster::wire`.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::wire::{
    self, HandshakeOutcome, HandshakeRequest, Limits, Message, QueryId, RankedList, SessionReply,
    SessionRequest, WorkloadQuery, WorkloadReport,
};
use aos_cluster::{Endpoint, InstanceConfig, InstanceId};
use aos_cluster_tokio::frames::FrameReader;
use aos_cluster_tokio::registry::{
    BoxFuture, Incarnation, MemberTiming, MemoryRegistry, Registry, RegistryError,
};
use aos_cluster_tokio::server::{Server, ServerConfig, ServerHandle};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

pub const CLUSTER: &str = "test";
/// Every wait in these tests gives up after this.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// The runtime's [`MemoryRegistry`] behind a switch that makes every call
/// fail (an outage).
#[derive(Default)]
pub struct MemRegistry {
    rows: MemoryRegistry,
    pub down: AtomicBool,
}

impl MemRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn check_up(&self) -> Result<(), RegistryError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(RegistryError::Backend {
                url: "mem://".into(),
                message: "down (test outage)".into(),
            });
        }
        Ok(())
    }

    /// `call` on the rows, or the outage's error while the registry is down.
    fn gate<'a, T: Send + 'a>(
        &self,
        call: impl FnOnce() -> BoxFuture<'a, Result<T, RegistryError>>,
    ) -> BoxFuture<'a, Result<T, RegistryError>> {
        match self.check_up() {
            Ok(()) => call(),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    /// The row of `id` as stored: its heartbeat and owner.
    pub fn row(&self, id: InstanceId) -> Option<(Heartbeat, Incarnation)> {
        self.rows.row(id)
    }

    /// Another process takes the row of `id` over (as after a stale row).
    pub async fn steal(&self, id: InstanceId, incarnation: Incarnation) {
        let (heartbeat, owner) = self.rows.row(id).expect("a row to steal");
        self.rows.take_over(&heartbeat, incarnation, owner).await.expect("taken over");
    }
}

impl Registry for MemRegistry {
    fn register<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        member_ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        self.gate(|| self.rows.register(heartbeat, incarnation, member_ttl))
    }

    fn heartbeat<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        self.gate(|| self.rows.heartbeat(heartbeat, incarnation))
    }

    fn take_over<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        previous: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        self.gate(|| self.rows.take_over(heartbeat, incarnation, previous))
    }

    fn purge<'a>(
        &'a self,
        cluster: Option<&'a str>,
        older_than: Duration,
    ) -> BoxFuture<'a, Result<u64, RegistryError>> {
        self.gate(|| self.rows.purge(cluster, older_than))
    }

    fn malformed_rows(&self) -> u64 {
        0
    }

    fn snapshot<'a>(
        &'a self,
        cluster: Option<&'a str>,
        timing: MemberTiming,
    ) -> BoxFuture<'a, Result<Vec<MemberRecord>, RegistryError>> {
        self.gate(|| self.rows.snapshot(cluster, timing))
    }

    fn remove<'a>(
        &'a self,
        id: InstanceId,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<bool, RegistryError>> {
        self.gate(|| self.rows.remove(id, incarnation))
    }
}

/// Instance `id` of the test cluster with fast timers.
pub fn instance_config(id: u32, max_sessions: u32) -> InstanceConfig {
    InstanceConfig {
        cluster: Some(CLUSTER.to_owned()),
        member_ttl: Duration::from_millis(1000),
        heartbeat_interval: Duration::from_millis(100),
        snapshot_ttl: Duration::from_millis(50),
        peer_timeout: Duration::from_millis(400),
        registry_timeout: Duration::from_millis(400),
        ..InstanceConfig::new(InstanceId(id), Endpoint::new("127.0.0.1", 1).unwrap(), max_sessions)
    }
}

/// A server configuration on a free loopback port with short deadlines.
pub fn server_config(id: u32, max_sessions: u32) -> ServerConfig {
    ServerConfig {
        first_frame_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
        write_timeout: Duration::from_millis(300),
        ..ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), instance_config(id, max_sessions))
    }
}

pub async fn bind(config: ServerConfig, registry: &Arc<MemRegistry>) -> Server {
    let registry: Arc<dyn Registry> = registry.clone();
    Server::bind(config, registry).await.expect("server starts")
}

/// Polls `check` every 20 ms until it holds; fails the test after PATIENCE.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn frame(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode(message, &mut out).unwrap();
    out
}

pub fn handshake_request(request_id: u64) -> Message {
    Message::HandshakeRequest(HandshakeRequest {
        request_id,
        salt: request_id,
        load_balance: true,
        cluster: Some(CLUSTER.to_owned()),
    })
}

pub fn session_request(request_id: u64) -> Message {
    Message::SessionRequest(SessionRequest { request_id, credential: None })
}

/// A raw protocol client on one connection.
pub struct RawClient {
    pub stream: TcpStream,
    pub reader: FrameReader,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.expect("connect");
        RawClient { stream, reader: FrameReader::new(Limits::default(), PATIENCE) }
    }

    pub async fn send(&mut self, message: &Message) {
        self.stream.write_all(&frame(message)).await.expect("write");
    }

    pub async fn recv(&mut self) -> Message {
        self.reader
            .read_frame(&mut self.stream, Some(Instant::now() + PATIENCE))
            .await
            .expect("a reply frame")
    }

    pub async fn handshake(&mut self, request_id: u64) -> RankedList {
        self.send(&handshake_request(request_id)).await;
        match self.recv().await {
            Message::HandshakeReply(reply) => match reply.outcome {
                HandshakeOutcome::Ranked(list) => list,
                other => panic!("handshake refused: {other:?}"),
            },
            other => panic!("not a handshake reply: {other:?}"),
        }
    }

    pub async fn session(&mut self, request_id: u64) -> SessionReply {
        self.send(&session_request(request_id)).await;
        match self.recv().await {
            Message::SessionReply(reply) => reply,
            other => panic!("not a session reply: {other:?}"),
        }
    }

    pub async fn workload(&mut self, query_id: u64) -> WorkloadReport {
        self.send(&Message::WorkloadQuery(WorkloadQuery { query_id: QueryId(query_id) })).await;
        match self.recv().await {
            Message::WorkloadReport(report) => report,
            other => panic!("not a workload report: {other:?}"),
        }
    }
}

/// Whether the server closed `stream` (EOF or reset) within `within`.
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// The ids in a ranked list, in order.
pub fn ids(list: &RankedList) -> Vec<u32> {
    list.entries.iter().map(|e| e.id.0).collect()
}

pub async fn stats(handle: &ServerHandle) -> aos_cluster_tokio::ServerStats {
    handle.stats().await.expect("server running")
}

/// One handshake on a fresh connection to `addr`: the ranked list.
pub async fn ranking_at(addr: SocketAddr, request_id: u64) -> RankedList {
    RawClient::connect(addr).await.handshake(request_id).await
}
