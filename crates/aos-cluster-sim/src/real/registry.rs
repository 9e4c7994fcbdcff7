//! A registry wrapper that counts what a real cluster asks of its registry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::InstanceId;
use aos_cluster_tokio::registry::{BoxFuture, Incarnation, MemberTiming, Registry, RegistryError};

/// Calls made to the registry, by kind, over every instance of a run.
#[derive(Debug, Default)]
pub struct RegistryCalls {
    /// `register` and `take_over` calls (one per start, more when a row is
    /// claimed again).
    pub register: AtomicU64,
    /// `heartbeat` calls.
    pub heartbeat: AtomicU64,
    /// `snapshot` calls (a full read in SQLite, a read of what changed in
    /// PostgreSQL, no round trip in etcd).
    pub snapshot: AtomicU64,
    /// `purge` calls (one per instance and `member_ttl`).
    pub purge: AtomicU64,
    /// `remove` calls.
    pub remove: AtomicU64,
    /// Calls that failed.
    pub failed: AtomicU64,
}

impl RegistryCalls {
    /// Every call so far.
    pub fn total(&self) -> u64 {
        [&self.register, &self.heartbeat, &self.snapshot, &self.purge, &self.remove]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// One instance's registry handle, counting into the run's shared tally.
pub(super) struct Counted {
    pub(super) inner: Arc<dyn Registry>,
    pub(super) calls: Arc<RegistryCalls>,
}

impl Counted {
    fn count<T>(&self, kind: &AtomicU64, result: &Result<T, RegistryError>) {
        kind.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            self.calls.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Registry for Counted {
    fn register<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        member_ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let result = self.inner.register(heartbeat, incarnation, member_ttl).await;
            self.count(&self.calls.register, &result);
            result
        })
    }

    fn heartbeat<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let result = self.inner.heartbeat(heartbeat, incarnation).await;
            self.count(&self.calls.heartbeat, &result);
            result
        })
    }

    fn take_over<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        previous: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let result = self.inner.take_over(heartbeat, incarnation, previous).await;
            self.count(&self.calls.register, &result);
            result
        })
    }

    fn snapshot<'a>(
        &'a self,
        cluster: Option<&'a str>,
        timing: MemberTiming,
    ) -> BoxFuture<'a, Result<Vec<MemberRecord>, RegistryError>> {
        Box::pin(async move {
            let result = self.inner.snapshot(cluster, timing).await;
            self.count(&self.calls.snapshot, &result);
            result
        })
    }

    fn purge<'a>(
        &'a self,
        cluster: Option<&'a str>,
        older_than: Duration,
    ) -> BoxFuture<'a, Result<u64, RegistryError>> {
        Box::pin(async move {
            let result = self.inner.purge(cluster, older_than).await;
            self.count(&self.calls.purge, &result);
            result
        })
    }

    fn malformed_rows(&self) -> u64 {
        self.inner.malformed_rows()
    }

    fn remove<'a>(
        &'a self,
        id: InstanceId,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<bool, RegistryError>> {
        Box::pin(async move {
            let result = self.inner.remove(id, incarnation).await;
            self.count(&self.calls.remove, &result);
            result
        })
    }
}
