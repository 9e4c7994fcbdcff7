//! How often members beat, as snapshots need to know it.

use std::time::Duration;

/// How the members of a cluster beat, as a snapshot needs to know it.
///
/// A heartbeat that changes nothing but the time is the bulk of a
/// registry's writes, and every member wants every other member's rows: if
/// each such heartbeat reached every reader, a cluster of M members would move
/// M x M rows per `heartbeat_interval`. So the backends built for clusters
/// across machines pass on only rows whose content changed, and rows whose
/// heartbeat is late; a row that is neither belongs to a member that beat
/// within the last `heartbeat_interval`, and is reported as that old (an
/// upper bound on its age: its figures are the ones it last wrote, and a
/// member writes them whenever they change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberTiming {
    /// A member is active while its heartbeat is younger than this.
    pub member_ttl: Duration,
    /// How often members heartbeat.
    pub heartbeat_interval: Duration,
}

impl MemberTiming {
    /// The timing an instance with `config` beats by.
    pub fn of(config: &aos_cluster::InstanceConfig) -> MemberTiming {
        MemberTiming { member_ttl: config.member_ttl, heartbeat_interval: config.heartbeat_interval }
    }

    /// `member_ttl` with the default ratio of heartbeat interval to it (a
    /// sixth: 5 s of 30 s).
    pub fn with_ttl(member_ttl: Duration) -> MemberTiming {
        MemberTiming { member_ttl, heartbeat_interval: member_ttl / 6 }
    }
}

/// Rows older than this are left out of snapshots (and purged): the
/// machine's [`PURGE_AFTER_MEMBER_TTLS`](aos_cluster::instance::PURGE_AFTER_MEMBER_TTLS)
/// times `member_ttl`.
pub(crate) fn purge_horizon(member_ttl: Duration) -> Duration {
    member_ttl.saturating_mul(aos_cluster::instance::PURGE_AFTER_MEMBER_TTLS)
}
