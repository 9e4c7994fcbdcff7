//! The Connector's vocabulary: its inputs ([`Event`]), outputs ([`Action`]),
//! state, session and counters.

use std::time::Instant;

use super::log::{AttemptId, ConnectFailure};
use crate::endpoint::Endpoint;
use crate::error::UnexpectedMessage;
use crate::wire::{HandshakeReply, Message, SessionId, SessionReply};
use crate::workload::InstanceId;

/// What the Connector is doing. Deliberately exhaustive: a driver's
/// decisions depend on knowing every state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Phase 1: handshakes to seeds.
    Handshaking,
    /// Phase 3: session requests down the ranked list.
    Connecting,
    /// Between rounds, waiting out the backoff.
    Backoff,
    /// A session is open.
    Connected,
    /// The session ended or was lost; `Connector::reconnect` starts over.
    Closed,
    /// Gave up; `Connector::reconnect` starts over.
    Failed,
}

impl State {
    /// The state's name, as used in [`UsageError`](crate::UsageError).
    pub(crate) const fn name(self) -> &'static str {
        match self {
            State::Handshaking => "handshaking",
            State::Connecting => "connecting",
            State::Backoff => "backoff",
            State::Connected => "connected",
            State::Closed => "closed",
            State::Failed => "failed",
        }
    }
}

/// The open session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Opened {
    /// The session attempt that was accepted (its transport is the session).
    pub attempt: AttemptId,
    /// The instance's endpoint.
    pub endpoint: Endpoint,
    /// The instance's id: from the ranked list, or in direct mode from the
    /// answering seed's own entry when its reply lists it (else `None`).
    pub instance: Option<InstanceId>,
    /// The instance's name for the session.
    pub session_id: SessionId,
    /// The round that opened it, from 0.
    pub round: u32,
}

/// Counters for what the Connector did and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Rounds started (across reconnects).
    pub rounds: u64,
    /// Handshakes sent.
    pub handshakes: u64,
    /// Session requests sent.
    pub session_requests: u64,
    /// Events for unknown, cancelled or finished attempts.
    pub ignored: u64,
    /// Calls whose `now` was earlier than one already seen.
    pub clamped: u64,
}

/// An input from the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A seed answered a handshake.
    HandshakeReply {
        /// The attempt the reply came for.
        attempt: AttemptId,
        /// The decoded reply.
        reply: HandshakeReply,
    },
    /// An instance answered a session request.
    SessionReply {
        /// The attempt the reply came for.
        attempt: AttemptId,
        /// The decoded reply.
        reply: SessionReply,
    },
    /// The attempt's transport failed (refused, reset, undecodable bytes...).
    TransportFailed {
        /// The attempt.
        attempt: AttemptId,
        /// The driver's description, kept in the attempt log.
        reason: String,
    },
    /// The open session ended normally.
    SessionEnded,
    /// The open session was lost.
    SessionLost {
        /// The driver's description.
        reason: String,
    },
}

impl Event {
    /// The event for a message read back on `attempt`'s transport: the one
    /// place a decoded [`Message`] becomes a client event. Only replies
    /// belong there; anything else is an [`UnexpectedMessage`], which the
    /// driver reports as [`Event::TransportFailed`].
    pub fn from_message(attempt: AttemptId, message: Message) -> Result<Event, UnexpectedMessage> {
        match message {
            Message::HandshakeReply(reply) => Ok(Event::HandshakeReply { attempt, reply }),
            Message::SessionReply(reply) => Ok(Event::SessionReply { attempt, reply }),
            other => Err(UnexpectedMessage::new(&other, "an attempt's transport")),
        }
    }

    /// The event's name, as used in [`UsageError`](crate::UsageError).
    pub(crate) const fn name(&self) -> &'static str {
        match self {
            Event::HandshakeReply { .. } => "handshake reply",
            Event::SessionReply { .. } => "session reply",
            Event::TransportFailed { .. } => "transport failed",
            Event::SessionEnded => "session ended",
            Event::SessionLost { .. } => "session lost",
        }
    }
}

/// An output for the driver to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Open a transport to the seed and send it `message` (a
    /// [`Message::HandshakeRequest`]).
    SendHandshake {
        /// The attempt, to report its reply or failure under.
        attempt: AttemptId,
        /// The seed's index in the configured seed list.
        seed_index: usize,
        /// Where to send it.
        endpoint: Endpoint,
        /// The request, ready to encode.
        message: Message,
        /// When the machine times the attempt out: a driver that must bound
        /// its own blocking I/O stops waiting then.
        deadline: Instant,
    },
    /// Open a transport to the ranked entry and send it `message` (a
    /// [`Message::SessionRequest`]).
    SendSessionRequest {
        /// The attempt, to report its reply or failure under.
        attempt: AttemptId,
        /// The entry's rank in the ranked list (0 in direct mode).
        rank: usize,
        /// Where to send it.
        endpoint: Endpoint,
        /// The request, ready to encode.
        message: Message,
        /// When the machine times the attempt out (see
        /// [`Action::SendHandshake`]).
        deadline: Instant,
    },
    /// The attempt is over (whatever its outcome) and its transport is no
    /// longer needed: close it; any late reply is ignored. Emitted exactly
    /// once for every attempt that ends, except the one that became the
    /// session (see the module docs on transports).
    Close {
        /// The attempt.
        attempt: AttemptId,
    },
    /// A session is open, and stays open until an end or loss event. The
    /// attempt's transport is the session.
    Connected {
        /// The accepted session attempt.
        attempt: AttemptId,
        /// The instance's endpoint.
        endpoint: Endpoint,
        /// The instance's id, when known (see [`Opened::instance`]).
        instance: Option<InstanceId>,
        /// The instance's name for the session.
        session_id: SessionId,
    },
    /// A round ended without a session; the next starts at `retry_at`.
    RoundFailed {
        /// The round that failed, from 0.
        round: u32,
        /// When the next round starts.
        retry_at: Instant,
    },
    /// The Connector gave up.
    Failed(ConnectFailure),
    /// The session ended (`lost: None`) or was lost.
    SessionClosed {
        /// The instance's endpoint.
        endpoint: Endpoint,
        /// Why it was lost, if it was.
        lost: Option<String>,
    },
}
