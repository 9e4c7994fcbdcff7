//! # aos-cluster-tokio
//!
//! The runtime around the Sans-IO machines of [`aos_cluster`]: what a program
//! adds to connect to, and to serve, balanced sessions that carry its own
//! bytes.
//!
//! - [`registry`]: the cluster's member rows in a real database (SQLite
//!   embedded by default, PostgreSQL across machines), with incarnations.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod registry;

/// The driver's clock: the one place this crate reads it. The machines never
/// do; they get `now` as an argument.
pub fn now() -> std::time::Instant {
    #[allow(clippy::disallowed_methods)]
    tokio::time::Instant::now().into_std()
}
