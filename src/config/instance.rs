//! The instance's settings (phase 2): identity, timers, herd control, memory
//! bounds and fan-out.

use std::time::Duration;

#[cfg(feature = "serde")]
use super::duration;
use super::problem::{length_check, zero_check};
use super::{ConfigError, ConfigProblem, DEFAULT_MAX_LIST_LEN, DEFAULT_TIMEOUT};
use crate::endpoint::Endpoint;
use crate::workload::{InstanceId, Role};

/// Bounds on an instance's memory: beyond them it refuses with `Busy`
/// rather than grow.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct InstanceLimits {
    /// Handshakes waiting for a query round.
    pub max_pending_handshakes: usize,
    /// Registry members kept from a snapshot (the rest are ignored).
    pub max_members: usize,
    /// Provisional sessions counted by herd control.
    pub max_reservations: usize,
    /// Sessions this instance tracks (a hard ceiling over `max_sessions`).
    pub max_tracked_sessions: usize,
}

impl Default for InstanceLimits {
    fn default() -> Self {
        InstanceLimits {
            max_pending_handshakes: 65_536,
            max_members: 4_096,
            max_reservations: 65_536,
            max_tracked_sessions: 1 << 20,
        }
    }
}

/// How many peers a balancing instance asks live per query round.
///
/// Up to [`full_up_to`](Self::full_up_to) active peers, a round asks every one
/// (the seed's behaviour). Above it, a round asks live only the
/// [`live`](Self::live) best members by their freshest figures (their last
/// heartbeat's, or a later live report's, plus this instance's reservations on
/// them), as many again of the members with the oldest figures (once older
/// than `snapshot_ttl`), and every member whose figures are older than
/// [`max_figure_age`](Self::max_figure_age); everyone else is ranked on its
/// freshest figures, which lag by at most `max_figure_age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct FanOut {
    /// k: members asked live per round, the best by registry figures (at
    /// least 1).
    pub live: usize,
    /// Full fan-out (ask every active peer, the seed's behaviour) while the
    /// snapshot has at most this many active peers; bounded above it.
    /// `usize::MAX`: always full; 0: always bounded.
    pub full_up_to: usize,
    /// Registry figures older than this (heartbeat age plus snapshot age) are
    /// not trusted: such a member is asked live as well.
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub max_figure_age: Duration,
}

/// [`FanOut::live`]'s default.
pub const DEFAULT_FAN_OUT_LIVE: usize = 8;
/// [`FanOut::full_up_to`]'s default: clusters of up to 33 instances keep the
/// seed's full fan-out. In the simulator's `crash` scenario scaled up (the
/// README's "What the simulator shows" has the figures), bounding up to 32
/// peers costs balance even at the median; above, the median holds and a
/// round asks the 8 best (plus as many refreshed, and the stale) instead of
/// 47 or more. The tail is what two balancers that cannot see each other's
/// sessions on the members they did not ask cost.
pub const DEFAULT_FULL_FAN_OUT_UP_TO: usize = 32;
/// [`FanOut::max_figure_age`]'s default: twice the default
/// `heartbeat_interval`, so one late heartbeat is tolerated and two are not.
pub const DEFAULT_MAX_FIGURE_AGE: Duration = Duration::from_secs(10);

impl Default for FanOut {
    fn default() -> Self {
        FanOut {
            live: DEFAULT_FAN_OUT_LIVE,
            full_up_to: DEFAULT_FULL_FAN_OUT_UP_TO,
            max_figure_age: DEFAULT_MAX_FIGURE_AGE,
        }
    }
}

impl FanOut {
    /// Always ask every active peer (the seed's behaviour).
    pub const FULL: FanOut =
        FanOut { live: DEFAULT_FAN_OUT_LIVE, full_up_to: usize::MAX, max_figure_age: DEFAULT_MAX_FIGURE_AGE };

    /// Always bounded, with `live` live queries per round (plus the members
    /// whose registry figures are too old).
    pub fn bounded(live: usize) -> FanOut {
        FanOut { live, full_up_to: 0, ..FanOut::default() }
    }

    /// Whether a round over `active` active peers asks every one of them.
    pub fn is_full_for(&self, active: usize) -> bool {
        active <= self.full_up_to
    }
}

/// What an instance (an AOS) needs to rank, admit and heartbeat (phase 2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
// No container default: `id` and `endpoint` are required in a file (SPEC
// defaults table: a silent default id 0 collides); every other field has one.
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct InstanceConfig {
    /// This instance's id in the registry.
    pub id: InstanceId,
    /// Where clients and peers reach it.
    pub endpoint: Endpoint,
    /// The cluster name; `None` for a `Standalone` instance.
    #[cfg_attr(feature = "serde", serde(default = "serde_defaults::cluster"))]
    pub cluster: Option<String>,
    /// Serving, load balancer only, or standalone.
    #[cfg_attr(feature = "serde", serde(default = "serde_defaults::role"))]
    pub role: Role,
    /// "Max concurrent sessions": required, at least 1.
    #[cfg_attr(feature = "serde", serde(default = "serde_defaults::max_sessions"))]
    pub max_sessions: u32,
    /// Admitting new sessions (`false`: draining, "Reject new clients").
    #[cfg_attr(feature = "serde", serde(default = "serde_defaults::accepting"))]
    pub accepting: bool,
    /// How long a peer may take to report its workload.
    #[cfg_attr(feature = "serde", serde(default = "serde_defaults::peer_timeout"))]
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub peer_timeout: Duration,
    /// How long the registry may take to answer a snapshot query.
    #[cfg_attr(feature = "serde", serde(default = "serde_defaults::registry_timeout"))]
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub registry_timeout: Duration,
    /// A registry snapshot is reused while younger than this.
    #[cfg_attr(feature = "serde", serde(default = "serde_defaults::snapshot_ttl"))]
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub snapshot_ttl: Duration,
    /// How long herd control counts a provisional session.
    #[cfg_attr(feature = "serde", serde(default = "serde_defaults::reservation_ttl"))]
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub reservation_ttl: Duration,
    /// A member whose heartbeat is older than this is not active.
    #[cfg_attr(feature = "serde", serde(default = "serde_defaults::member_ttl"))]
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub member_ttl: Duration,
    /// How often the instance publishes its heartbeat.
    #[cfg_attr(feature = "serde", serde(default = "serde_defaults::heartbeat_interval"))]
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub heartbeat_interval: Duration,
    /// Rank by predicted load (on) or by reported load only (the seed's plain
    /// behaviour).
    #[cfg_attr(feature = "serde", serde(default = "serde_defaults::herd_control"))]
    pub herd_control: bool,
    /// Longest ranked list sent.
    #[cfg_attr(feature = "serde", serde(default = "serde_defaults::max_list_len"))]
    pub max_list_len: usize,
    /// Memory bounds.
    #[cfg_attr(feature = "serde", serde(default = "serde_defaults::limits"))]
    pub limits: InstanceLimits,
    /// How many peers a query round asks live.
    #[cfg_attr(feature = "serde", serde(default = "serde_defaults::fan_out"))]
    pub fan_out: FanOut,
}

/// Defaults of the optional fields of an [`InstanceConfig`] file, one per
/// field, from [`InstanceConfig::default`].
#[cfg(feature = "serde")]
mod serde_defaults {
    use super::*;

    pub(super) fn cluster() -> Option<String> {
        InstanceConfig::default().cluster
    }

    pub(super) fn role() -> Role {
        InstanceConfig::default().role
    }

    pub(super) fn max_sessions() -> u32 {
        InstanceConfig::default().max_sessions
    }

    pub(super) fn accepting() -> bool {
        InstanceConfig::default().accepting
    }

    pub(super) fn peer_timeout() -> Duration {
        InstanceConfig::default().peer_timeout
    }

    pub(super) fn registry_timeout() -> Duration {
        InstanceConfig::default().registry_timeout
    }

    pub(super) fn snapshot_ttl() -> Duration {
        InstanceConfig::default().snapshot_ttl
    }

    pub(super) fn reservation_ttl() -> Duration {
        InstanceConfig::default().reservation_ttl
    }

    pub(super) fn member_ttl() -> Duration {
        InstanceConfig::default().member_ttl
    }

    pub(super) fn heartbeat_interval() -> Duration {
        InstanceConfig::default().heartbeat_interval
    }

    pub(super) fn herd_control() -> bool {
        InstanceConfig::default().herd_control
    }

    pub(super) fn max_list_len() -> usize {
        InstanceConfig::default().max_list_len
    }

    pub(super) fn limits() -> InstanceLimits {
        InstanceConfig::default().limits
    }

    pub(super) fn fan_out() -> FanOut {
        InstanceConfig::default().fan_out
    }
}

impl Default for InstanceConfig {
    fn default() -> Self {
        InstanceConfig {
            id: InstanceId(0),
            endpoint: Endpoint::new("localhost", crate::endpoint::DEFAULT_PORT)
                .unwrap_or_else(|_| unreachable!("a constant, valid endpoint")),
            cluster: None,
            role: Role::Serving,
            max_sessions: 0,
            accepting: true,
            peer_timeout: Duration::from_millis(500),
            registry_timeout: Duration::from_secs(1),
            snapshot_ttl: Duration::from_secs(1),
            reservation_ttl: DEFAULT_TIMEOUT,
            member_ttl: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            herd_control: true,
            max_list_len: DEFAULT_MAX_LIST_LEN,
            limits: InstanceLimits::default(),
            fan_out: FanOut::default(),
        }
    }
}

impl InstanceConfig {
    /// The defaults for instance `id` at `endpoint` admitting `max_sessions`.
    pub fn new(id: InstanceId, endpoint: Endpoint, max_sessions: u32) -> Self {
        InstanceConfig { id, endpoint, max_sessions, ..InstanceConfig::default() }
    }

    /// Every problem with this configuration, or `Ok` when there is none.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.max_sessions == 0 {
            problems.push(ConfigProblem::Zero("max_sessions"));
        }
        for (name, d) in [
            ("peer_timeout", self.peer_timeout),
            ("registry_timeout", self.registry_timeout),
            ("member_ttl", self.member_ttl),
            ("heartbeat_interval", self.heartbeat_interval),
        ] {
            zero_check(&mut problems, name, d);
        }
        for (name, d) in [
            ("peer_timeout", self.peer_timeout),
            ("registry_timeout", self.registry_timeout),
            ("member_ttl", self.member_ttl),
            ("heartbeat_interval", self.heartbeat_interval),
            ("snapshot_ttl", self.snapshot_ttl),
            ("reservation_ttl", self.reservation_ttl),
        ] {
            length_check(&mut problems, name, d);
        }
        if self.max_list_len == 0 {
            problems.push(ConfigProblem::Zero("max_list_len"));
        }
        for (name, n) in [
            ("limits.max_pending_handshakes", self.limits.max_pending_handshakes),
            ("limits.max_members", self.limits.max_members),
            ("limits.max_tracked_sessions", self.limits.max_tracked_sessions),
        ] {
            if n == 0 {
                problems.push(ConfigProblem::Zero(name));
            }
        }
        match (self.role, &self.cluster) {
            (Role::Standalone, Some(_)) => problems.push(ConfigProblem::StandaloneInCluster),
            (Role::Serving | Role::LoadBalancerOnly, None) => problems.push(ConfigProblem::MissingCluster),
            _ => {}
        }
        if self.heartbeat_interval >= self.member_ttl && !self.member_ttl.is_zero() {
            problems.push(ConfigProblem::HeartbeatSlowerThanTtl);
        }
        if self.snapshot_ttl >= self.member_ttl && !self.member_ttl.is_zero() {
            problems.push(ConfigProblem::SnapshotTtlNotBelowMemberTtl {
                snapshot_ttl: self.snapshot_ttl,
                member_ttl: self.member_ttl,
            });
        }
        // Without herd control reservations are never made: their settings do not matter.
        if self.herd_control {
            if self.reservation_ttl.is_zero() {
                problems.push(ConfigProblem::ZeroWithHerdControl("reservation_ttl"));
            }
            if self.limits.max_reservations == 0 {
                problems.push(ConfigProblem::ZeroWithHerdControl("limits.max_reservations"));
            }
        }
        // No live query at all would rank every list on registry figures only,
        // the head included.
        if self.fan_out.live == 0 {
            problems.push(ConfigProblem::Zero("fan_out.live"));
        }
        // Zero would call every figure stale: a bounded round would ask everyone.
        zero_check(&mut problems, "fan_out.max_figure_age", self.fan_out.max_figure_age);
        length_check(&mut problems, "fan_out.max_figure_age", self.fan_out.max_figure_age);
        ConfigError::from_problems(problems)
    }
}
