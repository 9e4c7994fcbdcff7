//! The caller-misuse error shared by both machines.
//!
//! Peer and network faults are events, never errors; `UsageError` says the
//! driver did something the machine cannot honour. The machine is unchanged
//! by a call that returns it.

/// The driver misused a machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// The event does not fit the machine's current state.
    #[error("event `{event}` does not fit state `{state}`")]
    OutOfState {
        /// The event's name.
        event: &'static str,
        /// The state's name.
        state: &'static str,
    },
    /// The event carries a value the machine cannot take.
    #[error("event `{event}`: {reason}")]
    InvalidArgument {
        /// The event's name.
        event: &'static str,
        /// What is wrong with its value.
        reason: &'static str,
    },
}

/// A decoded message arrived where it does not belong (a request on a
/// client's attempt, a reply on an instance's inbound connection...): the
/// peer broke the protocol, and the driver closes that transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected {message} on {place}")]
#[non_exhaustive]
pub struct UnexpectedMessage {
    /// The message's type name, such as `WorkloadReport`.
    pub message: &'static str,
    /// Where it arrived.
    pub place: &'static str,
}

impl UnexpectedMessage {
    pub(crate) fn new(message: &crate::wire::Message, place: &'static str) -> Self {
        use crate::wire::Message;
        let message = match message {
            Message::HandshakeRequest(_) => "HandshakeRequest",
            Message::HandshakeReply(_) => "HandshakeReply",
            Message::SessionRequest(_) => "SessionRequest",
            Message::SessionReply(_) => "SessionReply",
            Message::WorkloadQuery(_) => "WorkloadQuery",
            Message::WorkloadReport(_) => "WorkloadReport",
        };
        UnexpectedMessage { message, place }
    }
}
