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
