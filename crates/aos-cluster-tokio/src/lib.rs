//! # aos-cluster-tokio
//!
//! The runtime around the Sans-IO machines of [`aos_cluster`]: what a program
//! adds to connect to, and to serve, balanced sessions that carry its own
//! bytes.
//!
//! - [`Client`]: the async client; [`Client::connect`] returns a
//!   [`Session`], the application's byte stream to the instance that
//!   admitted it.
//! - [`blocking`]: the same client on `std::net`, no async runtime
//!   ([`blocking::Client`]).
//! - [`registry`]: the cluster's member rows in a real database (SQLite
//!   embedded by default, PostgreSQL across machines), with incarnations.
//! - [`server`]: the instance server; [`Server::accept`] yields each admitted
//!   session's byte stream.
//! - [`frames`]: framed protocol I/O with deadlines, shared by client and server.
//! - [`tls`] (feature `tls`): clients verify every instance, instances use
//!   mutual TLS between themselves; [`client::AllowList`] limits where a
//!   ranked list may send a client, with or without TLS.
//! - [`tower`](mod@tower) (feature `tower`): hyper, tonic and any tower user
//!   over balanced sessions, with no glue: a connector whose every connection
//!   is a balanced session, and [`Server::incoming`] for servers that take a
//!   stream (feature `tonic` adds tonic's `Connected` to [`AppStream`]).
//! - `admin` and `config_file` (feature `admin`, on by default): the
//!   `aos-instance` binary's configuration file, Prometheus metrics and admin
//!   endpoint.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "admin")]
pub mod admin;
#[cfg(feature = "client")]
pub mod blocking;
#[cfg(feature = "client")]
pub mod client;
#[cfg(any(feature = "client", feature = "tls"))]
#[cfg_attr(not(feature = "client"), allow(dead_code))]
mod client_frames;
#[cfg(feature = "admin")]
pub mod config_file;
pub mod frames;
#[cfg(feature = "server")]
pub mod registry;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "tower")]
pub mod tower;
#[cfg_attr(not(all(feature = "client", feature = "server")), allow(dead_code))]
mod transport;

pub use aos_cluster;
pub use aos_cluster::client::{AttemptOutcome, AttemptRecord, Phase};
pub use aos_cluster::wire::SessionId;
pub use aos_cluster::{
    ClientConfig, ConfigError, Endpoint, EndpointError, FanOut, InstanceConfig, InstanceId, RetryPolicy,
    Role, Workload, DEFAULT_PORT,
};

#[cfg(all(feature = "tower", feature = "server"))]
pub use server::Incoming;
#[cfg(feature = "server")]
pub use server::{
    AcceptInfo, Accepted, AppStream, RankObserver, Server, ServerConfig, ServerError, ServerHandle,
    ServerOptions, ServerStats,
};

#[cfg(feature = "client")]
pub use client::{AllowList, Client, ClientOptions, ConnectError, Session, SessionInfo};

/// The driver's clock: the one place this crate reads it. The machines never
/// do; they get `now` as an argument.
pub fn now() -> std::time::Instant {
    #[allow(clippy::disallowed_methods)]
    tokio::time::Instant::now().into_std()
}
