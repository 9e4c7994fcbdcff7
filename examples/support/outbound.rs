//! What the instance server sends out on its own: workload queries to peers
//! over reused connections, and heartbeats to the registry. Both end when the
//! server's actor drops their channel.

use std::sync::Arc;

use aos_cluster::instance;
use aos_cluster::registry::Heartbeat;
use aos_cluster::wire::{Message, WorkloadQuery};
use aos_cluster::{Endpoint, InstanceId};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::frames::{write_message, FrameReader};
use super::registry::Registry;

/// Keeps the registry row fresh with the latest heartbeat, in order: a slow
/// write is never overtaken by an older one. Ends, after the write in
/// progress, when the sender is dropped.
pub async fn publish_heartbeats(registry: Arc<Registry>, mut latest: watch::Receiver<Option<Heartbeat>>) {
    while latest.changed().await.is_ok() {
        let heartbeat = latest.borrow_and_update().clone();
        if let Some(heartbeat) = heartbeat {
            if let Err(e) = registry.publish(&heartbeat).await {
                warn!(id = %heartbeat.id, error = %e, "heartbeat not published");
            }
        }
    }
}

/// One reused connection to a peer for workload queries. The machine times
/// queries out itself; the link reports answers and transport failures
/// through `report`, and ends when `queries` closes.
pub async fn peer_link(
    peer: InstanceId,
    endpoint: Endpoint,
    mut queries: mpsc::UnboundedReceiver<WorkloadQuery>,
    report: impl Fn(instance::Event) + Send + 'static,
) {
    let unreachable = |reason: &str, query_id| {
        report(instance::Event::PeerUnreachable { query_id, peer, reason: reason.to_owned() });
    };
    let mut link: Option<(FrameReader<OwnedReadHalf>, OwnedWriteHalf)> = None;
    let mut outstanding: Vec<aos_cluster::wire::QueryId> = Vec::new();
    let mut scratch = Vec::new();
    loop {
        tokio::select! {
            query = queries.recv() => {
                let Some(query) = query else { return };
                if link.is_none() {
                    match TcpStream::connect(endpoint.socket_addr_string()).await {
                        Ok(stream) => {
                            let _ = stream.set_nodelay(true);
                            let (r, w) = stream.into_split();
                            link = Some((FrameReader::new(r), w));
                        }
                        Err(e) => {
                            debug!(%peer, error = %e, "peer unreachable");
                            unreachable(&e.to_string(), query.query_id);
                            continue;
                        }
                    }
                }
                let (_, writer) = link.as_mut().expect("connected just above");
                if let Err(e) = write_message(writer, &Message::WorkloadQuery(query), &mut scratch).await {
                    debug!(%peer, error = %e, "peer link failed");
                    link = None;
                    let reason = e.to_string();
                    outstanding.drain(..).chain([query.query_id]).for_each(|id| unreachable(&reason, id));
                } else {
                    outstanding.push(query.query_id);
                }
            }
            read = async { link.as_mut().expect("guarded").0.next().await }, if link.is_some() => match read {
                Ok(Message::WorkloadReport(workload)) => {
                    outstanding.retain(|&id| id != workload.query_id);
                    report(instance::Event::WorkloadReport { report: workload });
                }
                other => {
                    let reason = match other {
                        Ok(message) => format!("unexpected message {message:?}"),
                        Err(e) => e.to_string(),
                    };
                    debug!(%peer, %reason, "peer link closed");
                    link = None;
                    outstanding.drain(..).for_each(|id| unreachable(&reason, id));
                }
            },
        }
    }
}
