//! The registry ("the database"): the cluster's members as stored.
//!
//! The embedder owns the real database. An [`Instance`](crate::instance) asks
//! for a snapshot through an action and receives it as an event, and hands out
//! [`Heartbeat`]s for the driver to write. Ages, not wall-clock times, cross
//! this boundary, so the machines stay clock-free: the driver computes
//! `heartbeat_age = now - heartbeat_at` when it reads the rows.

use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::workload::{InstanceId, Role, Workload};

/// One member row of a registry snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct MemberRecord {
    /// The member's id (the registry's key).
    pub id: InstanceId,
    /// Where clients and peers reach it.
    pub endpoint: Endpoint,
    /// Its role.
    pub role: Role,
    /// Whether it admits new sessions.
    pub accepting: bool,
    /// Its figures as of its last heartbeat.
    pub workload: Workload,
    /// How old its last heartbeat was when the snapshot was read. A member is
    /// active while this is below `member_ttl`.
    pub heartbeat_age: Duration,
}

/// What an instance publishes every `heartbeat_interval`, for the driver to
/// upsert into the registry with the current time.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Heartbeat {
    /// The instance's id.
    pub id: InstanceId,
    /// Its endpoint.
    pub endpoint: Endpoint,
    /// Its cluster, if any.
    pub cluster: Option<String>,
    /// Its role.
    pub role: Role,
    /// Whether it admits new sessions.
    pub accepting: bool,
    /// Its live figures.
    pub workload: Workload,
}
