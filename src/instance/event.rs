//! The Instance's vocabulary: its inputs ([`Event`]) and outputs ([`Action`]).

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

/// One input to an [`Instance`](super::Instance): what clients, peers and
/// the registry say. What the embedder decides (drain, max sessions,
/// saturation) is a command method on the instance instead.
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
