use aos_cluster::client::AttemptRecord;
use aos_cluster::ConfigError;

/// Why no session was opened, by the async or the blocking client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configuration is invalid: nothing was attempted.
    #[error("client configuration: {0}")]
    Config(#[from] ConfigError),
    /// Every round ended without a session. Displays every attempt and its
    /// outcome, one per line.
    #[error(transparent)]
    Failed(#[from] aos_cluster::ConnectFailure),
}

impl ConnectError {
    /// Every attempt made, in the order they started (empty for a
    /// configuration error).
    pub fn attempts(&self) -> &[AttemptRecord] {
        match self {
            ConnectError::Config(_) => &[],
            ConnectError::Failed(error) => &error.attempts,
        }
    }
}
