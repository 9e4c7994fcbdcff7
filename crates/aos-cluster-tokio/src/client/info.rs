use std::time::Duration;

use aos_cluster::client::AttemptRecord;
use aos_cluster::wire::SessionId;
use aos_cluster::{Endpoint, InstanceId};

/// What is known about an open session: who admitted it, how it was found.
/// Both clients' sessions expose it, and the same accessors directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub(crate) instance: Option<InstanceId>,
    pub(crate) endpoint: Endpoint,
    pub(crate) session_id: SessionId,
    pub(crate) time_to_session: Duration,
    pub(crate) attempts: Vec<AttemptRecord>,
}

impl SessionInfo {
    /// The instance that admitted the session: from the ranked list, or in
    /// direct mode when the answering seed listed itself (else `None`).
    pub fn instance(&self) -> Option<InstanceId> {
        self.instance
    }

    /// Where the session is.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The instance's name for the session.
    pub fn session_id(&self) -> SessionId {
        self.session_id
    }

    /// From the start of `connect` to the accepting reply.
    pub fn time_to_session(&self) -> Duration {
        self.time_to_session
    }

    /// The Connector's attempt log: every handshake and session request of
    /// every round, in the order they started, the accepted one last.
    pub fn attempts(&self) -> &[AttemptRecord] {
        &self.attempts
    }
}

/// The accessors both clients' sessions have: each reads the session's
/// [`SessionInfo`] (field `info`) or its stream (field `stream`, of the
/// `SessionStream` type in scope where the macro is used).
macro_rules! session_accessors {
    () => {
        /// Whether the session runs over TLS.
        pub fn is_tls(&self) -> bool {
            self.stream.is_tls()
        }

        /// The stream and the session's details, for callers that want to own
        /// the stream (the session lasts as long as the stream).
        pub fn into_parts(self) -> (SessionStream, $crate::client::SessionInfo) {
            (self.stream, self.info)
        }

        /// Everything below in one value.
        pub fn info(&self) -> &$crate::client::SessionInfo {
            &self.info
        }

        /// The instance that admitted the session, when known.
        pub fn instance(&self) -> Option<aos_cluster::InstanceId> {
            self.info.instance()
        }

        /// Where the session is.
        pub fn endpoint(&self) -> &aos_cluster::Endpoint {
            self.info.endpoint()
        }

        /// The instance's name for the session.
        pub fn session_id(&self) -> aos_cluster::wire::SessionId {
            self.info.session_id()
        }

        /// From the start of `connect` to the accepting reply.
        pub fn time_to_session(&self) -> std::time::Duration {
            self.info.time_to_session()
        }

        /// The attempt log: every attempt of every round, the accepted one last.
        pub fn attempts(&self) -> &[aos_cluster::client::AttemptRecord] {
            self.info.attempts()
        }
    };
}
pub(crate) use session_accessors;
