//! The crate's own client and server together: a balanced session carries
//! the application's bytes both ways, async and blocking.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use aos_cluster::{ClientConfig, RetryPolicy};
use aos_cluster_tokio::server::{Server, ServerHandle};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Echoes every chunk back, upper-cased, so a reply cannot be the request.
fn serve_upper(mut server: Server) {
    tokio::spawn(async move {
        while let Some(accepted) = server.accept().await {
            let mut stream = accepted.stream;
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    if stream.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}

async fn cluster(n: u32) -> (std::sync::Arc<MemRegistry>, Vec<ServerHandle>, ClientConfig) {
    let registry = MemRegistry::new();
    let mut handles = Vec::new();
    let mut seeds = Vec::new();
    for id in 1..=n {
        let server = bind(server_config(id, 100), &registry).await;
        seeds.push(server.endpoint().clone());
        handles.push(server.handle());
        serve_upper(server);
    }
    let first = handles[0].endpoint().socket_addr_string().parse().unwrap();
    eventually("every instance ranked", || async { ranking_at(first, 1).await.entries.len() == n as usize })
        .await;
    let config = ClientConfig {
        cluster: Some(CLUSTER.to_owned()),
        handshake_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(200),
            max_rounds: 3,
        },
        ..ClientConfig::with_seeds(seeds)
    };
    (registry, handles, config)
}

async fn connected(handles: &[ServerHandle]) -> Vec<u32> {
    let mut all = Vec::new();
    for handle in handles {
        all.push(stats(handle).await.workload.connected);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_clients_exchange_bytes_over_balanced_sessions() {
    let (_registry, handles, config) = cluster(3).await;
    let mut sessions = Vec::new();
    for i in 0..6u32 {
        let mut session = aos_cluster_tokio::Client::with_options(
            config.clone(),
            aos_cluster_tokio::ClientOptions::new().with_rng_seed(i as u64),
        )
        .connect()
        .await
        .expect("a session");
        let message = format!("hello from client {i}");
        session.write_all(message.as_bytes()).await.unwrap();
        let mut reply = vec![0u8; message.len()];
        tokio::time::timeout(PATIENCE, session.read_exact(&mut reply)).await.unwrap().unwrap();
        assert_eq!(reply, message.to_ascii_uppercase().as_bytes());
        sessions.push(session);
    }
    let counts = connected(&handles).await;
    assert_eq!(counts.iter().sum::<u32>(), 6);
    assert!(counts.iter().filter(|&&c| c > 0).count() >= 2, "no balancing at all: {counts:?}");
    drop(sessions);
    eventually("every session ended", || async { connected(&handles).await.iter().sum::<u32>() == 0 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_client_exchanges_bytes_over_a_balanced_session() {
    let (_registry, handles, config) = cluster(2).await;
    let exchanged = tokio::task::spawn_blocking(move || {
        let mut session =
            aos_cluster_tokio::blocking::Client::new(config.clone()).connect().expect("a session");
        session.get_ref().set_read_timeout(Some(PATIENCE)).unwrap();
        let mut replies = Vec::new();
        for round in 0..3 {
            let message = format!("blocking round {round}");
            session.write_all(message.as_bytes()).unwrap();
            let mut reply = vec![0u8; message.len()];
            session.read_exact(&mut reply).unwrap();
            replies.push(String::from_utf8(reply).unwrap());
        }
        replies
    })
    .await
    .unwrap();
    assert_eq!(exchanged, ["BLOCKING ROUND 0", "BLOCKING ROUND 1", "BLOCKING ROUND 2"]);
    // The blocking session was dropped at the end of its closure.
    eventually("the session ended", || async { connected(&handles).await.iter().sum::<u32>() == 0 }).await;
}
