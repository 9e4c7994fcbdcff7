//! 100 hostile clients pipeline handshakes without reading a reply: the
//! server reads one request per connection at a time, so its memory stays
//! bounded and its peers' workload queries are still answered in time.
//! Before the attack it also measures the memory of idle connections and of
//! sessions held by the application. (Alone in its binary, one test: it
//! measures the process's resident memory, which other tests would disturb.)

mod common;

use std::time::Duration;

use aos_cluster::wire::SessionOutcome;
use aos_cluster::InstanceId;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Resident memory of this process in bytes (Linux `/proc/self/statm`).
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

const ATTACKERS: usize = 100;
/// Idle connections, then sessions, measured before the attack.
const PER_PHASE: usize = 1000;
/// The goal for the server alone, per idle connection and per
/// session; met here with the client ends in the same process.
const PER_CONNECTION_BOUND: u64 = 16 * 1024;
/// The bound the issue sets for the whole server under this attack.
const BOUND: u64 = 64 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelining_clients_cannot_grow_memory_or_starve_peer_queries() {
    let registry = MemRegistry::new();
    // A write deadline longer than the attack, so attackers stay connected
    // throughout (the worst case for memory).
    let config = aos_cluster_tokio::ServerConfig {
        write_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(20),
        first_frame_timeout: Duration::from_secs(20),
        max_connections_per_ip: 10_000,
        ..server_config(1, 2 * PER_PHASE as u32)
    };
    let mut target = bind(config, &registry).await;
    let peer = bind(server_config(2, 100), &registry).await;
    let (target_addr, target_handle) = (target.local_addr(), target.handle());
    eventually("both ranked", || async { ranking_at(peer.local_addr(), 1).await.entries.len() == 2 }).await;

    // Idle connections (both ends live in this process), kept open throughout
    // so each phase's growth is new memory.
    let start = rss();
    let mut idle = Vec::new();
    for _ in 0..PER_PHASE {
        idle.push(TcpStream::connect(target_addr).await.unwrap());
    }
    eventually("all idle connections open", || async {
        stats(&target_handle).await.connections.open >= PER_PHASE
    })
    .await;
    let with_idle = rss();

    // Sessions held by the application.
    let mut sessions = Vec::new();
    let mut clients = Vec::new();
    for id in 0..PER_PHASE as u64 {
        let mut client = TcpStream::connect(target_addr).await.unwrap();
        client.write_all(&frame(&session_request(id))).await.unwrap();
        // The accepted reply: header 6 + request id 8 + outcome tag 1 + session id 8.
        let mut reply = [0u8; 23];
        tokio::time::timeout(PATIENCE, client.read_exact(&mut reply)).await.unwrap().unwrap();
        let mut decoder = aos_cluster::wire::Decoder::new();
        decoder.feed(&reply);
        let accepted = matches!(
            decoder.next(),
            Ok(Some(aos_cluster::wire::Message::SessionReply(r))) if matches!(r.outcome, SessionOutcome::Accepted { .. })
        );
        assert!(accepted, "session {id} not accepted");
        sessions.push(target.accept().await.expect("a session"));
        clients.push(client);
    }
    assert_eq!(stats(&target_handle).await.workload.connected as usize, PER_PHASE);
    let with_sessions = rss();
    if let (Some(start), Some(idle_rss), Some(session_rss)) = (start, with_idle, with_sessions) {
        let per_idle = idle_rss.saturating_sub(start) / PER_PHASE as u64;
        let per_session = session_rss.saturating_sub(idle_rss) / PER_PHASE as u64;
        eprintln!(
            "{PER_PHASE} idle connections: {per_idle} B each; {PER_PHASE} sessions: {per_session} B each \
             (both ends in this process)"
        );
        assert!(per_idle <= PER_CONNECTION_BOUND, "an idle connection costs {per_idle} B");
        assert!(per_session <= PER_CONNECTION_BOUND, "a session costs {per_session} B");
    }
    let before = rss();

    // Each attacker writes 2 MB of handshake requests in one go and never reads.
    let mut burst = Vec::new();
    for id in 0..(2 * 1024 * 1024 / frame(&handshake_request(0)).len()) as u64 {
        burst.extend(frame(&handshake_request(id)));
    }
    let burst = std::sync::Arc::new(burst);
    let mut attackers = Vec::new();
    for _ in 0..ATTACKERS {
        let burst = burst.clone();
        attackers.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(target_addr).await.unwrap();
            // Blocks once the socket buffers are full; held until aborted.
            let _ = stream.write_all(&burst).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // While under attack: peers' queries are answered in time.
    let attack_end = Instant::now() + Duration::from_secs(2);
    let mut probes = 0;
    let mut worst = Duration::ZERO;
    // Reused, as a peer's link is.
    let mut peer_link = RawClient::connect(target_addr).await;
    while Instant::now() < attack_end {
        let asked = Instant::now();
        let report = peer_link.workload(probes).await;
        assert_eq!(report.id, InstanceId(1));
        worst = worst.max(asked.elapsed());
        // And the peer instance still ranks the target (its own queries answered within peer_timeout).
        let ranked = ranking_at(peer.local_addr(), 100 + probes).await;
        assert!(
            ids(&ranked).contains(&1),
            "the attacked instance fell out of the peer's ranking: {ranked:?}"
        );
        probes += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(worst < Duration::from_millis(400), "a workload query took {worst:?} under attack");
    let s = stats(&target_handle).await;
    assert!(s.connections.open >= ATTACKERS, "attackers should still be connected: {s:?}");
    assert!(s.instance.round.handshakes >= ATTACKERS as u64, "the attackers were served: {s:?}");

    let after = rss();
    if let (Some(before), Some(after)) = (before, after) {
        let grown = after.saturating_sub(before);
        eprintln!(
            "RSS before {} KiB, under attack {} KiB, grown {} KiB; {probes} probes, worst workload query {worst:?}; \
             {} handshakes served",
            before / 1024,
            after / 1024,
            grown / 1024,
            s.instance.round.handshakes
        );
        // The whole test process, its 100 attackers' buffers included.
        assert!(grown < BOUND, "memory grew by {} MiB under attack", grown >> 20);
    }
    for attacker in attackers {
        attacker.abort();
    }
    drop((idle, sessions, clients));
}
