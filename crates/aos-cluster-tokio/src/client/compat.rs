//! TEMPORARY until the core lands (API-CONTRACT.md, issue 9): the two calls
//! the drivers need from the new Connector API, written against today's core.
//! After `git merge main` this file goes: drivers call
//! `client::Event::from_message` and match `Action::Close { attempt }`.

use aos_cluster::client::{Action, AttemptId, Event};
use aos_cluster::wire::{Message, SessionOutcome};

/// `client::Event::from_message(attempt, message)`, the error as the reason
/// of a failed transport.
// TEMPORARY until the core lands
pub(crate) fn event_from_message(attempt: AttemptId, message: Message) -> Result<Event, String> {
    match message {
        Message::HandshakeReply(reply) => Ok(Event::HandshakeReply { attempt, reply }),
        Message::SessionReply(reply) => Ok(Event::SessionReply { attempt, reply }),
        other => Err(format!("unexpected {} in reply", kind(&other))),
    }
}

fn kind(message: &Message) -> &'static str {
    match message {
        Message::HandshakeRequest(_) => "handshake request",
        Message::HandshakeReply(_) => "handshake reply",
        Message::SessionRequest(_) => "session request",
        Message::SessionReply(_) => "session reply",
        Message::WorkloadQuery(_) => "workload query",
        Message::WorkloadReport(_) => "workload report",
    }
}

/// The attempt whose transport an action closes: `Action::Close { attempt }`
/// in the contract, `Action::Cancel { attempt }` today.
// TEMPORARY until the core lands
pub(crate) fn closed_by(action: &Action) -> Option<AttemptId> {
    match action {
        Action::Cancel { attempt } => Some(*attempt),
        _ => None,
    }
}

/// Today's core emits no close for an attempt whose reply or failure was
/// delivered; the contract's core emits `Close` for it, so this returns
/// `None` once the core lands (and disappears with this file).
// TEMPORARY until the core lands
pub(crate) fn closed_by_delivery(event: &Event) -> Option<AttemptId> {
    match event {
        Event::SessionReply { reply, .. } if matches!(reply.outcome, SessionOutcome::Accepted { .. }) => None,
        Event::HandshakeReply { attempt, .. }
        | Event::SessionReply { attempt, .. }
        | Event::TransportFailed { attempt, .. } => Some(*attempt),
        _ => None,
    }
}
