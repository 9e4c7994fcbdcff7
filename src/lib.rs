//! # aos-cluster
//!
//! Sans-IO state machines for a cluster of application servers with no
//! dedicated load balancer (Microsoft Dynamics AX 2012 "AOS clusters").
//!
//! 1. **Ordered handshake** ([`client`]): a client walks its configured seed
//!    list in order and handshakes with the first instance that answers.
//! 2. **Ranking** ([`instance`]): that instance asks the registry (the
//!    database) and every active peer for its workload and replies with all
//!    active instances sorted by `connected / max_sessions`, least loaded first
//!    ([`workload::rank`]).
//! 3. **Sorted-list connection** ([`client`]): the client tries that list in
//!    order until one instance admits it, and keeps it for the whole session.
//!
//! The machines never touch a socket, a clock or a thread. A driver feeds
//! them events with the current time and carries out the actions they emit.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod endpoint;
pub mod error;
#[cfg(any(fuzzing, feature = "fuzzing"))]
pub mod fuzzing;
pub mod instance;
pub mod registry;
pub mod rng;
pub(crate) mod timer;
pub mod wire;
pub mod workload;

pub use client::{Action, AttemptId, ConnectError, Connector, Event, State};
pub use config::{ClientConfig, ConfigError, InstanceConfig, RetryPolicy};
pub use endpoint::{Endpoint, EndpointError, DEFAULT_PORT};
pub use error::UsageError;
pub use instance::{Action as InstanceAction, ConnectionId, Event as InstanceEvent, Instance, InstanceStats};
pub use workload::{rank, Candidate, InstanceId, Role, Workload};
