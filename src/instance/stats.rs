//! The instance's counters, one group per subsystem ([`InstanceStats`]).

/// Counters of what the instance has done, for operators and tests: one
/// group per subsystem, plus the machine's own (heartbeats, peer questions
/// answered, the clock).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct InstanceStats {
    /// Handshakes and the query rounds that answer them.
    pub round: RoundStats,
    /// Bounded fan-out: whom a round asks.
    pub fan_out: FanOutStats,
    /// Herd control's reservations.
    pub herd: HerdStats,
    /// Session requests and the sessions they open.
    pub admission: AdmissionStats,
    /// Heartbeats published.
    pub heartbeats: u64,
    /// Workload queries from peers answered.
    pub workload_queries_answered: u64,
    /// Calls whose `now` was earlier than one already seen (time is clamped,
    /// as in the Connector).
    pub clamped: u64,
}

/// Handshakes and query rounds: what was asked, who answered, what was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RoundStats {
    /// Handshake requests received.
    pub handshakes: u64,
    /// Handshakes refused with `Busy` (too many waiting).
    pub refused_busy: u64,
    /// Handshakes refused with `WrongCluster`.
    pub refused_wrong_cluster: u64,
    /// Handshakes answered at once with this instance alone (standalone or
    /// `load_balance: false`).
    pub direct_replies: u64,
    /// Handshakes dropped because their connection closed while waiting.
    pub abandoned_handshakes: u64,
    /// Query rounds started.
    pub rounds: u64,
    /// Registry queries sent.
    pub registry_queries: u64,
    /// Registry queries that failed or timed out.
    pub registry_failures: u64,
    /// Ranked replies built from an old snapshot (or none) after registry trouble.
    pub stale_replies: u64,
    /// Peer workload queries sent.
    pub peer_queries: u64,
    /// Valid peer reports received.
    pub peer_reports: u64,
    /// Peers declared unreachable (including contradictory reports).
    pub peer_unreachable: u64,
    /// Peers that did not answer within `peer_timeout`.
    pub peer_silent: u64,
    /// Peer reports with `connected > max_sessions`, treated as unreachable.
    pub contradictory_reports: u64,
    /// Registry or peer answers for unknown, finished or mismatched queries.
    pub ignored_replies: u64,
    /// Snapshot rows left out by `limits.max_members`.
    pub members_dropped: u64,
    /// Ranked replies sent.
    pub ranked_replies: u64,
}

/// Bounded fan-out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct FanOutStats {
    /// Peer queries (counted in [`RoundStats::peer_queries`] too) a bounded
    /// round sent in place of an asked member found unreachable.
    pub replacement_queries: u64,
}

/// Herd control's reservations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct HerdStats {
    /// Reservations counted.
    pub reservations_made: u64,
    /// Reservations replaced by a newer handshake on the same connection.
    pub reservations_replaced: u64,
    /// Reservations that reached `reservation_ttl` without a session landing
    /// or a fresh report covering them.
    pub reservations_expired_unused: u64,
    /// Reservations not counted because `limits.max_reservations` was reached.
    pub reservations_dropped: u64,
    /// Reservations ended because their client connection closed: the
    /// client landed somewhere, gave up, or never meant to come.
    pub reservations_released: u64,
}

/// Session requests and sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct AdmissionStats {
    /// Sessions admitted.
    pub sessions_accepted: u64,
    /// Session requests rejected (every reason).
    pub sessions_rejected: u64,
    /// Session requests on a connection that already holds a session.
    pub rejected_already_in_session: u64,
    /// Session requests the driver's admission policy refused
    /// ([`Event::SessionDenied`](super::Event::SessionDenied)): the
    /// application's hook said no or did not answer in time, or the source
    /// address was at its session cap.
    pub rejected_by_policy: u64,
    /// Sessions ended.
    pub sessions_ended: u64,
    /// Session ends for unknown or already ended sessions.
    pub ignored_session_ends: u64,
}
