//! Late marks. A row goes late by staying as it is, so no write tells
//! readers; finding such rows takes a scan of the cluster's rows. Rather than
//! every read scanning (M scans of M rows per interval at M members), the
//! members take turns to mark the late rows, and a mark is a change every
//! reader reads.

use std::sync::PoisonError;
use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::types::Type;

use super::{sql_seconds, PostgresRegistry, TABLE};
use crate::registry::{Incarnation, MemberTiming, RegistryError};

/// How many sweeps a cluster whose members all beat makes per
/// `heartbeat_interval`, whatever its size: a late row is marked within
/// about a quarter of an interval of going late.
pub(super) const SWEEPS_PER_INTERVAL: u64 = 4;

/// How long a handle waits between two sweeps when its last sweep found
/// `on_time` members beating: its share of [`SWEEPS_PER_INTERVAL`], at most
/// one per interval and at least one per half the purge horizon (five
/// `member_ttl`), so a cluster that lost nearly all its members at once
/// still marks its dead, and purges them, in time.
pub(super) fn sweep_period(on_time: u64, timing: MemberTiming) -> Duration {
    let turns = u32::try_from(on_time.div_ceil(SWEEPS_PER_INTERVAL).max(1)).unwrap_or(u32::MAX);
    let longest = crate::registry::timing::purge_horizon(timing.member_ttl) / 2;
    timing.heartbeat_interval.saturating_mul(turns).min(longest).max(timing.heartbeat_interval)
}

/// A fraction in `[0, 1)` from the operating system's randomness: sweeps
/// of members started together spread out.
fn random_fraction() -> f64 {
    (Incarnation::random().0 >> 11) as f64 / (1u64 << 53) as f64
}

impl PostgresRegistry {
    /// Sets this handle's first turn to sweep `cluster`, whose `on_time`
    /// members its register counted: a random point of one
    /// [`sweep_period`], so a thousand members started at once do not all
    /// sweep in their first interval.
    pub(super) fn schedule_first_sweep(&self, cluster: &Option<String>, on_time: u64, timing: MemberTiming) {
        let first = Instant::now() + sweep_period(on_time, timing).mul_f64(random_fraction());
        self.sweeps.lock().unwrap_or_else(PoisonError::into_inner).insert(cluster.clone(), first);
    }

    /// After a heartbeat of a member of `cluster`: sweeps the cluster for
    /// late rows when this handle's turn has come. Without a register
    /// through this handle, the first turn falls at a random point of the
    /// first interval; later ones fall a random 0.5 to 1.5 [`sweep_period`]
    /// apart. A sweep that fails is logged and left to the next turn: the
    /// heartbeat itself was written.
    pub(super) async fn sweep_if_due(&self, cluster: &Option<String>, timing: MemberTiming) {
        let now = Instant::now();
        {
            let mut turns = self.sweeps.lock().unwrap_or_else(PoisonError::into_inner);
            match turns.get(cluster) {
                None => {
                    let first = now + timing.heartbeat_interval.mul_f64(random_fraction());
                    turns.insert(cluster.clone(), first);
                    return;
                }
                Some(&due) if due > now => return,
                // Taken: a heartbeat racing this one does not sweep too.
                Some(_) => {
                    turns.insert(cluster.clone(), now + timing.member_ttl);
                }
            }
        }
        let on_time = match self.sweep(cluster.as_deref(), timing.late_after()).await {
            Ok(on_time) => on_time,
            Err(e) => {
                tracing::debug!(error = %e, "sweep for late rows failed; the next turn retries");
                1
            }
        };
        let next = Instant::now() + sweep_period(on_time, timing).mul_f64(0.5 + random_fraction());
        self.sweeps.lock().unwrap_or_else(PoisonError::into_inner).insert(cluster.clone(), next);
    }

    /// Marks `cluster`'s rows whose heartbeat is older than `late_after`
    /// late; returns how many members are on time.
    pub(super) async fn sweep(
        &self,
        cluster: Option<&str>,
        late_after: Duration,
    ) -> Result<u64, RegistryError> {
        let cluster = cluster.map(str::to_owned);
        let late = sql_seconds(late_after);
        let row = self
            .call(|client| async move {
                client
                    .query_typed_one(
                        &format!(
                            "WITH swept AS (
                                 UPDATE {TABLE} SET late = true
                                 WHERE cluster IS NOT DISTINCT FROM $1 AND NOT late AND NOT removed
                                   AND heartbeat_at < now() - $2::float8 * INTERVAL '1 second'
                                 RETURNING 1
                             )
                             SELECT (SELECT count(*) FROM {TABLE}
                                     WHERE cluster IS NOT DISTINCT FROM $1 AND NOT late AND NOT removed),
                                    (SELECT count(*) FROM swept)"
                        ),
                        &[(&cluster, Type::TEXT), (&late, Type::FLOAT8)],
                    )
                    .await
            })
            .await?;
        // The count reads the table as the statement found it: the rows just
        // marked still count as on time there.
        let unmarked: i64 = row.try_get(0).map_err(|e| self.malformed(&e))?;
        let marked: i64 = row.try_get(1).map_err(|e| self.malformed(&e))?;
        if marked > 0 {
            self.wrote().await;
        }
        Ok(u64::try_from(unmarked.saturating_sub(marked)).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_sweeps_four_times_per_interval_and_each_member_once_per_half_purge_horizon() {
        let timing = MemberTiming::with_ttl(Duration::from_secs(30));
        let interval = timing.heartbeat_interval;
        assert_eq!(sweep_period(0, timing), interval);
        assert_eq!(sweep_period(4, timing), interval);
        assert_eq!(sweep_period(5, timing), interval * 2);
        assert_eq!(sweep_period(20, timing), interval * 5);
        assert_eq!(sweep_period(100, timing), interval * 25);
        assert_eq!(sweep_period(1_000, timing), timing.member_ttl * 5, "capped");
        assert_eq!(sweep_period(u64::MAX, timing), timing.member_ttl * 5);
        for members in (4..=120u64).step_by(4) {
            let per_interval =
                members as f64 * interval.as_secs_f64() / sweep_period(members, timing).as_secs_f64();
            assert_eq!(per_interval, SWEEPS_PER_INTERVAL as f64, "{members} members");
        }
        for _ in 0..100 {
            assert!((0.0..1.0).contains(&random_fraction()));
        }
    }
}
