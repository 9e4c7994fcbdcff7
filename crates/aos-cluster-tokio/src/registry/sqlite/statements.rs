//! The statements, each run on the blocking pool, and the [`Registry`] impl
//! that runs them.

use std::time::Duration;

use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::InstanceId;
use rusqlite::types::Value;
use rusqlite::{Connection, TransactionBehavior};

use super::SqliteRegistry;
use crate::registry::row::{sql_millis, StoredRow};
use crate::registry::{
    role_text, BoxFuture, Incarnation, MemberTiming, Registry, RegistryError, MEMBERS_TABLE,
};

/// SQLite's clock in whole milliseconds since the Unix epoch.
const NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

/// What `register` or `take_over` found.
enum Claim {
    Done,
    InUse(Holder),
}

/// The row that refused a claim.
struct Holder {
    age_ms: i64,
    incarnation: i64,
    endpoint: String,
}

/// A heartbeat's row as `?1..?8`: id, incarnation, endpoint, cluster, role,
/// accepting, max_sessions, connected (the order of the claim's columns).
fn row_params(hb: &Heartbeat, incarnation: Incarnation) -> [Value; 8] {
    [
        Value::Integer(i64::from(hb.id.0)),
        Value::Integer(incarnation.to_i64()),
        Value::Text(hb.endpoint.to_string()),
        hb.cluster.clone().map_or(Value::Null, Value::Text),
        Value::Text(role_text(hb.role).to_owned()),
        Value::Integer(i64::from(hb.accepting)),
        Value::Integer(i64::from(hb.workload.max_sessions)),
        Value::Integer(i64::from(hb.workload.connected)),
    ]
}

/// Claims the row of `hb.id` for `incarnation` when there is none, or the
/// stored one is ours, or it passes `{when}` (about the stored row and
/// `excluded`, ours, with `?9` bound to `extra`); else says who holds it.
fn claim_blocking(
    c: &mut Connection,
    hb: &Heartbeat,
    incarnation: Incarnation,
    when: &str,
    extra: i64,
) -> rusqlite::Result<Claim> {
    // Immediate: the write lock is taken before the row is looked at, so two
    // processes claiming one id are served one after the other.
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let claimed = tx.execute(
        &format!(
            "INSERT INTO {MEMBERS_TABLE}
                 (id, incarnation, endpoint, cluster, role, accepting, max_sessions, connected, heartbeat_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, {NOW_MS})
             ON CONFLICT (id) DO UPDATE SET
                 incarnation = excluded.incarnation, endpoint = excluded.endpoint,
                 cluster = excluded.cluster, role = excluded.role, accepting = excluded.accepting,
                 max_sessions = excluded.max_sessions, connected = excluded.connected,
                 heartbeat_at = excluded.heartbeat_at
             WHERE {MEMBERS_TABLE}.incarnation = excluded.incarnation OR {when}"
        ),
        rusqlite::params_from_iter(row_params(hb, incarnation).into_iter().chain([Value::Integer(extra)])),
    )?;
    let claim = if claimed > 0 { Claim::Done } else { holder_of(&tx, hb.id)? };
    tx.commit()?;
    Ok(claim)
}

/// [`Registry::register`]: a stale row (heartbeat at least `ttl_ms` old) is
/// free to claim.
fn register_blocking(
    c: &mut Connection,
    hb: &Heartbeat,
    incarnation: Incarnation,
    ttl_ms: i64,
) -> rusqlite::Result<Claim> {
    let stale = format!("{MEMBERS_TABLE}.heartbeat_at <= excluded.heartbeat_at - ?9");
    claim_blocking(c, hb, incarnation, &stale, ttl_ms)
}

/// [`Registry::take_over`]: the row of `previous` is free to claim.
fn take_over_blocking(
    c: &mut Connection,
    hb: &Heartbeat,
    incarnation: Incarnation,
    previous: Incarnation,
) -> rusqlite::Result<Claim> {
    let held_by_previous = format!("{MEMBERS_TABLE}.incarnation = ?9");
    claim_blocking(c, hb, incarnation, &held_by_previous, previous.to_i64())
}

/// Who holds the row of `id`, as [`Claim::InUse`].
fn holder_of(tx: &rusqlite::Transaction<'_>, id: InstanceId) -> rusqlite::Result<Claim> {
    tx.query_row(
        &format!("SELECT {NOW_MS} - heartbeat_at, incarnation, endpoint FROM {MEMBERS_TABLE} WHERE id = ?1"),
        [id.0],
        |row| {
            Ok(Claim::InUse(Holder {
                age_ms: row.get(0).unwrap_or(0),
                incarnation: row.get(1).unwrap_or(0),
                endpoint: row.get(2).unwrap_or_default(),
            }))
        },
    )
}

/// Every row of the cluster, each column read on its own: SQLite's columns
/// take any type, so one row's text in an integer column must skip that row,
/// not fail the read.
fn snapshot_blocking(
    c: &mut Connection,
    cluster: Option<&str>,
    kept_ms: i64,
) -> rusqlite::Result<Vec<StoredRow>> {
    let mut statement = c.prepare_cached(&format!(
        "SELECT id, endpoint, role, accepting, max_sessions, connected, {NOW_MS} - heartbeat_at
         FROM {MEMBERS_TABLE} WHERE cluster IS ?1 ORDER BY id"
    ))?;
    let rows = statement
        .query_map([cluster], |row| {
            let mut stored = StoredRow::empty();
            stored.id = stored.read("id", row.get(0));
            let age_ms: i64 = stored.read("heartbeat_at", row.get(6)).unwrap_or(0);
            stored.age_micros = age_ms.saturating_mul(1000);
            stored.endpoint = stored.read("endpoint", row.get(1)).unwrap_or_default();
            stored.role = stored.read("role", row.get(2)).unwrap_or_default();
            stored.accepting = stored.read("accepting", row.get(3)).unwrap_or(false);
            stored.max_sessions = stored.read("max_sessions", row.get(4)).unwrap_or(0);
            stored.connected = stored.read("connected", row.get(5)).unwrap_or(0);
            Ok(stored)
        })?
        .filter(|row| !matches!(row, Ok(stored) if stored.age_micros > kept_ms.saturating_mul(1000)))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn in_use(id: InstanceId, holder: Holder) -> RegistryError {
    RegistryError::IdInUse {
        id,
        age: Duration::from_millis(u64::try_from(holder.age_ms).unwrap_or(0)),
        holder: Incarnation::from_i64(holder.incarnation),
        endpoint: holder.endpoint,
    }
}

impl Registry for SqliteRegistry {
    fn register<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        member_ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let hb = heartbeat.clone();
            let ttl_ms = sql_millis(member_ttl);
            match self.call(move |c| register_blocking(c, &hb, incarnation, ttl_ms)).await? {
                Claim::Done => Ok(()),
                Claim::InUse(holder) => Err(in_use(heartbeat.id, holder)),
            }
        })
    }

    fn take_over<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
        previous: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let hb = heartbeat.clone();
            match self.call(move |c| take_over_blocking(c, &hb, incarnation, previous)).await? {
                Claim::Done => Ok(()),
                Claim::InUse(holder) => Err(in_use(heartbeat.id, holder)),
            }
        })
    }

    fn heartbeat<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
        incarnation: Incarnation,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let hb = heartbeat.clone();
            let updated = self
                .call(move |c| {
                    c.execute(
                        &format!(
                            "UPDATE {MEMBERS_TABLE} SET
                                 endpoint = ?3, cluster = ?4, role = ?5, accepting = ?6,
                                 max_sessions = ?7, connected = ?8, heartbeat_at = {NOW_MS}
                             WHERE id = ?1 AND incarnation = ?2"
                        ),
                        rusqlite::params_from_iter(row_params(&hb, incarnation)),
                    )
                })
                .await?;
            if updated == 0 {
                return Err(RegistryError::Superseded { id: heartbeat.id });
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
            let owned_cluster = cluster.map(str::to_owned);
            let member_ttl = timing.member_ttl;
            let kept_ms = sql_millis(crate::registry::timing::purge_horizon(member_ttl));
            let rows = self.call(move |c| snapshot_blocking(c, owned_cluster.as_deref(), kept_ms)).await?;
            Ok(self.rows.members(&self.shown_url, rows, member_ttl))
        })
    }

    fn purge<'a>(
        &'a self,
        cluster: Option<&'a str>,
        older_than: Duration,
    ) -> BoxFuture<'a, Result<u64, RegistryError>> {
        Box::pin(async move {
            let owned_cluster = cluster.map(str::to_owned);
            let older_ms = sql_millis(older_than);
            self.call(move |c| {
                c.execute(
                    &format!(
                        "DELETE FROM {MEMBERS_TABLE} WHERE cluster IS ?1 AND heartbeat_at < {NOW_MS} - ?2"
                    ),
                    rusqlite::params![owned_cluster, older_ms],
                )
            })
            .await
            .map(|deleted| deleted as u64)
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
            self.call(move |c| {
                c.execute(
                    &format!("DELETE FROM {MEMBERS_TABLE} WHERE id = ?1 AND incarnation = ?2"),
                    rusqlite::params![id.0, incarnation.to_i64()],
                )
            })
            .await
            .map(|deleted| deleted > 0)
        })
    }
}
