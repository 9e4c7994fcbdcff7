//! Trust (SPEC "Drivers: trust"): TLS to every instance, mutual TLS between
//! instances, the allow-list. Certificates come from a throwaway CA generated
//! at run time; everything runs on 127.0.0.1 and every wait is bounded.
#![cfg(feature = "dev-certs")]

#[path = "../common/mod.rs"]
mod common;

mod allow_list;
mod certificates;
mod mutual;
#[cfg(feature = "postgres")]
mod postgres;
mod rogue;

use aos_cluster_tokio::registry::MemberTiming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aos_cluster::client::{AttemptOutcome, AttemptRecord, Phase};
use aos_cluster::config::RetryPolicy;
use aos_cluster::wire::{
    HandshakeOutcome, HandshakeReply, Limits, Message, QueryId, RankedEntry, RankedList, WorkloadQuery,
};
use aos_cluster::{ClientConfig, Endpoint, InstanceId, Role, Workload};
use aos_cluster_tokio::client::{AllowList, ClientOptions};
use aos_cluster_tokio::frames::{write_frame, FrameReader};
use aos_cluster_tokio::registry::Registry;
use aos_cluster_tokio::server::{Server, ServerConfig, ServerOptions};
use aos_cluster_tokio::tls::dev_certs::DevPki;
use aos_cluster_tokio::tls::{ClientTls, Identity, ServerTls, TrustRoots};
use aos_cluster_tokio::{blocking, Client};
use common::*;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

fn client_config(seeds: &[&Endpoint]) -> ClientConfig {
    ClientConfig {
        cluster: Some(CLUSTER.to_owned()),
        handshake_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy { base: Duration::from_millis(10), cap: Duration::from_millis(10), max_rounds: 1 },
        ..ClientConfig::with_seeds(seeds.iter().map(|e| (*e).clone()).collect())
    }
}

fn tls_options(pki: &DevPki) -> ClientOptions {
    ClientOptions::new().with_tls(pki.client_tls().expect("client TLS"))
}

async fn bind_tls(config: ServerConfig, registry: &Arc<MemRegistry>, tls: ServerTls) -> Server {
    let registry: Arc<dyn Registry> = registry.clone();
    Server::bind_with(config, registry, ServerOptions::new().with_tls(tls)).await.expect("server starts")
}

/// A standalone instance (no cluster, answers handshakes with itself) with
/// `tls`: a seed that would take any client.
async fn standalone(id: u32, registry: &Arc<MemRegistry>, tls: ServerTls) -> Server {
    let mut config = server_config(id, 10);
    config.instance.role = Role::Standalone;
    config.instance.cluster = None;
    bind_tls(config, registry, tls).await
}

/// Runs `server`'s accept loop as an echo service; returns its address and handle.
fn serve_echo(mut server: Server) -> (SocketAddr, Endpoint, aos_cluster_tokio::ServerHandle) {
    let (addr, endpoint, handle) = (server.local_addr(), server.endpoint().clone(), server.handle());
    tokio::spawn(async move {
        while let Some(accepted) = server.accept().await {
            let mut stream = accepted.stream;
            assert!(stream.is_tls(), "a TLS server handed over a plain stream");
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, endpoint, handle)
}

fn transport_failure(record: &AttemptRecord) -> &str {
    match &record.outcome {
        AttemptOutcome::TransportFailed(reason) => reason,
        other => panic!("attempt {record} is not a transport failure: {other:?}"),
    }
}

fn accepted_last(attempts: &[AttemptRecord]) {
    let last = attempts.last().expect("attempts");
    assert!(matches!(last.outcome, AttemptOutcome::Accepted { .. }), "last attempt: {last}");
}

async fn echo_round_trip_async<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let message = b"application bytes over TLS";
    stream.write_all(message).await.expect("write");
    let mut back = vec![0u8; message.len()];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut back)).await.expect("echo in time").expect("read");
    assert_eq!(&back, message);
}

fn echo_round_trip_blocking(session: &mut blocking::Session) {
    use std::io::{Read, Write};
    session.get_ref().set_read_timeout(Some(PATIENCE)).expect("read timeout");
    let message = b"blocking bytes over TLS";
    session.write_all(message).expect("write");
    let mut back = vec![0u8; message.len()];
    session.read_exact(&mut back).expect("echo");
    assert_eq!(&back, message);
}
