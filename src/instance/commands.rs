//! The embedder's commands (quinn's style: methods, not events, for what the
//! embedder decides), and the heartbeats that publish their effect at once.

use std::time::{Duration, Instant};

use super::{Action, Instance, Timer};
use crate::error::UsageError;
use crate::registry::Heartbeat;
use crate::workload::Role;

/// Registry rows whose last heartbeat is this many `member_ttl`s old belong
/// to members long gone: the driver purges them (SPEC "Membership").
pub const PURGE_AFTER_MEMBER_TTLS: u32 = 10;

impl Instance {
    /// The registry row this instance publishes now: what
    /// [`Action::PublishHeartbeat`] carries (a driver registers with it
    /// before the first one is drained).
    pub fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            id: self.config.id,
            endpoint: self.config.endpoint.clone(),
            cluster: self.config.cluster.clone(),
            role: self.config.role,
            accepting: self.advertised_accepting(),
            workload: self.workload(),
        }
    }

    /// How old a registry row's last heartbeat must be before the driver
    /// purges it: [`PURGE_AFTER_MEMBER_TTLS`] times `member_ttl`.
    pub fn purge_horizon(&self) -> Duration {
        self.config.member_ttl.saturating_mul(PURGE_AFTER_MEMBER_TTLS)
    }

    /// Admit new sessions (`true`) or drain (`false`, AX's "Reject new
    /// clients"). Existing sessions stay. A change is published at once.
    pub fn set_accepting(&mut self, accepting: bool, now: Instant) {
        let now = self.clamp(now);
        if self.admission.set_accepting(accepting) {
            self.publish_heartbeat(now);
        }
    }

    /// Change "Max concurrent sessions" (at least 1; 0 is an error and
    /// changes nothing). Lowering it below `connected` keeps the existing
    /// sessions and rejects new ones. A change is published at once.
    pub fn set_max_sessions(&mut self, max_sessions: u32, now: Instant) -> Result<(), UsageError> {
        if max_sessions == 0 {
            return Err(UsageError::InvalidArgument {
                event: "set_max_sessions",
                reason: "max_sessions must be at least 1",
            });
        }
        let now = self.clamp(now);
        if self.admission.set_max_sessions(max_sessions) {
            self.publish_heartbeat(now);
        }
        Ok(())
    }

    /// The driver is at (`true`) or back below (`false`) its connection
    /// limit (SPEC "Drivers: limits"). While saturated the instance
    /// advertises itself as not accepting, in heartbeats, workload reports
    /// and its own rankings, without touching the admin setting.
    pub fn set_saturated(&mut self, saturated: bool, now: Instant) {
        let now = self.clamp(now);
        if self.admission.set_saturated(saturated) {
            self.publish_heartbeat(now);
        }
    }

    pub(super) fn publish_heartbeat(&mut self, now: Instant) {
        if self.config.role == Role::Standalone {
            // A standalone instance belongs to no cluster, so no registry.
            return;
        }
        self.counters.heartbeats += 1;
        self.actions.push_back(Action::PublishHeartbeat(self.heartbeat()));
        self.timers.set(Timer::Heartbeat, now + self.config.heartbeat_interval);
    }
}
