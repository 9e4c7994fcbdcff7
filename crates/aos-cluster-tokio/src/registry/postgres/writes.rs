//! The writes: claims, heartbeats, removal and the purge, one statement
//! each, and the [`Registry`] impl that issues them.

use std::sync::PoisonError;
use std::time::Duration;

use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::InstanceId;
use tokio_postgres::types::{ToSql, Type};

use super::schema::PURGING;
use super::{sql_seconds, PostgresRegistry, AGE_MICROS, TABLE};
use crate::registry::{role_text, BoxFuture, Incarnation, MemberTiming, Registry, RegistryError};

/// The columns a heartbeat writes, bound as `$1..$8` by [`row_params`].
const ROW_COLUMNS: &str = "id, incarnation, endpoint, cluster, role, accepting, max_sessions, connected";

/// A heartbeat's row as `$1..$8` (see [`ROW_COLUMNS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RowValues {
    id: i64,
    incarnation: i64,
    endpoint: String,
    cluster: Option<String>,
    role: &'static str,
    accepting: bool,
    max_sessions: i64,
    connected: i64,
}

impl RowValues {
    fn new(hb: &Heartbeat, incarnation: Incarnation) -> RowValues {
        RowValues {
            id: i64::from(hb.id.0),
            incarnation: incarnation.to_i64(),
            endpoint: hb.endpoint.to_string(),
            cluster: hb.cluster.clone(),
            role: role_text(hb.role),
            accepting: hb.accepting,
            max_sessions: i64::from(hb.workload.max_sessions),
            connected: i64::from(hb.workload.connected),
        }
    }

    /// Every statement here goes out with its parameters' types, unnamed, in
    /// one round trip (`query_typed`): nothing prepared lives on a
    /// connection, which PgBouncer in transaction mode may hand to another
    /// client between two statements.
    fn params(&self) -> Vec<(&(dyn ToSql + Sync), Type)> {
        vec![
            (&self.id, Type::INT8),
            (&self.incarnation, Type::INT8),
            (&self.endpoint, Type::TEXT),
            (&self.cluster, Type::TEXT),
            (&self.role, Type::TEXT),
            (&self.accepting, Type::BOOL),
            (&self.max_sessions, Type::INT8),
            (&self.connected, Type::INT8),
        ]
    }
}

/// Claims the row `$1..$8` when the stored one passes `{when}` (about `m`,
/// the stored row, and `EXCLUDED`, ours); then says whether it did, who
/// holds the row, and how many members of the cluster were on time. The
/// CTE's outer SELECT reads the table as it was when the statement began:
/// the row that refused the claim. A row committed by a racing claim after
/// that moment is not in that view (it comes back empty); the next try sees
/// it.
fn claim_statement(when: &str) -> String {
    format!(
        "WITH claim AS (
             INSERT INTO {TABLE} AS m ({ROW_COLUMNS}, heartbeat_at, removed)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), false)
             ON CONFLICT (id) DO UPDATE SET
                 incarnation = EXCLUDED.incarnation, endpoint = EXCLUDED.endpoint,
                 cluster = EXCLUDED.cluster, role = EXCLUDED.role,
                 accepting = EXCLUDED.accepting, max_sessions = EXCLUDED.max_sessions,
                 connected = EXCLUDED.connected, heartbeat_at = EXCLUDED.heartbeat_at,
                 removed = false
             WHERE m.removed OR m.incarnation = EXCLUDED.incarnation OR {when}
             RETURNING 1
         )
         SELECT (SELECT count(*) FROM claim), h.age, h.incarnation, h.endpoint,
                (SELECT count(*) FROM {TABLE} WHERE cluster IS NOT DISTINCT FROM $4 AND NOT late AND NOT removed)
         FROM (SELECT 1) one
         LEFT JOIN (SELECT {AGE_MICROS} AS age, incarnation, endpoint FROM {TABLE} WHERE id = $1) h ON true"
    )
}

impl PostgresRegistry {
    /// Whether a heartbeat of `values` may go unwritten: this handle wrote
    /// the very same row less than nine tenths of a quiet renewal ago (a
    /// tenth of slack, so the beat that falls due at the renewal writes even
    /// when its timer fires a little early; a later beat writes at the
    /// latest one interval after, so a row that beats on time is never older
    /// than [`MemberTiming::late_after`]). Its own row's figures, its
    /// incarnation and whether it is still there are what the database last
    /// said: a row taken over meanwhile shows as `Superseded` at the next
    /// write, at most a quiet renewal later, as etcd shows a revoked lease.
    fn quiet(&self, values: &RowValues) -> bool {
        let Some(timing) = self.beat_timing() else { return false };
        let every = timing.quiet_renewal().mul_f64(0.9);
        let written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        written.get(&values.id).is_some_and(|(last, at)| last == values && at.elapsed() < every)
    }

    /// How this handle's members beat: the `member_ttl` of the last
    /// register, with the default interval (the calls that write do not
    /// carry the interval).
    fn beat_timing(&self) -> Option<MemberTiming> {
        self.member_ttl.lock().unwrap_or_else(PoisonError::into_inner).map(MemberTiming::with_ttl)
    }

    /// Notes that the row `values` was just written.
    fn remember(&self, values: RowValues) {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        written.insert(values.id, (values, tokio::time::Instant::now()));
    }

    /// Forgets what was written for row `id`: its next heartbeat writes.
    fn forget(&self, id: i64) {
        self.written.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }

    /// Runs a claim ([`claim_statement`]) with `extra` as `$9`, retrying the
    /// race described there; then schedules this handle's first sweep of
    /// the cluster.
    async fn claim(
        &self,
        statement: &str,
        hb: &Heartbeat,
        incarnation: Incarnation,
        extra: (&(dyn ToSql + Sync), Type),
    ) -> Result<(), RegistryError> {
        let values = RowValues::new(hb, incarnation);
        for _ in 0..3 {
            let mut params = values.params();
            params.push(extra.clone());
            let row =
                self.call(|client| async move { client.query_typed_one(statement, &params).await }).await?;
            let claimed: i64 = row.try_get(0).map_err(|e| self.malformed(&e))?;
            if claimed > 0 {
                self.remember(values.clone());
                let on_time: i64 = row.try_get(4).map_err(|e| self.malformed(&e))?;
                if let Some(timing) = self.beat_timing() {
                    self.schedule_first_sweep(&hb.cluster, u64::try_from(on_time).unwrap_or(0) + 1, timing);
                }
                return Ok(());
            }
            let age: Option<i64> = row.try_get(1).map_err(|e| self.malformed(&e))?;
            if let Some(age_micros) = age {
                let holder: i64 = row.try_get(2).map_err(|e| self.malformed(&e))?;
                let endpoint: String = row.try_get(3).map_err(|e| self.malformed(&e))?;
                return Err(RegistryError::IdInUse {
                    id: hb.id,
                    age: Duration::from_micros(u64::try_from(age_micros).unwrap_or(0)),
                    holder: Incarnation::from_i64(holder),
                    endpoint,
                });
            }
        }
        // Three racing claims in a row: someone else holds it right now.
        Err(RegistryError::IdInUse {
            id: hb.id,
            age: Duration::ZERO,
            holder: incarnation,
            endpoint: String::new(),
        })
    }

    /// A heartbeat's write: none while quiet ([`PostgresRegistry::quiet`]),
    /// else one statement; `Superseded` when the row is no longer ours.
    async fn write_heartbeat(
        &self,
        heartbeat: &Heartbeat,
        incarnation: Incarnation,
    ) -> Result<(), RegistryError> {
        let values = RowValues::new(heartbeat, incarnation);
        if self.quiet(&values) {
            self.wrote_own_row(heartbeat).await;
            return Ok(());
        }
        self.forget(values.id);
        let params = values.params();
        let updated = self
            .call(|client| async move {
                client
                    .execute_typed(
                        &format!(
                            "UPDATE {TABLE} SET
                                 endpoint = $3, cluster = $4, role = $5, accepting = $6,
                                 max_sessions = $7, connected = $8, heartbeat_at = now()
                             WHERE id = $1 AND incarnation = $2 AND NOT removed"
                        ),
                        &params,
                    )
                    .await
            })
            .await?;
        if updated == 0 {
            return Err(RegistryError::Superseded { id: heartbeat.id });
        }
        self.remember(values.clone());
        self.wrote_own_row(heartbeat).await;
        Ok(())
    }
}

impl Registry for PostgresRegistry {
    fn register<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        member_ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            *self.member_ttl.lock().unwrap_or_else(PoisonError::into_inner) = Some(member_ttl);
            let ttl = sql_seconds(member_ttl);
            let statement = claim_statement("m.heartbeat_at <= now() - $9::float8 * INTERVAL '1 second'");
            self.claim(&statement, heartbeat, incarnation, (&ttl, Type::FLOAT8)).await?;
            self.wrote().await;
            Ok(())
        })
    }

    fn take_over<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        previous: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let previous = previous.to_i64();
            let statement = claim_statement("m.incarnation = $9::BIGINT");
            self.claim(&statement, heartbeat, incarnation, (&previous, Type::INT8)).await?;
            self.wrote().await;
            Ok(())
        })
    }

    fn heartbeat<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            self.write_heartbeat(heartbeat, incarnation).await?;
            // After the write: a slow sweep cannot hold a heartbeat back (at
            // worst the caller's deadline fires once the row is written).
            if let Some(timing) = self.beat_timing() {
                self.sweep_if_due(&heartbeat.cluster, timing).await;
            }
            Ok(())
        })
    }

    fn snapshot<'a>(
        &'a self,
        cluster: Option<&'a str>,
        timing: MemberTiming,
    ) -> BoxFuture<'a, Result<Vec<MemberRecord>, RegistryError>> {
        Box::pin(async move {
            let rows = self.refresh(cluster, timing).await?;
            Ok(self.rows.members(&self.shown_url, rows, timing.member_ttl))
        })
    }

    fn purge<'a>(
        &'a self,
        cluster: Option<&'a str>,
        older_than: Duration,
    ) -> BoxFuture<'a, Result<u64, RegistryError>> {
        Box::pin(async move {
            let key = cluster.map(str::to_owned);
            let may_find =
                self.replicas.lock().await.entry(key.clone()).or_default().purge_may_find(older_than);
            if !may_find {
                return Ok(0);
            }
            let older = sql_seconds(older_than);
            let cluster = key.clone();
            let purged = self
                .call(|client| async move {
                    client
                        .execute_typed(
                            &format!(
                                "DELETE FROM {TABLE}
                                 WHERE heartbeat_at < now() - $2::float8 * INTERVAL '1 second'
                                   AND cluster IS NOT DISTINCT FROM $1
                                   AND (SELECT set_config('{PURGING}', 'on', true)) = 'on'"
                            ),
                            &[(&cluster, Type::TEXT), (&older, Type::FLOAT8)],
                        )
                        .await
                })
                .await?;
            if let Some(replica) = self.replicas.lock().await.get_mut(&key) {
                replica.purged(older_than);
            }
            if purged > 0 {
                self.wrote().await;
            }
            Ok(purged)
        })
    }

    fn malformed_rows(&self) -> u64 {
        self.rows.skipped()
    }

    fn remove<'a>(
        &'a self,
        id: InstanceId,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<bool, RegistryError>> {
        Box::pin(async move {
            let (id, incarnation) = (i64::from(id.0), incarnation.to_i64());
            self.forget(id);
            // Marked, not deleted: other instances' incremental reads see
            // the mark; the purge deletes it later.
            let removed = self
                .call(|client| async move {
                    client
                        .execute_typed(
                            &format!(
                                "UPDATE {TABLE} SET removed = true
                             WHERE id = $1 AND incarnation = $2 AND NOT removed"
                            ),
                            &[(&id, Type::INT8), (&incarnation, Type::INT8)],
                        )
                        .await
                })
                .await?;
            if removed > 0 {
                self.wrote().await;
            }
            Ok(removed > 0)
        })
    }
}
