//! The listener: accepts under the connection caps, backs off while accept
//! fails (saturated meanwhile), and starts a task per connection.

use std::sync::Arc;
use std::time::Duration;

use aos_cluster::instance::ConnectionId;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;
use tracing::warn;

use super::conn::{stopped, Connection};
use super::limits::{Counters, RateLimitedWarning, Refusal};
use super::{Accepted, Input, Shared};

/// The listener's accept queue: `TcpListener::bind` uses 128, which a burst
/// of clients overflows, costing each a one-second SYN retransmission.
const BACKLOG: u32 = 1024;

/// A listener on `addr` with the [`BACKLOG`] accept queue.
pub(super) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Errors that concern one connection, not the listener: accept again at once.
fn per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock)
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    inbox: mpsc::Sender<Input>,
    accepted: mpsc::Sender<Accepted>,
) {
    let mut stop = shared.stop.subscribe();
    let mut next_conn = 0u64;
    let mut backoff: Option<Duration> = None;
    let mut warning = RateLimitedWarning::new(Duration::from_secs(5));
    loop {
        // While accept is failing, an accept that stays pending for a backoff
        // period means nothing is failing any more (the kernel reports
        // EMFILE only for a waiting connection): advertise again then,
        // without waiting for a client that an unadvertised instance may never get.
        let calm = async {
            match backoff {
                Some(_) => tokio::time::sleep(shared.config.accept_error_backoff).await,
                None => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            biased;
            _ = stopped(&mut stop) => return,
            result = listener.accept() => result,
            _ = calm => {
                backoff = None;
                shared.limiter.set_accept_failing(false);
                continue;
            }
        };
        match result {
            Ok((stream, peer)) => {
                if backoff.take().is_some() {
                    shared.limiter.set_accept_failing(false);
                }
                match shared.limiter.admit(peer.ip()) {
                    Ok(slot) => {
                        next_conn += 1;
                        let conn = ConnectionId(next_conn);
                        let task = Connection {
                            conn,
                            peer,
                            shared: shared.clone(),
                            inbox: inbox.clone(),
                            accepted: accepted.clone(),
                        };
                        tokio::spawn(task.serve(stream, slot));
                    }
                    // Refused at once: closing costs the client one round trip,
                    // where queueing it would cost its whole timeout.
                    Err(Refusal::AtCap) => Counters::bump(&shared.counters.refused_at_cap),
                    Err(Refusal::PerIp) => Counters::bump(&shared.counters.refused_per_ip),
                }
            }
            Err(e) if per_connection(&e) => Counters::bump(&shared.counters.accept_errors),
            Err(e) => {
                // Out of descriptors or memory: the listener cannot take more
                // now. Stop advertising, pause, and say so without flooding.
                Counters::bump(&shared.counters.accept_errors);
                shared.limiter.set_accept_failing(true);
                let pause = match backoff {
                    None => shared.config.accept_error_backoff,
                    Some(d) => (d * 2).min(shared.config.accept_error_backoff_max),
                };
                backoff = Some(pause);
                if let Some(count) = warning.hit() {
                    warn!(error = %e, count, ?pause, "accept failed; pausing (saturated, not advertised)");
                }
                tokio::select! {
                    biased;
                    _ = stopped(&mut stop) => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}
