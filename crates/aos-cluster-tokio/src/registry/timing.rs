//! How often members beat, as snapshots need to know it.

use std::time::Duration;

/// How the members of a cluster beat, as a snapshot needs to know it.
///
/// A heartbeat that changes nothing but the time is the bulk of a
/// registry's writes, and every member wants every other member's rows: if
/// each such heartbeat reached every reader, a cluster of M members would move
/// M x M rows per `heartbeat_interval`. So the backends built for clusters
/// across machines write such a heartbeat only once per
/// [`quiet_renewal`](MemberTiming::quiet_renewal) (PostgreSQL) or only renew
/// a lease (etcd), and pass on only rows whose content changed, and rows
/// whose heartbeat is late ([`late_after`](MemberTiming::late_after): etcd
/// when the lease expires, PostgreSQL when a member's sweep marks it). A row
/// that is neither belongs to a member that beats on time with the figures it
/// last wrote (a member writes them whenever they change), and is reported
/// at most one `heartbeat_interval` old: PostgreSQL, whose heartbeat times
/// come from the database's clock, reports the time since the member's last
/// beat on the schedule its last written heartbeat set
/// ([`on_time_age`](MemberTiming::on_time_age)); etcd, which keeps no time of
/// a write, one interval.
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

    /// How often a member whose figures do not change still writes its
    /// heartbeat row: a third of `member_ttl`, so two writes may be lost
    /// before it stops being active. (An etcd lease, which no reader sees
    /// renewed, is renewed by the spacing of the beats instead.)
    pub fn quiet_renewal(&self) -> Duration {
        self.member_ttl / 3
    }

    /// The age of an on-time row whose last written heartbeat (or value)
    /// is `since` old: the time since its last beat on the schedule that
    /// write set (members beat every `heartbeat_interval` whether they
    /// write or not), so below one interval.
    pub fn on_time_age(&self, since: Duration) -> Duration {
        if self.heartbeat_interval.is_zero() {
            return since;
        }
        let interval = self.heartbeat_interval.as_nanos();
        Duration::from_nanos(u64::try_from(since.as_nanos() % interval).unwrap_or(u64::MAX))
    }

    /// A heartbeat older than this is late: the member has missed its quiet
    /// renewal by a whole interval. Readers report a late row at its real
    /// age.
    pub fn late_after(&self) -> Duration {
        self.quiet_renewal().saturating_add(self.heartbeat_interval)
    }
}

/// Rows older than this are left out of snapshots (and purged): the
/// machine's [`PURGE_AFTER_MEMBER_TTLS`](aos_cluster::instance::PURGE_AFTER_MEMBER_TTLS)
/// times `member_ttl`.
pub(crate) fn purge_horizon(member_ttl: Duration) -> Duration {
    member_ttl.saturating_mul(aos_cluster::instance::PURGE_AFTER_MEMBER_TTLS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_time_ages_follow_the_beat_schedule_and_stay_below_one_interval() {
        let timing = MemberTiming::with_ttl(Duration::from_secs(30));
        assert_eq!(timing.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(timing.on_time_age(Duration::from_millis(3_200)), Duration::from_millis(3_200));
        assert_eq!(timing.on_time_age(Duration::from_millis(12_300)), Duration::from_millis(2_300));
        assert_eq!(timing.on_time_age(Duration::from_secs(10)), Duration::ZERO);
        for secs in 0..200 {
            assert!(timing.on_time_age(Duration::from_millis(secs * 377)) < timing.heartbeat_interval);
        }
        let never = MemberTiming { member_ttl: Duration::from_secs(30), heartbeat_interval: Duration::ZERO };
        assert_eq!(never.on_time_age(Duration::from_secs(7)), Duration::from_secs(7));
        assert_eq!(timing.quiet_renewal(), Duration::from_secs(10));
        assert_eq!(timing.late_after(), Duration::from_secs(15));
    }
}
