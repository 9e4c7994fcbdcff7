//! Why the server could not start, or a command failed.

use std::net::SocketAddr;

use aos_cluster::UsageError;

use crate::registry::RegistryError;

/// Why the server could not start, or a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is invalid (every problem listed).
    #[error("invalid server configuration: {0}")]
    Config(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Registration failed; `IdInUse` means another live process has this id.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Registration did not answer within `registry_timeout`.
    #[error("the registry did not answer the registration in time")]
    RegistryTimeout,
    /// The server has stopped.
    #[error("the server has stopped")]
    Stopped,
    /// A graceful stop is draining the server: it does not admit again.
    #[error("the server is stopping (draining); it does not admit new sessions again")]
    Stopping,
    /// The machine refused a command (for example `max_sessions` 0).
    #[error(transparent)]
    InvalidArgument(#[from] UsageError),
}
