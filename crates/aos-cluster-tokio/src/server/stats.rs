//! A running server's figures, grouped as the admin endpoint shows them
//! (`GET /stats` is their JSON form, `GET /metrics` their Prometheus form).

use std::collections::BTreeMap;
use std::time::Duration;

use aos_cluster::{Endpoint, InstanceId, InstanceStats, Workload};
use serde::Serialize;

/// A running server's figures: the machine's plus the driver's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ServerStats {
    /// This instance.
    pub id: InstanceId,
    /// Where it is advertised.
    pub endpoint: Endpoint,
    /// Sessions open and the maximum (`connected`, `max_sessions` in JSON).
    #[serde(flatten)]
    pub workload: Workload,
    /// The admin setting (not draining).
    pub accepting: bool,
    /// At the connection cap or unable to accept: advertised as not accepting.
    pub saturated: bool,
    /// A graceful stop is draining: new sessions are refused until the open
    /// ones end or the grace is over.
    pub stopping: bool,
    /// Connections: open, refused, closed.
    pub connections: ConnectionStats,
    /// Sessions handed to the application and refused.
    pub sessions: SessionStats,
    /// Links to peers and the queries they send.
    pub peers: PeerStats,
    /// The registry as this instance sees it.
    pub registry: RegistryStats,
    /// The machine's counters.
    pub instance: InstanceStats,
}

/// Connections: open, refused and closed by the server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// Connections open now (protocol connections and sessions).
    pub open: usize,
    /// New connections refused at `max_connections`.
    pub refused_at_cap: u64,
    /// New connections refused at `max_connections_per_ip`.
    pub refused_per_ip: u64,
    /// Closed for no complete frame within `first_frame_timeout` (of opening,
    /// or of a frame's first byte).
    pub closed_first_frame_timeout: u64,
    /// Closed after `idle_timeout` with nothing sent.
    pub closed_idle_timeout: u64,
    /// Closed because the client did not take a reply within `write_timeout`.
    pub closed_write_timeout: u64,
    /// Closed on a malformed or unexpected frame.
    pub malformed_frames: u64,
    /// `accept` calls that failed.
    pub accept_errors: u64,
    /// Connections closed because their TLS handshake failed or took longer
    /// than `first_frame_timeout` (a certificate not of the cluster, a
    /// client that does not trust ours, plain TCP to a TLS port).
    pub tls_handshake_failures: u64,
}

/// Sessions handed over and refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SessionStats {
    /// Sessions handed to the application.
    pub handed_over: u64,
    /// Sessions closed because the accept queue was full.
    pub dropped_queue_full: u64,
    /// Session requests refused, by reason: the reply's `RejectReason` in
    /// snake case (`full`, `draining`, `not_serving`, `busy`,
    /// `already_in_session`, and any reason the protocol adds). Reasons
    /// never given are absent.
    pub rejected: BTreeMap<String, u64>,
    /// Of those, refused with `AddressLimit`: their address held
    /// `max_sessions_per_ip` sessions.
    pub refused_per_address: u64,
    /// Of those, refused by the admission hook (`Unauthorized`), including
    /// those it did not answer in time.
    pub refused_by_hook: u64,
    /// Of those, the hook did not answer within its deadline (or panicked).
    pub admission_hook_timeouts: u64,
}

/// Links to peers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PeerStats {
    /// Peer links open.
    pub links: usize,
    /// Connections dialled to peers.
    pub dials: u64,
    /// Peer links replaced because the member moved or the link died.
    pub links_replaced: u64,
    /// Connections closed for a `WorkloadQuery` without a client certificate
    /// of the cluster (TLS on).
    pub queries_refused: u64,
}

/// The registry as this instance sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RegistryStats {
    /// Heartbeats that failed (the registry unreachable or slow).
    pub heartbeat_failures: u64,
    /// Registry calls that failed, by operation (`heartbeat`, `snapshot`,
    /// `remove`) and kind ([`RegistryError::kind`](crate::registry::RegistryError::kind),
    /// or `timeout` for a call past `registry_timeout`).
    pub errors: BTreeMap<String, BTreeMap<String, u64>>,
    /// Registry rows that snapshots skipped as malformed (a wrong type, a bad
    /// endpoint, a heartbeat far in the future), counted once per snapshot
    /// that skipped them ([`Registry::malformed_rows`](crate::registry::Registry::malformed_rows)).
    pub malformed_rows: u64,
    /// Another process took over this id's registry row; heartbeats stopped.
    pub registration_lost: bool,
    /// How long ago the last registry snapshot arrived (`None`: none yet);
    /// `snapshot_age_seconds` in JSON.
    #[serde(rename = "snapshot_age_seconds", serialize_with = "seconds")]
    pub snapshot_age: Option<Duration>,
}

fn seconds<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}
