//! A registry without a database: the same rules as the real backends, for
//! tests and simulations of the runtime.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::InstanceId;
use tokio::time::Instant;

use super::{BoxFuture, Incarnation, MemberTiming, Registry, RegistryError};

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
    /// made to look (see [`MemoryRegistry::set_heartbeat_age`]); kept apart so
    /// no `Instant` arithmetic can underflow.
    written_at: Instant,
    backdated: Duration,
}

impl Row {
    fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.written_at).saturating_add(self.backdated)
    }
}

impl Row {
    fn in_use(&self, age: Duration) -> RegistryError {
        RegistryError::IdInUse {
            id: self.heartbeat.id,
            age,
            holder: self.incarnation,
            endpoint: self.heartbeat.endpoint.to_string(),
        }
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
                return Err(row.in_use(age));
            }
        }
        let row =
            Row { heartbeat: heartbeat.clone(), incarnation, written_at: now, backdated: Duration::ZERO };
        rows.insert(heartbeat.id, row);
        Ok(())
    }

    fn take_over_now(
        &self,
        heartbeat: &Heartbeat,
        incarnation: Incarnation,
        previous: Incarnation,
    ) -> Result<(), RegistryError> {
        let now = Instant::now();
        let mut rows = self.rows();
        if let Some(row) = rows.get(&heartbeat.id) {
            if row.incarnation != previous && row.incarnation != incarnation {
                return Err(row.in_use(row.age(now)));
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

    fn snapshot_now(&self, cluster: Option<&str>, member_ttl: Duration) -> Vec<MemberRecord> {
        let now = Instant::now();
        let kept = crate::registry::timing::purge_horizon(member_ttl);
        self.rows()
            .values()
            .filter(|row| row.heartbeat.cluster.as_deref() == cluster && row.age(now) <= kept)
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

    fn purge_now(&self, cluster: Option<&str>, older_than: Duration) -> u64 {
        let now = Instant::now();
        let mut rows = self.rows();
        let before = rows.len();
        rows.retain(|_, row| row.heartbeat.cluster.as_deref() != cluster || row.age(now) <= older_than);
        (before - rows.len()) as u64
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

    /// The row of `id` as stored: its last heartbeat and its owner's
    /// incarnation.
    pub fn row(&self, id: InstanceId) -> Option<(Heartbeat, Incarnation)> {
        self.rows().get(&id).map(|row| (row.heartbeat.clone(), row.incarnation))
    }

    /// Makes the row of `id` look `age` old, as if its owner had stopped
    /// heartbeating then: a crash, or a row left by one, without waiting.
    /// Whether the row exists.
    pub fn set_heartbeat_age(&self, id: InstanceId, age: Duration) -> bool {
        self.rows()
            .get_mut(&id)
            .map(|row| {
                row.written_at = Instant::now();
                row.backdated = age;
            })
            .is_some()
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

    fn take_over<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        previous: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move { self.take_over_now(heartbeat, incarnation, previous) })
    }

    fn snapshot<'a>(
        &'a self,
        cluster: Option<&'a str>,
        timing: MemberTiming,
    ) -> BoxFuture<'a, Result<Vec<MemberRecord>, RegistryError>> {
        Box::pin(async move { Ok(self.snapshot_now(cluster, timing.member_ttl)) })
    }

    fn purge<'a>(
        &'a self,
        cluster: Option<&'a str>,
        older_than: Duration,
    ) -> BoxFuture<'a, Result<u64, RegistryError>> {
        Box::pin(async move { Ok(self.purge_now(cluster, older_than)) })
    }

    /// Rows here are written only through the trait, so none is malformed.
    fn malformed_rows(&self) -> u64 {
        0
    }

    fn remove<'a>(
        &'a self,
        id: InstanceId,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<bool, RegistryError>> {
        Box::pin(async move { Ok(self.remove_now(id, incarnation)) })
    }
}
