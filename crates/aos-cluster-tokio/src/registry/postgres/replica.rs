//! Incremental reads: each cluster's rows kept as last read, brought up to
//! date with what changed since.

use std::time::Duration;

use aos_cluster::registry::Heartbeat;
use tokio::time::Instant;
use tokio_postgres::types::Type;

use super::{PostgresRegistry, TABLE};
use crate::registry::row::StoredRow;
use crate::registry::{role_text, MemberTiming, RegistryError};

/// The columns a read returns, by index.
const COLUMNS: &str = "m.id, m.endpoint, m.role, m.accepting, m.max_sessions, m.connected,
     (EXTRACT(EPOCH FROM m.heartbeat_at) * 1000000)::BIGINT, m.removed, m.late,
     (EXTRACT(EPOCH FROM now()) * 1000000)::BIGINT,
     (pg_snapshot_xmin(pg_current_snapshot())::text)::BIGINT";

impl PostgresRegistry {
    /// This process reads its own writes: the next snapshot reads what
    /// changed, whatever the replica's age (writes other than heartbeats are
    /// rare: a start, a stop, a sweep or a purge that found something).
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
        let now_us = replica.db_now_us();
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
        known.marked_late = false;
    }

    /// The cluster's rows from its replica, brought up to date first when
    /// its last read is older than [`refresh_interval`], in one statement:
    /// the rows changed since that read (removals and deletions by hand are
    /// removed marks, so changes too), and the rows it last found late
    /// without a mark. A row is late when its mark says so (a sweep found its
    /// heartbeat late) or when the heartbeat read with it is older than
    /// [`MemberTiming::late_after`]; every other row is on time and reads
    /// younger than one `heartbeat_interval` ([`MemberTiming`]).
    pub(super) async fn refresh(
        &self,
        cluster: Option<&str>,
        timing: MemberTiming,
    ) -> Result<Vec<StoredRow>, RegistryError> {
        let mut replicas = self.replicas.lock().await;
        let replica = replicas.entry(cluster.map(str::to_owned)).or_default();
        let fresh = replica.refreshed_at.is_some_and(|at| at.elapsed() < refresh_interval(timing));
        if !fresh {
            let horizon = replica.next_horizon(timing);
            let read = self.read_changes(cluster, horizon, replica.unmarked_late()).await?;
            replica.apply(read, timing);
        }
        Ok(replica.rows_at(timing))
    }

    /// One read: the rows changed since `horizon` (every row when it is 0)
    /// and the rows `again`, each with the database's clock and the next
    /// horizon. The plain statement unless there are rows to read again:
    /// planning a statement is most of what a read costs the server.
    async fn read_changes(
        &self,
        cluster: Option<&str>,
        horizon: i64,
        again: Vec<i64>,
    ) -> Result<ChangeRead, RegistryError> {
        let cluster_param = cluster.map(str::to_owned);
        let changed = "m.changed_xid >= ($2::BIGINT)::text::xid8";
        let rows = self
            .call(|client| async move {
                let from = format!("FROM {TABLE} m WHERE m.cluster IS NOT DISTINCT FROM $1");
                if again.is_empty() {
                    let statement = format!("SELECT {COLUMNS} {from} AND {changed}");
                    client
                        .query_typed(&statement, &[(&cluster_param, Type::TEXT), (&horizon, Type::INT8)])
                        .await
                } else {
                    let statement = format!("SELECT {COLUMNS} {from} AND ({changed} OR m.id = ANY($3))");
                    let params = [
                        (&cluster_param as _, Type::TEXT),
                        (&horizon as _, Type::INT8),
                        (&again as _, Type::INT8_ARRAY),
                    ];
                    client.query_typed(&statement, &params).await
                }
            })
            .await?;
        let mut read = ChangeRead { full: horizon == 0, ..ChangeRead::default() };
        for row in &rows {
            let clock_us: i64 = row.try_get(9).map_err(|e| self.malformed(&e))?;
            let next_horizon: i64 = row.try_get(10).map_err(|e| self.malformed(&e))?;
            read.clock = Some((clock_us, next_horizon));
            let Ok(id) = row.try_get::<_, i64>(0) else { continue };
            let mut stored = StoredRow::empty();
            stored.id = Some(id);
            stored.endpoint = stored.read("endpoint", row.try_get(1)).unwrap_or_default();
            stored.role = stored.read("role", row.try_get(2)).unwrap_or_default();
            stored.accepting = stored.read("accepting", row.try_get(3)).unwrap_or(false);
            stored.max_sessions = stored.read("max_sessions", row.try_get(4)).unwrap_or(0);
            stored.connected = stored.read("connected", row.try_get(5)).unwrap_or(0);
            let beat_us: i64 = stored.read("heartbeat_at", row.try_get(6)).unwrap_or(0);
            let removed: bool = stored.read("removed", row.try_get(7)).unwrap_or(false);
            let marked_late: bool = stored.read("late", row.try_get(8)).unwrap_or(false);
            read.changed.push((
                id,
                if removed {
                    Change::Removed(beat_us)
                } else {
                    Change::Row { row: stored, beat_us, marked_late }
                },
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
    /// Written: its figures, and whether a sweep marked it late.
    Row { row: StoredRow, beat_us: i64, marked_late: bool },
    /// Removed (a graceful stop, or deleted by hand), waiting for the purge.
    Removed(i64),
}

/// What one read found.
#[derive(Debug, Default)]
struct ChangeRead {
    /// Whether it read every row (horizon 0).
    full: bool,
    /// The database's clock (microseconds since the epoch) and the oldest
    /// transaction still running (the next read's horizon), as every row
    /// carries them; `None` when no row came back.
    clock: Option<(i64, i64)>,
    /// Rows changed since the horizon.
    changed: Vec<(i64, Change)>,
}

impl Replica {
    /// The database's clock now, reckoned from the last read that returned
    /// a row; `None` before any did.
    fn db_now_us(&self) -> Option<i64> {
        self.clock.map(|(clock_us, at)| clock_us.saturating_add(micros(at.elapsed())))
    }

    /// Takes `read` in: changed rows as read, late when marked or when
    /// their heartbeat is older than `timing`'s `late_after`; every other
    /// row as it was. A read that found nothing keeps the horizon (nothing
    /// was committed since it that concerns the cluster) and the clock.
    fn apply(&mut self, read: ChangeRead, timing: MemberTiming) {
        let now = Instant::now();
        if let Some((clock_us, horizon)) = read.clock {
            self.clock = Some((clock_us, now));
            self.horizon = horizon;
        }
        if read.full {
            self.rows.clear();
            self.removed.clear();
        }
        let (now_us, late_after_us) = (self.db_now_us().unwrap_or(0), micros(timing.late_after()));
        for (id, row) in read.changed {
            match row {
                Change::Row { row, beat_us, marked_late } => {
                    self.removed.remove(&id);
                    let late = marked_late || now_us.saturating_sub(beat_us) > late_after_us;
                    self.rows.insert(id, Known { row, beat_us, late, marked_late });
                }
                Change::Removed(beat_us) => {
                    self.rows.remove(&id);
                    self.removed.insert(id, beat_us);
                }
            }
        }
        self.refreshed_at = Some(now);
        self.read_at = Some(now);
    }

    /// The rows read late without a sweep's mark: the next read reads them
    /// again ([`Known::marked_late`]).
    fn unmarked_late(&self) -> Vec<i64> {
        self.rows.iter().filter(|(_, known)| known.late && !known.marked_late).map(|(&id, _)| id).collect()
    }

    /// The database's clock `older_than` ago, while this replica was read
    /// within half of it: a purge's horizon as the replica can judge it.
    fn purge_due_us(&self, older_than: Duration) -> Option<i64> {
        self.read_at.filter(|at| at.elapsed() < older_than / 2)?;
        Some(self.db_now_us()?.saturating_sub(micros(older_than)))
    }

    /// Whether a purge of rows older than `older_than` may find something.
    /// Members purge once per `member_ttl` each, so most purges would find
    /// nothing, and each costs a scan of the table: a replica read within
    /// half of `older_than` says yes only when it knows a late or removed
    /// row that old; one that cannot tell (a member that does not balance
    /// reads nothing) says yes once per half of `older_than`.
    pub(super) fn purge_may_find(&self, older_than: Duration) -> bool {
        match self.purge_due_us(older_than) {
            Some(due) => {
                self.rows.values().any(|known| known.late && known.beat_us <= due)
                    || self.removed.values().any(|&beat_us| beat_us <= due)
            }
            None => self.blind_purge_at.is_none_or(|at| at.elapsed() >= older_than / 2),
        }
    }

    /// A purge of rows older than `older_than` ran: the rows it deleted are
    /// forgotten (other readers' replicas forget them at their own purge).
    pub(super) fn purged(&mut self, older_than: Duration) {
        if self.purge_due_us(older_than).is_none() {
            self.blind_purge_at = Some(Instant::now());
        }
        if let Some(due) = self.purge_due_us(older_than) {
            self.rows.retain(|_, known| !(known.late && known.beat_us <= due));
            self.removed.retain(|_, &mut beat_us| beat_us > due);
        }
    }

    /// The horizon of the next read: the last one's, or 0 (read
    /// everything) when the replica was not read for half the purge horizon
    /// (a removed row is deleted once its heartbeat is that old, and a
    /// replica that never saw the mark would keep the row).
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

    /// The rows with their ages now (database clock), leaving out those
    /// older than the purge horizon.
    fn rows_at(&self, timing: MemberTiming) -> Vec<StoredRow> {
        let Some(now_us) = self.db_now_us() else { return Vec::new() };
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
    /// The heartbeat time read with it (database clock, microseconds since
    /// the epoch): the write that last changed it, or a later quiet one.
    beat_us: i64,
    /// Whether it was late when read: marked by a sweep, or older than
    /// `late_after`.
    late: bool,
    /// Whether a sweep had marked it late. A marked row's next heartbeat
    /// clears the mark, a change every reader reads; a row late without a
    /// mark (a sweep has yet to pass, or a heartbeat moved back by hand) may
    /// be brought back by a quiet heartbeat that no change mark shows, so
    /// it is read again at every read until it is marked or on time.
    marked_late: bool,
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
    /// Rows removed (a graceful stop, or deleted by hand) and not yet
    /// purged: id, heartbeat's time.
    removed: std::collections::BTreeMap<i64, i64>,
    /// The oldest transaction that was still running at the last read that
    /// returned rows: every change by it or later is read next time (those
    /// before it were all committed, and read).
    horizon: i64,
    /// The database's clock at the last read that returned rows
    /// (microseconds since the epoch), and when that was (this process's
    /// clock).
    clock: Option<(i64, Instant)>,
    /// When the last read was made (this process's clock).
    read_at: Option<Instant>,
    /// The same, but `None` after this process's own writes, so that the
    /// next snapshot reads at once.
    refreshed_at: Option<Instant>,
    /// When this handle last purged without a recent read to judge by.
    blind_purge_at: Option<Instant>,
}

#[cfg(test)]
#[path = "replica_model.rs"]
mod model;
