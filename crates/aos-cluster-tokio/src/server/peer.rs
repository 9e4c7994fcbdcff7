//! Links to peers for workload queries: one reused connection per peer,
//! keyed by its id and endpoint. A member whose endpoint changed gets a new
//! link (the old one is dropped); a member gone from the registry loses its
//! link. Each query carries its deadline (`peer_timeout`); one query at a
//! time per link, queued in a small bounded channel. With TLS a link
//! presents this instance's certificate and verifies the peer's against the
//! cluster CA and the peer's endpoint host.

use std::collections::HashMap;
use std::sync::Arc;

use aos_cluster::instance;
use aos_cluster::registry::MemberRecord;
use aos_cluster::wire::{Message, QueryId, WorkloadQuery};
use aos_cluster::{Endpoint, InstanceId};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use super::limits::Counters;
use super::{Input, Shared};
use crate::frames::{write_frame, FrameReader, ReadError};
use crate::transport::SessionStream;

struct Query {
    query_id: QueryId,
    query: WorkloadQuery,
    deadline: Instant,
}

struct Link {
    endpoint: Endpoint,
    queries: mpsc::Sender<Query>,
}

/// The actor's peer links.
pub(super) struct PeerLinks {
    links: HashMap<InstanceId, Link>,
    shared: Arc<Shared>,
    inbox: mpsc::Sender<Input>,
}

impl PeerLinks {
    pub fn new(shared: Arc<Shared>, inbox: mpsc::Sender<Input>) -> Self {
        PeerLinks { links: HashMap::new(), shared, inbox }
    }

    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Sends `query` to `peer` at `endpoint`, or says at once why it cannot
    /// (the answer is then `PeerUnreachable`).
    pub fn query(
        &mut self,
        peer: InstanceId,
        endpoint: Endpoint,
        query_id: QueryId,
        query: WorkloadQuery,
    ) -> Result<(), String> {
        if self.links.get(&peer).is_some_and(|link| link.endpoint != endpoint || link.queries.is_closed()) {
            // Restarted elsewhere (or the link task ended): a fresh link.
            self.links.remove(&peer);
            Counters::bump(&self.shared.counters.peer_links_replaced);
        }
        let deadline = Instant::now() + self.shared.config.instance.peer_timeout;
        let link = self.links.entry(peer).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(self.shared.config.peer_queue);
            tokio::spawn(run_link(peer, endpoint.clone(), rx, self.shared.clone(), self.inbox.clone()));
            Link { endpoint, queries: tx }
        });
        link.queries
            .try_send(Query { query_id, query, deadline })
            .map_err(|_| "too many queries waiting on this peer link".to_owned())
    }

    /// Follows a registry snapshot: links of members no longer active, or
    /// whose endpoint changed, are dropped (their tasks end).
    pub fn follow(&mut self, members: &[MemberRecord]) {
        let ttl = self.shared.config.instance.member_ttl;
        let before = self.links.len();
        self.links.retain(|id, link| {
            members.iter().any(|m| m.id == *id && m.endpoint == link.endpoint && m.heartbeat_age < ttl)
        });
        let dropped = before - self.links.len();
        if dropped > 0 {
            debug!(dropped, "peer links dropped: members left the registry or moved");
        }
    }
}

/// One peer link: queries in order, each answered before its deadline or
/// reported unreachable. Ends when the actor drops the link.
async fn run_link(
    peer: InstanceId,
    endpoint: Endpoint,
    mut queries: mpsc::Receiver<Query>,
    shared: Arc<Shared>,
    inbox: mpsc::Sender<Input>,
) {
    let mut link: Option<(SessionStream, FrameReader)> = None;
    let mut scratch = Vec::new();
    while let Some(query) = queries.recv().await {
        let event = match ask(&mut link, &endpoint, &query, &shared, &mut scratch).await {
            Ok(event) => event,
            Err(reason) => {
                debug!(%peer, %endpoint, %reason, "peer unreachable");
                instance::Event::PeerUnreachable { query_id: query.query_id, peer, reason }
            }
        };
        if inbox.send(Input::Event(event)).await.is_err() {
            return;
        }
    }
}

/// A new link's transport: TCP, then TLS with this instance's certificate
/// when the server has TLS.
async fn dial(endpoint: &Endpoint, shared: &Shared) -> Result<SessionStream, String> {
    let tcp = TcpStream::connect(endpoint.socket_addr_string()).await.map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    #[cfg(feature = "tls")]
    if let Some(tls) = &shared.tls {
        let name = crate::tls::server_name(endpoint.host())?;
        return match tls.peer_connector().connect(name, tcp).await {
            Ok(stream) => Ok(SessionStream::Tls(Box::new(stream))),
            Err(e) => Err(crate::tls::handshake_failure(endpoint.host(), &e)),
        };
    }
    let _ = shared;
    Ok(SessionStream::Plain(tcp))
}

async fn ask(
    link: &mut Option<(SessionStream, FrameReader)>,
    endpoint: &Endpoint,
    query: &Query,
    shared: &Shared,
    scratch: &mut Vec<u8>,
) -> Result<instance::Event, String> {
    // A reused link may have been closed by the peer's idle timeout in the
    // meantime: a query is idempotent, so one retry on a fresh link.
    for retry in [true, false] {
        if Instant::now() >= query.deadline {
            return Err("peer_timeout passed before the query could be sent".into());
        }
        let reused = link.is_some();
        if link.is_none() {
            Counters::bump(&shared.counters.peer_dials);
            let stream = match tokio::time::timeout_at(query.deadline, dial(endpoint, shared)).await {
                Err(_) => return Err("connect timed out".into()),
                Ok(Err(reason)) => return Err(reason),
                Ok(Ok(stream)) => stream,
            };
            let reader = FrameReader::new(shared.limits, shared.config.instance.peer_timeout);
            *link = Some((stream, reader));
        }
        let Some((stream, reader)) = link.as_mut() else { unreachable!("set just above") };
        let message = Message::WorkloadQuery(query.query);
        let result = match write_frame(stream, &message, &shared.limits, scratch, query.deadline).await {
            Err(e) => Err((e.to_string(), false)),
            Ok(()) => reader
                .read_frame(stream, Some(query.deadline))
                .await
                .map_err(|e| (e.to_string(), matches!(e, ReadError::Timeout { .. }))),
        };
        match result {
            Ok(reply) => {
                return instance::Event::from_peer_reply(reply).map_err(|unexpected| {
                    *link = None;
                    unexpected.to_string()
                })
            }
            Err((reason, timed_out)) => {
                // After a timeout the link's state is unknown: never reuse it.
                *link = None;
                if !(retry && reused && !timed_out) {
                    return Err(reason);
                }
            }
        }
    }
    Err("peer link failed twice".into())
}

/// Whether an instance still answers at `endpoint`: a starting process asks
/// the endpoint of the live row that holds its id (SPEC "Membership"). Only a
/// workload report before `deadline` counts: a refused connection, silence,
/// or a program that is not an instance means the row's process is gone.
pub(super) async fn still_answers(endpoint: &Endpoint, shared: &Shared, deadline: Instant) -> bool {
    let probe = async {
        let mut stream = dial(endpoint, shared).await?;
        let query = Message::WorkloadQuery(WorkloadQuery { query_id: QueryId(0) });
        let mut scratch = Vec::new();
        write_frame(&mut stream, &query, &shared.limits, &mut scratch, deadline)
            .await
            .map_err(|e| e.to_string())?;
        let mut reader = FrameReader::new(shared.limits, shared.config.instance.peer_timeout);
        let reply = reader.read_frame(&mut stream, Some(deadline)).await.map_err(|e| e.to_string())?;
        Ok::<bool, String>(matches!(reply, Message::WorkloadReport(_)))
    };
    match tokio::time::timeout_at(deadline, probe).await {
        Ok(Ok(answered)) => answered,
        Ok(Err(reason)) => {
            debug!(%endpoint, %reason, "no answer from the row's endpoint");
            false
        }
        Err(_) => false,
    }
}
