//! A registry without a database: the same rules as the real backends, for
//! tests and simulations of the runtime.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::InstanceId;
use tokio::time::Instant;

use super::{BoxFuture, Incarnation, Registry, RegistryError};

/// Member rows in this process's memory. Clones share the rows, as two
/// connections to one database would.
///
/// Its clock is tokio's, so a test with paused time (`tokio::time::pause`)
/// ages rows by advancing it. Calls never fail with
/// [`RegistryError::Backend`].
#[derive(Debug, Clone, Default)]
pub struct MemoryRegistry {
    rows: Arc<Mutex<BTreeMap<InstanceId, Row>>>,
}

#[derive(Debug, Clone)]
struct Row {
    heartbeat: Heartbeat,
    incarnation: Incarnation,
    /// When the row was last written, plus how much older than that it is
    /// made to look (see [`MemoryRegistry::age_row_for_tests`]); kept apart so
    /// no `Instant` arithmetic can underflow.
    written_at: Instant,
    backdated: Duration,
}

impl Row {
    fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.written_at).saturating_add(self.backdated)
    }
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> MemoryRegistry {
        MemoryRegistry::default()
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, BTreeMap<InstanceId, Row>> {
        // Every update below is a single map operation, so a panic elsewhere
        // cannot leave a row half-written.
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register_now(
        &self,
        heartbeat: &Heartbeat,
        incarnation: Incarnation,
        member_ttl: Duration,
    ) -> Result<(), RegistryError> {
        let now = Instant::now();
        let mut rows = self.rows();
        if let Some(row) = rows.get(&heartbeat.id) {
            let age = row.age(now);
            if row.incarnation != incarnation && age < member_ttl {
                return Err(RegistryError::IdInUse { id: heartbeat.id, age });
            }
        }
        let row =
            Row { heartbeat: heartbeat.clone(), incarnation, written_at: now, backdated: Duration::ZERO };
        rows.insert(heartbeat.id, row);
        Ok(())
    }

    fn heartbeat_now(&self, heartbeat: &Heartbeat, incarnation: Incarnation) -> Result<(), RegistryError> {
        match self.rows().get_mut(&heartbeat.id) {
            Some(row) if row.incarnation == incarnation => {
                row.heartbeat = heartbeat.clone();
                row.written_at = Instant::now();
                row.backdated = Duration::ZERO;
                Ok(())
            }
            _ => Err(RegistryError::Superseded { id: heartbeat.id }),
        }
    }

    fn snapshot_now(&self, cluster: Option<&str>, purge_after: Duration) -> Vec<MemberRecord> {
        let now = Instant::now();
        let mut rows = self.rows();
        rows.retain(|_, row| row.heartbeat.cluster.as_deref() != cluster || row.age(now) <= purge_after);
        rows.values()
            .filter(|row| row.heartbeat.cluster.as_deref() == cluster)
            .map(|row| MemberRecord {
                id: row.heartbeat.id,
                endpoint: row.heartbeat.endpoint.clone(),
                role: row.heartbeat.role,
                accepting: row.heartbeat.accepting,
                workload: row.heartbeat.workload,
                heartbeat_age: row.age(now),
            })
            .collect()
    }

    fn remove_now(&self, id: InstanceId, incarnation: Incarnation) -> bool {
        let mut rows = self.rows();
        if rows.get(&id).is_some_and(|row| row.incarnation == incarnation) {
            rows.remove(&id);
            true
        } else {
            false
        }
    }

    /// Makes the row of `id` look `age` old, as if its owner had stopped
    /// heartbeating then. For tests that need an old row without waiting.
    /// Returns whether the row exists.
    #[doc(hidden)]
    pub async fn age_row_for_tests(&self, id: InstanceId, age: Duration) -> Result<bool, RegistryError> {
        Ok(self
            .rows()
            .get_mut(&id)
            .map(|row| {
                row.written_at = Instant::now();
                row.backdated = age;
            })
            .is_some())
    }
}

impl Registry for MemoryRegistry {
    fn register<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        member_ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move { self.register_now(heartbeat, incarnation, member_ttl) })
    }

    fn heartbeat<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move { self.heartbeat_now(heartbeat, incarnation) })
    }

    fn snapshot<'a>(
        &'a self,
        cluster: Option<&'a str>,
        purge_after: Duration,
    ) -> BoxFuture<'a, Result<Vec<MemberRecord>, RegistryError>> {
        Box::pin(async move { Ok(self.snapshot_now(cluster, purge_after)) })
    }

    fn remove<'a>(
        &'a self,
        id: InstanceId,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<bool, RegistryError>> {
        Box::pin(async move { Ok(self.remove_now(id, incarnation)) })
    }
}
