//! When the replica follows etcd: from the registry's open, and then only
//! while snapshots are asked for.
//!
//! Every member write reaches every watch, so a watch costs its process
//! (woken for each event) and etcd (one message per event and watch) in
//! proportion to the cluster's writes. Only an instance that balances reads
//! snapshots; most instances of a cluster only serve (clients handshake with
//! the first of the seeds they are configured with). So a replica that no
//! snapshot uses stops following, and a serving-only instance soon watches
//! nothing, as a SQL member that does not balance reads nothing.

use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Shared;

/// How long a replica follows from the registry's open, or from a
/// [`super::EtcdRegistry::sync`], before any snapshot has told it the
/// cluster's `member_ttl`: a registry follows as soon as it is opened, and
/// a serving-only instance stops watching within seconds of its start.
const BEFORE_FIRST_SNAPSHOT: Duration = Duration::from_secs(2);

/// The follower task and what keeps it running.
pub(super) struct Follower {
    /// The task following etcd, while one does.
    task: Option<JoinHandle<()>>,
    /// When a snapshot (or a sync) last wanted the replica.
    wanted_at: Instant,
    /// How long the replica keeps following unused: the `member_ttl` of the
    /// last snapshot. Figures that old are of no use to a ranking, so a
    /// replica kept longer would only pay for events nobody reads.
    keep_for: Duration,
}

impl Follower {
    pub(super) fn new() -> Follower {
        Follower { task: None, wanted_at: Instant::now(), keep_for: BEFORE_FIRST_SNAPSHOT }
    }

    /// The follower task, taken (to abort it when the registry closes).
    pub(super) fn take_task(&mut self) -> Option<JoinHandle<()>> {
        self.task.take()
    }

    /// Until when the replica follows if no snapshot wants it again.
    fn wanted_until(&self) -> Instant {
        self.wanted_at + self.keep_for
    }
}

impl Shared {
    pub(super) fn follower(&self) -> MutexGuard<'_, Follower> {
        self.follower.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A snapshot (or a sync) wants the replica now: starts following etcd
    /// unless a follower runs. `keep_for` (the snapshot's `member_ttl`) is
    /// how long it keeps following unused.
    pub(super) fn want_replica(self: &Arc<Self>, keep_for: Option<Duration>) {
        let mut follower = self.follower();
        follower.wanted_at = Instant::now();
        if let Some(keep_for) = keep_for {
            follower.keep_for = keep_for;
        }
        if follower.task.is_none() {
            follower.task = Some(tokio::spawn(Arc::clone(self).follow()));
        }
    }

    /// Until when the replica follows if no snapshot wants it again.
    pub(super) fn wanted_until(&self) -> Instant {
        self.follower().wanted_until()
    }

    /// Whether the follower should stop, no snapshot having wanted the
    /// replica for its `keep_for`. If so, the replica is emptied and marked
    /// not following under the same lock a snapshot takes to start a
    /// follower, so a snapshot asking meanwhile starts a new one that
    /// nothing of this one's touches; the caller must then return at once.
    pub(super) fn unwanted(&self) -> bool {
        let mut follower = self.follower();
        if Instant::now() < follower.wanted_until() {
            return false;
        }
        self.replica_state.send_replace(None);
        self.replica().clear();
        // Dropping the handle detaches this very task, which is returning.
        follower.task = None;
        true
    }
}
