//! The Instance's vocabulary: its inputs ([`Event`]), outputs ([`Action`])
//! and counters ([`InstanceStats`]).

use crate::endpoint::Endpoint;
use crate::error::UnexpectedMessage;
use crate::registry::{Heartbeat, MemberRecord};
use crate::wire::{
    HandshakeRequest, Message, QueryId, RejectReason, SessionId, SessionRequest, WorkloadQuery,
    WorkloadReport,
};
use crate::workload::InstanceId;

/// The driver's name for one client or peer connection; opaque to the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ConnectionId(pub u64);

/// One input to an [`Instance`](super::Instance).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A client asks which instance to use (phase 1 -> phase 2).
    HandshakeRequest {
        /// Where to send the reply.
        conn: ConnectionId,
        /// The request.
        request: HandshakeRequest,
    },
    /// A client asks for a session here (phase 3).
    SessionRequest {
        /// Where to send the reply.
        conn: ConnectionId,
        /// The request.
        request: SessionRequest,
    },
    /// The driver's admission policy refused this session request before
    /// handing it over (SPEC "Drivers: admission policy": a per-address
    /// session cap, the application's hook). The machine answers it with a
    /// rejection for `reason` (normally [`RejectReason::Unauthorized`] or
    /// [`RejectReason::AddressLimit`]) and counts it; nothing else changes:
    /// no session, no workload, no reservation landed. The machine's own
    /// rules come first: a connection that already holds a session is
    /// answered `AlreadyInSession`.
    ///
    /// The policy lives in the driver because only the driver knows the
    /// peer's address and TLS identity and can wait for an application's
    /// answer; the reply and the counting stay here, so the driver never
    /// writes a protocol reply itself.
    SessionDenied {
        /// Where to send the reply.
        conn: ConnectionId,
        /// The refused request.
        request: SessionRequest,
        /// Why the policy refused it.
        reason: RejectReason,
    },
    /// The application ended a session explicitly while its connection
    /// stays open. A repeated or unknown id is ignored. (A closed connection
    /// ends its session by itself: [`Event::ConnectionClosed`].)
    SessionEnded {
        /// The id handed out in [`SessionOutcome::Accepted`](crate::wire::SessionOutcome::Accepted).
        session_id: SessionId,
    },
    /// The connection closed: the session it holds (if any) ends and
    /// handshakes still waiting on it are dropped. This is all a driver
    /// reports when a connection goes away.
    ConnectionClosed {
        /// The closed connection.
        conn: ConnectionId,
    },
    /// A peer asks for this instance's live workload.
    WorkloadQuery {
        /// Where to send the report.
        conn: ConnectionId,
        /// The query.
        query: WorkloadQuery,
    },
    /// The registry answered [`Action::QueryRegistry`].
    RegistrySnapshot {
        /// The query's id.
        query_id: QueryId,
        /// Every member row the registry holds for the cluster.
        members: Vec<MemberRecord>,
    },
    /// The registry query failed.
    RegistryFailed {
        /// The query's id.
        query_id: QueryId,
        /// What went wrong, for logs.
        reason: String,
    },
    /// A peer answered [`Action::QueryPeer`].
    WorkloadReport {
        /// The peer's report (its `query_id` names the query).
        report: WorkloadReport,
    },
    /// A peer could not be reached for [`Action::QueryPeer`].
    PeerUnreachable {
        /// The query's id.
        query_id: QueryId,
        /// The peer queried.
        peer: InstanceId,
        /// What went wrong, for logs.
        reason: String,
    },
    /// Admin, as [`Instance::set_accepting`](super::Instance::set_accepting).
    SetAccepting(bool),
    /// Admin, as [`Instance::set_max_sessions`](super::Instance::set_max_sessions).
    SetMaxSessions(u32),
}

impl Event {
    /// The event for a frame read from an inbound connection `conn`: the one
    /// place a decoded [`Message`] becomes an instance event. Only requests
    /// belong there; a reply or a workload report from a client is an
    /// [`UnexpectedMessage`] (so nobody on an inbound connection can pose as
    /// a peer), and the driver closes that connection.
    pub fn from_message(conn: ConnectionId, message: Message) -> Result<Event, UnexpectedMessage> {
        match message {
            Message::HandshakeRequest(request) => Ok(Event::HandshakeRequest { conn, request }),
            Message::SessionRequest(request) => Ok(Event::SessionRequest { conn, request }),
            Message::WorkloadQuery(query) => Ok(Event::WorkloadQuery { conn, query }),
            other => Err(UnexpectedMessage::new(&other, "an inbound connection")),
        }
    }

    /// The event for the frame read back on an outbound peer link after
    /// [`Action::QueryPeer`]: only a [`WorkloadReport`] belongs there.
    pub fn from_peer_reply(message: Message) -> Result<Event, UnexpectedMessage> {
        match message {
            Message::WorkloadReport(report) => Ok(Event::WorkloadReport { report }),
            other => Err(UnexpectedMessage::new(&other, "a peer link")),
        }
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            Event::HandshakeRequest { .. } => "HandshakeRequest",
            Event::SessionRequest { .. } => "SessionRequest",
            Event::SessionDenied { .. } => "SessionDenied",
            Event::SessionEnded { .. } => "SessionEnded",
            Event::ConnectionClosed { .. } => "ConnectionClosed",
            Event::WorkloadQuery { .. } => "WorkloadQuery",
            Event::RegistrySnapshot { .. } => "RegistrySnapshot",
            Event::RegistryFailed { .. } => "RegistryFailed",
            Event::WorkloadReport { .. } => "WorkloadReport",
            Event::PeerUnreachable { .. } => "PeerUnreachable",
            Event::SetAccepting(_) => "SetAccepting",
            Event::SetMaxSessions(_) => "SetMaxSessions",
        }
    }
}

/// One output of an [`Instance`](super::Instance), for the driver to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Read the cluster's member rows; answer with [`Event::RegistrySnapshot`]
    /// or [`Event::RegistryFailed`] (silence times out after `registry_timeout`).
    QueryRegistry {
        /// Echo this in the answer.
        query_id: QueryId,
        /// The cluster whose members to read.
        cluster: String,
    },
    /// Send `query` to the peer; answer with [`Event::WorkloadReport`] or
    /// [`Event::PeerUnreachable`] (silence times out after `peer_timeout`).
    QueryPeer {
        /// The query's id (also inside `query`).
        query_id: QueryId,
        /// The peer.
        peer: InstanceId,
        /// Where it listens.
        endpoint: Endpoint,
        /// The message to send.
        query: WorkloadQuery,
    },
    /// Send `message` on connection `conn`.
    Reply {
        /// The connection the request came on.
        conn: ConnectionId,
        /// A handshake reply, session reply or workload report.
        message: Message,
    },
    /// Queued right after the [`Action::Reply`] that accepts a session on
    /// `conn`: once that reply is written, the connection belongs to the
    /// application (SPEC 3.6) and no more protocol frames are read from it.
    SessionOpened {
        /// The connection that now carries the session.
        conn: ConnectionId,
        /// The session's id.
        session_id: SessionId,
    },
    /// Upsert this row into the registry with the current time.
    PublishHeartbeat(Heartbeat),
}

/// Counters of what the instance has done, for operators and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct InstanceStats {
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
    /// Of those, queries a bounded round sent in place of an asked member
    /// found unreachable.
    pub replacement_queries: u64,
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
    /// Reservations counted by herd control.
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
    /// Ranked replies sent.
    pub ranked_replies: u64,
    /// Sessions admitted.
    pub sessions_accepted: u64,
    /// Session requests rejected (every reason).
    pub sessions_rejected: u64,
    /// Session requests on a connection that already holds a session.
    pub rejected_already_in_session: u64,
    /// Session requests the driver's admission policy refused
    /// ([`Event::SessionDenied`]): the application's hook said no or did
    /// not answer in time, or the source address was at its session cap.
    pub rejected_by_policy: u64,
    /// Sessions ended.
    pub sessions_ended: u64,
    /// Session ends for unknown or already ended sessions.
    pub ignored_session_ends: u64,
    /// Heartbeats published.
    pub heartbeats: u64,
    /// Workload queries from peers answered.
    pub workload_queries_answered: u64,
    /// Calls whose `now` was earlier than one already seen (time is clamped,
    /// as in the Connector).
    pub clamped: u64,
}
