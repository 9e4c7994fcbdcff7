//! The registry ("the database"): member rows, read and written by instances.
//!
//! SPEC "Membership": a member row carries an [`Incarnation`], random per
//! process start. [`Registry::register`] refuses while a live row with the
//! same id has another incarnation; heartbeats and removal touch only the row
//! of their own incarnation; rows older than `10 x member_ttl` are purged.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::InstanceId;

/// A boxed, sendable future: the registry trait stays object safe
/// (`Arc<dyn Registry>`) without an extra dependency.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One process start's name for its registry row: random, so a second
/// process with the same id is told apart from this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Incarnation(pub u64);

/// A registry backend. Every call has its own deadline inside the backend and
/// never panics.
pub trait Registry: Send + Sync + 'static {
    /// Claims the row for `heartbeat.id` under `incarnation` and writes it.
    /// Fails with [`RegistryError::IdInUse`] while a row with that id has
    /// another incarnation and is younger than `member_ttl`.
    fn register<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        member_ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// Updates this incarnation's row. [`RegistryError::Superseded`] when the
    /// row now belongs to another incarnation (or is gone): the caller must
    /// not overwrite it.
    fn heartbeat<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// The cluster's member rows (`None`: rows of no cluster), with ages by the
    /// database's clock. Purges rows older than `purge_after` first.
    fn snapshot<'a>(
        &'a self,
        cluster: Option<&'a str>,
        purge_after: Duration,
    ) -> BoxFuture<'a, Result<Vec<MemberRecord>, RegistryError>>;

    /// Removes this incarnation's row (graceful stop); `Ok(false)` when the row
    /// is not ours (another incarnation took it, or it is gone).
    fn remove<'a>(
        &'a self,
        id: InstanceId,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<bool, RegistryError>>;
}

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Another live process holds this id.
    #[error("instance id {id} is in use by another live process (its heartbeat is {age:?} old); refusing to start")]
    IdInUse {
        /// The id.
        id: InstanceId,
        /// How old the other process's heartbeat is.
        age: Duration,
    },
    /// Our row was taken over by another incarnation or removed.
    #[error("the registry row of instance {id} no longer belongs to this process")]
    Superseded {
        /// The id.
        id: InstanceId,
    },
    /// Anything else (unreachable, timeout, corrupt, replaced file...).
    #[error("registry {url}: {message}")]
    Backend {
        /// The registry's URL, password hidden.
        url: String,
        /// What went wrong.
        message: String,
    },
}
