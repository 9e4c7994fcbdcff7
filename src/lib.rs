//! # aos-cluster
//!
//! Sans-IO state machines for a cluster of application servers with no
//! dedicated load balancer (Microsoft Dynamics AX 2012 "AOS clusters").
//!
//! 1. **Ordered handshake** ([`client::Connector`]): a client walks its
//!    configured seed list in order and handshakes with the first instance
//!    that answers; a silent, refusing or garbled seed moves it to the next.
//! 2. **Ranking** ([`instance::Instance`]): that instance asks the registry
//!    (the database) and its active peers for their workload and replies with
//!    all active instances sorted by `connected / max_sessions`, least loaded
//!    first, compared exactly ([`workload::rank`]). Up to
//!    [`FanOut::full_up_to`](config::FanOut::full_up_to) peers it asks every
//!    one (the seed); in a larger cluster only the few best by their
//!    registry figures and those whose figures are too old
//!    ([`config::FanOut`]).
//! 3. **Sorted-list connection** ([`client::Connector`]): the client tries
//!    that list in order until one instance admits it, and keeps it for the
//!    whole session.
//!
//! Bytes travel through [`wire`] (a framed, incremental codec); the registry
//! rows are [`registry::MemberRecord`] and [`registry::Heartbeat`].
//!
//! ## The drive loop
//!
//! Both machines share one contract. The machines never touch a socket, a
//! clock or a thread: the driver owns all three.
//!
//! - `handle_event(event, now)`: one input (a reply, a failure, a request).
//! - `handle_timeout(now)`: time reached [`poll_timeout`](client::Connector::poll_timeout);
//!   extra calls are harmless.
//! - `poll_action()`: after **every** input, drain it to `None` and carry
//!   each action out (send a message, cancel an attempt, query the registry).
//! - `poll_timeout()`: the next absolute deadline to sleep until.
//!
//! Peer and network faults are events, not errors; [`UsageError`] is for
//! caller misuse only. Replies for unknown or finished ids are ignored.
//!
//! Below, a client and a standalone instance talk through in-memory
//! "sockets": the driver only moves values between them.
//!
//! ```
//! use std::time::Instant;
//! use aos_cluster::client::{self, Connector};
//! use aos_cluster::instance::{self, ConnectionId, Instance};
//! use aos_cluster::wire::Message;
//! use aos_cluster::{ClientConfig, Endpoint, InstanceConfig, InstanceId, Role};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let aos1: Endpoint = "AOS01@aos1:2712".parse()?;
//! let mut server_config = InstanceConfig::new(InstanceId(1), aos1.clone(), 10);
//! server_config.role = Role::Standalone;
//!
//! // The driver owns the clock; the machines only ever see `now`.
//! let now = Instant::now();
//! let mut server = Instance::new(server_config, now, 7)?;
//! let mut connector = Connector::new(ClientConfig::with_seeds(vec![aos1]), now, 42)?;
//!
//! let session = loop {
//!     // Carry out the client's actions: here, "send" means hand to the server.
//!     let Some(action) = connector.poll_action() else {
//!         panic!("the client went idle without a session");
//!     };
//!     let (attempt, message) = match action {
//!         client::Action::SendHandshake { attempt, message, .. }
//!         | client::Action::SendSessionRequest { attempt, message, .. } => (attempt, message),
//!         client::Action::Connected { endpoint, session_id, .. } => break (endpoint, session_id),
//!         client::Action::Close { .. } => continue, // nothing to close in memory
//!         other => panic!("unexpected {other:?}"),
//!     };
//!     // One in-memory "connection" per attempt; the message becomes an event
//!     // through the machine's one conversion.
//!     let conn = ConnectionId(attempt.request_id());
//!     server.handle_event(instance::Event::from_message(conn, message)?, now)?;
//!     // Carry out the server's actions: replies go back to the client.
//!     while let Some(action) = server.poll_action() {
//!         if let instance::Action::Reply { message, .. } = action {
//!             connector.handle_event(client::Event::from_message(attempt, message)?, now)?;
//!         }
//!     }
//! };
//! assert_eq!(session.0.to_string(), "AOS01@aos1:2712");
//! assert_eq!(server.connected(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! Real drivers (blocking std, tokio with a SQLite or PostgreSQL registry)
//! are in the repository's `examples/`; the deterministic cluster simulator
//! that drives these same machines is the workspace's `aos-cluster-sim`
//! crate (its `simulate` example compares the balancing strategies).
//!
//! ## Features
//!
//! - `serde` (default): (de)serialization of configurations and registry rows.
//! - `arbitrary`: `Arbitrary` for messages, configurations and events.
//! - `test-support`: opens a few internals to the workspace's fuzz bodies
//!   and reference models (the `aos-cluster-fuzzing` crate); not part of the
//!   API.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod instance;
pub mod registry;
pub mod rng;
pub(crate) mod timer;
pub mod wire;
pub mod workload;

pub use client::{AttemptId, ConnectFailure, Connector};
pub use config::{ClientConfig, ConfigError, FanOut, InstanceConfig, RetryPolicy};
pub use endpoint::{Endpoint, EndpointError, DEFAULT_PORT};
pub use error::{UnexpectedMessage, UsageError};
pub use instance::{ConnectionId, Instance, InstanceStats};
pub use workload::{rank, Candidate, InstanceId, Role, Workload};
