//! The simulated registry ("the database"): heartbeat rows and snapshots.
//!
//! Instances publish heartbeats; the driver writes them here with the virtual
//! time of arrival. A snapshot lists every row of the cluster with its
//! `heartbeat_age` at the time of the read, so instances judge activity by
//! their own `member_ttl`, exactly as with a real database. A crashed
//! instance's row stays and ages until it is no longer active.
//!
//! `read_lag` models a lagging read (a replica, a cache in front of the
//! database): a read at `t` sees each row as it was written at or before
//! `t - read_lag`. With it the workload figures in a snapshot are older than
//! the heartbeat interval alone would make them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use aos_cluster::config::duration;
use aos_cluster::registry::{Heartbeat, MemberRecord};
use aos_cluster::workload::InstanceId;

/// How the registry behaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryModel {
    /// Reads see the rows as they were this long ago.
    #[serde(with = "duration")]
    pub read_lag: Duration,
    /// Windows during which every query fails.
    pub outages: Vec<Window>,
}

/// A time window `[from, until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Start.
    #[serde(with = "duration")]
    pub from: Duration,
    /// End (exclusive).
    #[serde(with = "duration")]
    pub until: Duration,
}

impl Window {
    /// `at` falls inside the window.
    pub fn contains(&self, at: Duration) -> bool {
        self.from <= at && at < self.until
    }
}

/// The registry's rows, with enough history to serve lagging reads.
#[derive(Debug, Default)]
pub struct Registry {
    model: RegistryModel,
    rows: BTreeMap<InstanceId, Vec<(Duration, Heartbeat)>>,
}

impl Registry {
    /// An empty registry.
    pub fn new(model: RegistryModel) -> Self {
        Registry { model, rows: BTreeMap::new() }
    }

    /// Upserts a heartbeat written at `now`.
    pub fn write(&mut self, now: Duration, heartbeat: Heartbeat) {
        let cutoff = now.checked_sub(self.model.read_lag);
        let history = self.rows.entry(heartbeat.id).or_default();
        history.push((now, heartbeat));
        // Keep the newest write a lagging read can see, and everything after it.
        if let Some(cutoff) = cutoff {
            if let Some(visible) = history.iter().rposition(|(at, _)| *at <= cutoff) {
                history.drain(..visible);
            }
        }
    }

    /// Whether a query at `now` fails.
    pub fn is_down(&self, now: Duration) -> bool {
        self.model.outages.iter().any(|w| w.contains(now))
    }

    /// The rows of `cluster` as a read at `now` sees them.
    pub fn snapshot(&self, now: Duration, cluster: Option<&str>) -> Vec<MemberRecord> {
        let Some(cutoff) = now.checked_sub(self.model.read_lag) else {
            return Vec::new();
        };
        self.rows
            .values()
            .filter_map(|history| history.iter().rev().find(|(at, _)| *at <= cutoff))
            .filter(|(_, hb)| hb.cluster.as_deref() == cluster)
            .map(|(at, hb)| MemberRecord {
                id: hb.id,
                endpoint: hb.endpoint.clone(),
                role: hb.role,
                accepting: hb.accepting,
                workload: hb.workload,
                heartbeat_age: now - *at,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aos_cluster::workload::{Role, Workload};
    use aos_cluster::Endpoint;

    fn hb(id: u32, connected: u32) -> Heartbeat {
        Heartbeat {
            id: InstanceId(id),
            endpoint: Endpoint::new(&format!("aos{id}"), 2712).unwrap(),
            cluster: Some("c".into()),
            role: Role::Serving,
            accepting: true,
            workload: Workload::new(connected, 10),
        }
    }

    #[test]
    fn snapshot_ages_rows_and_lags_reads() {
        let s = Duration::from_secs;
        let mut r = Registry::new(RegistryModel { read_lag: s(5), outages: vec![] });
        r.write(s(0), hb(1, 0));
        r.write(s(5), hb(1, 5));
        r.write(s(10), hb(1, 9));
        r.write(s(10), hb(2, 1));
        let snap = r.snapshot(s(12), Some("c"));
        // Row 1 as of t=5 (the newest write at or before 12-5=7); row 2 not visible yet.
        assert_eq!(snap.len(), 1);
        assert_eq!((snap[0].workload.connected, snap[0].heartbeat_age), (5, s(7)));
        let snap = r.snapshot(s(15), Some("c"));
        assert_eq!(snap.iter().map(|m| m.workload.connected).collect::<Vec<_>>(), vec![9, 1]);
        assert!(r.snapshot(s(15), Some("other")).is_empty());
    }

    #[test]
    fn outages_fail_queries_in_their_window() {
        let s = Duration::from_secs;
        let r = Registry::new(RegistryModel {
            read_lag: s(0),
            outages: vec![Window { from: s(1), until: s(2) }],
        });
        assert!(!r.is_down(s(0)) && r.is_down(s(1)) && !r.is_down(s(2)));
    }
}
