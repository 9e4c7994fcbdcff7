//! Incremental reads: each cluster's rows kept as last read, brought up to
//! date with what changed since.

use std::time::Duration;

use aos_cluster::registry::Heartbeat;
use tokio_postgres::types::Type;

use super::{sql_seconds, PostgresRegistry, TABLE};
use crate::registry::row::StoredRow;
use crate::registry::{role_text, MemberTiming, RegistryError};

impl PostgresRegistry {
    /// This process reads its own writes: the next snapshot reads what
    /// changed, whatever the replica's age (writes other than heartbeats are
    /// rare: a start, a stop, a purge that found something).
    pub(super) async fn wrote(&self) {
        for replica in self.replicas.lock().await.values_mut() {
            replica.refreshed_at = None;
        }
    }

    /// A heartbeat rewrites this process's own row: patched into the
    /// replica in place (its time by the database clock as the replica
    /// reckons it), so the figures read back are the ones just written
    /// without a read per heartbeat.
    pub(super) async fn wrote_own_row(&self, heartbeat: &Heartbeat) {
        let mut replicas = self.replicas.lock().await;
        let Some(replica) = replicas.get_mut(&heartbeat.cluster) else { return };
        let id = i64::from(heartbeat.id.0);
        let now_us = replica.refreshed_at.map(|at| replica.db_now_us(at));
        let (Some(now_us), Some(known)) = (now_us, replica.rows.get_mut(&id)) else {
            replica.refreshed_at = None;
            return;
        };
        let row = &mut known.row;
        row.endpoint = heartbeat.endpoint.to_string();
        row.role = role_text(heartbeat.role).to_owned();
        row.accepting = heartbeat.accepting;
        row.max_sessions = i64::from(heartbeat.workload.max_sessions);
        row.connected = i64::from(heartbeat.workload.connected);
        known.beat_us = now_us;
        known.late = false;
    }

    /// The cluster's rows from its replica, brought up to date first when
    /// its last read is older than [`refresh_interval`], in one statement:
    /// the rows changed since that read, the rows deleted since (their
    /// tombstones), and the rows whose heartbeat is late (older than
    /// [`MemberTiming::late_after`]: a member that stopped, or beats slowly).
    /// Every other row is on time and reads younger than one
    /// `heartbeat_interval` ([`MemberTiming`]).
    pub(super) async fn refresh(
        &self,
        cluster: Option<&str>,
        timing: MemberTiming,
    ) -> Result<Vec<StoredRow>, RegistryError> {
        let mut replicas = self.replicas.lock().await;
        let replica = replicas.entry(cluster.map(str::to_owned)).or_default();
        if let Some(at) = replica.refreshed_at.filter(|at| at.elapsed() < refresh_interval(timing)) {
            return Ok(replica.rows_at(replica.db_now_us(at), timing));
        }
        let horizon = replica.next_horizon(timing);
        let read = self.read_changes(cluster, horizon, timing).await?;
        replica.apply(read);
        Ok(replica.rows_at(replica.now_us, timing))
    }

    /// One read: the rows changed since `horizon` (every row when it is 0)
    /// and the cluster's late rows, with the figures that frame them.
    async fn read_changes(
        &self,
        cluster: Option<&str>,
        horizon: i64,
        timing: MemberTiming,
    ) -> Result<ChangeRead, RegistryError> {
        let cluster_param = cluster.map(str::to_owned);
        let late = sql_seconds(timing.late_after());
        let rows = self
            .call(|client| async move {
                client
                    .query_typed(
                        &format!(
                            "SELECT (EXTRACT(EPOCH FROM now()) * 1000000)::BIGINT,
                                    (pg_snapshot_xmin(pg_current_snapshot())::text)::BIGINT,
                                    (SELECT array_agg(g.id) FROM {TABLE}_gone g
                                     WHERE g.changed_xid >= ($2::BIGINT)::text::xid8
                                       AND g.cluster IS NOT DISTINCT FROM $1),
                                    m.changed_xid >= ($2::BIGINT)::text::xid8,
                                    m.id, m.endpoint, m.role, m.accepting, m.max_sessions, m.connected,
                                    (EXTRACT(EPOCH FROM m.heartbeat_at) * 1000000)::BIGINT, m.removed,
                                    m.heartbeat_at < now() - $3::float8 * INTERVAL '1 second'
                             FROM (SELECT 1) one
                             LEFT JOIN {TABLE} m
                               ON m.cluster IS NOT DISTINCT FROM $1
                              AND (m.changed_xid >= ($2::BIGINT)::text::xid8
                                   OR m.heartbeat_at < now() - $3::float8 * INTERVAL '1 second' AND NOT m.removed)"
                        ),
                        &[(&cluster_param, Type::TEXT), (&horizon, Type::INT8), (&late, Type::FLOAT8)],
                    )
                    .await
            })
            .await?;
        let mut read = ChangeRead { full: horizon == 0, ..ChangeRead::default() };
        for row in &rows {
            read.now_us = row.try_get(0).map_err(|e| self.malformed(&e))?;
            read.horizon = row.try_get(1).map_err(|e| self.malformed(&e))?;
            read.gone =
                row.try_get::<_, Option<Vec<i64>>>(2).map_err(|e| self.malformed(&e))?.unwrap_or_default();
            // The empty side of the LEFT JOIN: nothing changed, nothing late.
            let Ok(Some(id)) = row.try_get::<_, Option<i64>>(4) else { continue };
            let changed: bool = row.try_get(3).map_err(|e| self.malformed(&e))?;
            let mut stored = StoredRow::empty();
            stored.id = Some(id);
            let heartbeat_us: i64 = stored.read("heartbeat_at", row.try_get(10)).unwrap_or(0);
            if row.try_get::<_, Option<bool>>(12).map_err(|e| self.malformed(&e))? == Some(true) {
                read.late.push((id, heartbeat_us));
            }
            if !changed {
                continue;
            }
            stored.endpoint = stored.read("endpoint", row.try_get(5)).unwrap_or_default();
            stored.role = stored.read("role", row.try_get(6)).unwrap_or_default();
            stored.accepting = stored.read("accepting", row.try_get(7)).unwrap_or(false);
            stored.max_sessions = stored.read("max_sessions", row.try_get(8)).unwrap_or(0);
            stored.connected = stored.read("connected", row.try_get(9)).unwrap_or(0);
            let removed: bool = stored.read("removed", row.try_get(11)).unwrap_or(false);
            read.changed.push((
                id,
                if removed { Change::Removed(heartbeat_us) } else { Change::Row(stored, heartbeat_us) },
            ));
        }
        Ok(read)
    }
}

/// How old a replica may be before a snapshot reads again: one heartbeat
/// interval, the one incremental read per interval. Figures that changed are
/// written at the member's next heartbeat and read within the next interval.
fn refresh_interval(timing: MemberTiming) -> Duration {
    timing.heartbeat_interval
}

/// A row a read found changed, with its heartbeat's time (database clock,
/// microseconds since the epoch).
#[derive(Debug)]
enum Change {
    /// Written: its figures.
    Row(StoredRow, i64),
    /// Removed by a graceful stop, waiting for the purge.
    Removed(i64),
}

/// What one read found.
#[derive(Debug, Default)]
struct ChangeRead {
    /// Whether it read every row (horizon 0).
    full: bool,
    /// The database's clock, microseconds since the epoch.
    now_us: i64,
    /// The oldest transaction still running: the next read's horizon.
    horizon: i64,
    /// Rows deleted since the horizon.
    gone: Vec<i64>,
    /// Rows changed since the horizon.
    changed: Vec<(i64, Change)>,
    /// Rows whose heartbeat is late, with its time.
    late: Vec<(i64, i64)>,
}

impl Replica {
    /// The database's clock now, reckoned from the last read made `at`.
    fn db_now_us(&self, at: tokio::time::Instant) -> i64 {
        self.now_us.saturating_add(micros(at.elapsed()))
    }

    /// Takes `read` in: changed rows as read, late rows marked late at their
    /// heartbeat's time, every other row on time.
    fn apply(&mut self, read: ChangeRead) {
        if read.full {
            self.rows.clear();
            self.removed.clear();
        }
        for id in &read.gone {
            self.rows.remove(id);
            self.removed.remove(id);
        }
        if !read.gone.is_empty() {
            self.tombstones_seen.push(read.now_us);
        }
        for (id, row) in read.changed {
            match row {
                Change::Row(row, beat_us) => {
                    self.removed.remove(&id);
                    self.rows.insert(id, Known { row, beat_us, late: false });
                }
                Change::Removed(beat_us) => {
                    self.rows.remove(&id);
                    self.removed.insert(id, beat_us);
                }
            }
        }
        let late: std::collections::BTreeMap<i64, i64> = read.late.into_iter().collect();
        for (id, known) in self.rows.iter_mut() {
            known.late = match late.get(id) {
                Some(&at) => {
                    known.beat_us = at;
                    true
                }
                None => false,
            };
        }
        self.horizon = read.horizon;
        self.now_us = read.now_us;
        let now = tokio::time::Instant::now();
        self.refreshed_at = Some(now);
        self.read_at = Some(now);
    }

    /// Whether a purge of rows older than `older_than` may find something:
    /// unless this replica, read recently, knows of no late row, removed row
    /// or tombstone that old. Members purge once per `member_ttl` each, so
    /// most purges would find nothing, and each costs a scan of the table.
    pub(super) fn purge_may_find(&self, older_than: Duration) -> bool {
        let Some(at) = self.read_at.filter(|at| at.elapsed() < older_than / 2) else { return true };
        let due = self.db_now_us(at).saturating_sub(micros(older_than));
        self.rows.values().any(|known| known.late && known.beat_us <= due)
            || self.removed.values().any(|&beat_us| beat_us <= due)
            || self.tombstones_seen.iter().any(|&seen_us| seen_us <= due)
    }

    /// A purge of rows older than `older_than` ran: the tombstones it
    /// deleted need no other.
    pub(super) fn purged(&mut self, older_than: Duration) {
        if let Some(at) = self.read_at {
            let due = self.db_now_us(at).saturating_sub(micros(older_than));
            self.tombstones_seen.retain(|&seen_us| seen_us > due);
        }
    }

    /// The horizon of the next read: the last one's, or 0 (read
    /// everything) when tombstones may have been purged since (they live as
    /// long as the purge horizon: a replica not read for half that reads
    /// everything rather than miss one).
    fn next_horizon(&self, timing: MemberTiming) -> i64 {
        let fresh_enough = self
            .read_at
            .is_some_and(|at| at.elapsed() < crate::registry::timing::purge_horizon(timing.member_ttl) / 2);
        if fresh_enough {
            self.horizon
        } else {
            0
        }
    }

    /// The rows with their ages at `now_us` (database clock), leaving out
    /// those older than the purge horizon.
    fn rows_at(&self, now_us: i64, timing: MemberTiming) -> Vec<StoredRow> {
        let kept = micros(crate::registry::timing::purge_horizon(timing.member_ttl));
        self.rows
            .values()
            .map(|known| StoredRow { age_micros: known.age_us(now_us, timing), ..known.row.clone() })
            .filter(|row| row.age_micros <= kept)
            .collect()
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// One row as the replica knows it.
#[derive(Debug)]
struct Known {
    row: StoredRow,
    /// The heartbeat time last read for it (database clock, microseconds
    /// since the epoch): the write that last changed it, or the heartbeat a
    /// read found late.
    beat_us: i64,
    /// Whether the last read found its heartbeat late.
    late: bool,
}

impl Known {
    /// Its age at `now_us`: a late row's is the time since its heartbeat; an
    /// on-time row's, [`MemberTiming::on_time_age`]. A heartbeat in the
    /// future keeps its negative age: the snapshot's checks judge it.
    fn age_us(&self, now_us: i64, timing: MemberTiming) -> i64 {
        let since = now_us.saturating_sub(self.beat_us);
        match u64::try_from(since) {
            Ok(since) if !self.late => micros(timing.on_time_age(Duration::from_micros(since))),
            _ => since,
        }
    }
}

/// One cluster's rows as last read, kept up to date by incremental reads.
#[derive(Debug, Default)]
pub(super) struct Replica {
    /// Rows by id; removed rows are dropped.
    rows: std::collections::BTreeMap<i64, Known>,
    /// Rows removed by a graceful stop and not yet purged: id, heartbeat's
    /// time.
    removed: std::collections::BTreeMap<i64, i64>,
    /// When reads (database clock) found tombstones, which a purge deletes
    /// once they are as old as its horizon.
    tombstones_seen: Vec<i64>,
    /// The oldest transaction that was still running at the last read: every
    /// change by it or later is read next time (those before it were all
    /// committed, and read).
    horizon: i64,
    /// The database's clock at the last read, microseconds since the epoch.
    now_us: i64,
    /// When the last read was made (this process's clock).
    read_at: Option<tokio::time::Instant>,
    /// The same, but `None` after this process's own writes, so that the
    /// next snapshot reads at once.
    refreshed_at: Option<tokio::time::Instant>,
}
