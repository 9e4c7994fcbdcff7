//! Client and instance configuration, with the defaults of SPEC.md.
//!
//! Both read naturally from TOML or JSON; durations are human strings such as
//! `"250ms"`, `"5s"`, `"1m"`. [`ClientConfig::validate`] and
//! [`InstanceConfig::validate`] return every problem at once.

use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::workload::{InstanceId, Role};

/// RFC 8305's floor for a connection attempt delay.
pub const MIN_ATTEMPT_DELAY: Duration = Duration::from_millis(10);
/// The attempt delay RFC 8305 recommends, used when staggering is switched on.
pub const DEFAULT_ATTEMPT_DELAY: Duration = Duration::from_millis(250);
/// Default handshake and session timeouts: the documents say "a timeout period" only.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default cap on a ranked list's length (AX allows up to 99 instances per
/// environment): the wire's own default, so the client, the instance and
/// the decoder agree.
pub use crate::wire::DEFAULT_MAX_LIST_LEN;

/// Full-jitter exponential backoff between rounds (AWS architecture blog):
/// after failed round `r` (from 0), wait `rand(0, min(cap, base * 2^r))`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct RetryPolicy {
    /// The first backoff's upper bound.
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub base: Duration,
    /// No backoff exceeds this.
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub cap: Duration,
    /// Rounds in all, the first included; then the client fails.
    pub max_rounds: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { base: Duration::from_secs(1), cap: Duration::from_secs(30), max_rounds: 3 }
    }
}

/// What a client needs to find and keep a session (phases 1 and 3).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ClientConfig {
    /// The ordered seed list (AX `aos2` entries), walked in this order.
    pub seeds: Vec<Endpoint>,
    /// The cluster the client expects; an instance of another cluster refuses.
    pub cluster: Option<String>,
    /// How long a handshake may go unanswered before the next seed is tried.
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub handshake_timeout: Duration,
    /// How long a session request may go unanswered before the next entry.
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub connect_timeout: Duration,
    /// Opt-in RFC 8305 staggering: start the next handshake after this delay
    /// while earlier ones are still pending. `None`: one at a time (the seed).
    /// In TOML or JSON, `true` switches it on with [`DEFAULT_ATTEMPT_DELAY`]
    /// (250 ms), `false` or no value leaves it off, and a duration string
    /// such as `"100ms"` sets it.
    #[cfg_attr(feature = "serde", serde(with = "attempt_delay"))]
    pub attempt_delay: Option<Duration>,
    /// Opt-in seeded shuffle of the seed list before each walk.
    pub shuffle_seeds: bool,
    /// `false` is AX's `-loadbalance=0`: the instance that answers the
    /// handshake is the session target.
    pub load_balance: bool,
    /// Backoff and round limit.
    pub retry: RetryPolicy,
    /// Ranked lists longer than this are cut.
    pub max_list_len: usize,
    /// Give up (with the attempt log) once this long has passed since the start.
    #[cfg_attr(feature = "serde", serde(with = "opt_duration"))]
    pub overall_deadline: Option<Duration>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            seeds: Vec::new(),
            cluster: None,
            handshake_timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_TIMEOUT,
            attempt_delay: None,
            shuffle_seeds: false,
            load_balance: true,
            retry: RetryPolicy::default(),
            max_list_len: DEFAULT_MAX_LIST_LEN,
            overall_deadline: None,
        }
    }
}

impl ClientConfig {
    /// The defaults with this seed list.
    pub fn with_seeds(seeds: Vec<Endpoint>) -> Self {
        ClientConfig { seeds, ..ClientConfig::default() }
    }

    /// These settings with RFC 8305 staggering switched on at its
    /// recommended [`DEFAULT_ATTEMPT_DELAY`] (250 ms).
    pub fn with_default_attempt_delay(self) -> Self {
        ClientConfig { attempt_delay: Some(DEFAULT_ATTEMPT_DELAY), ..self }
    }

    /// Every problem with this configuration, or `Ok` when there is none.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.seeds.is_empty() {
            problems.push(ConfigProblem::EmptySeedList);
        }
        // Seeds are compared as targets (SPEC.md phase 1, item 5): `AOS01@h:2712`,
        // `h:2712` and `H` are one target, tried once.
        for (again, first) in crate::wire::dedup::repeated_seeds(&self.seeds) {
            let endpoint = self.seeds[again].clone();
            problems.push(ConfigProblem::DuplicateSeed { endpoint, first, again });
        }
        zero_check(&mut problems, "handshake_timeout", self.handshake_timeout);
        zero_check(&mut problems, "connect_timeout", self.connect_timeout);
        // A zero base makes every backoff zero: clients would retry in lock-step.
        zero_check(&mut problems, "retry.base", self.retry.base);
        zero_check(&mut problems, "retry.cap", self.retry.cap);
        if let Some(delay) = self.attempt_delay {
            if delay < MIN_ATTEMPT_DELAY {
                problems.push(ConfigProblem::AttemptDelayTooShort(delay));
            }
        }
        if self.retry.max_rounds == 0 {
            problems.push(ConfigProblem::Zero("retry.max_rounds"));
        }
        if self.max_list_len == 0 {
            problems.push(ConfigProblem::Zero("max_list_len"));
        }
        if let Some(deadline) = self.overall_deadline {
            zero_check(&mut problems, "overall_deadline", deadline);
            length_check(&mut problems, "overall_deadline", deadline);
        }
        for (name, d) in [
            ("handshake_timeout", self.handshake_timeout),
            ("connect_timeout", self.connect_timeout),
            ("retry.base", self.retry.base),
            ("retry.cap", self.retry.cap),
            ("attempt_delay", self.attempt_delay.unwrap_or_default()),
        ] {
            length_check(&mut problems, name, d);
        }
        if self.retry.base > self.retry.cap && !self.retry.cap.is_zero() {
            problems.push(ConfigProblem::RetryBaseAboveCap { base: self.retry.base, cap: self.retry.cap });
        }
        if let Some(delay) = self.attempt_delay {
            if delay >= self.handshake_timeout && !self.handshake_timeout.is_zero() {
                problems.push(ConfigProblem::AttemptDelayNotBelowHandshakeTimeout {
                    attempt_delay: delay,
                    handshake_timeout: self.handshake_timeout,
                });
            }
        }
        ConfigError::from_problems(problems)
    }
}

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
/// seed's full fan-out. Measured with the simulator's `crash` scenario scaled
/// up (200 sessions a member, one crashes, its clients return within 500 ms
/// through two balancers; peak arrivals per 100 ms window over the fair
/// share, p50 / p99 over 10 seeds), full fan-out against `live = 8`:
/// 32 peers 1.21 / 1.36 against 1.36 / 1.45; 47 peers 1.24 / 1.29 against
/// 1.24 / 1.49; 63 peers 1.23 / 1.26 against 1.25 / 1.45. Up to 32 peers
/// bounding costs balance even at the median; above, the median holds and
/// a round asks the 8 best (plus as many refreshed, and the stale) instead of 47 or more.
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

fn zero_check(problems: &mut Vec<ConfigProblem>, name: &'static str, d: Duration) {
    if d.is_zero() {
        problems.push(ConfigProblem::Zero(name));
    }
}

/// The longest any timer may be: far beyond any sensible setting, and small
/// enough that `now + timer` never overflows an `Instant` on any platform.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

fn length_check(problems: &mut Vec<ConfigProblem>, name: &'static str, d: Duration) {
    if d > MAX_DURATION {
        problems.push(ConfigProblem::TooLong { field: name, value: d });
    }
}

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigProblem {
    /// A client with no seed cannot reach anything.
    #[error("the seed list is empty")]
    EmptySeedList,
    /// The same target twice in the seed list (host compared ASCII
    /// case-insensitively, the instance name ignored: see
    /// [`Endpoint::same_target`]).
    #[error("seed {again} ({endpoint}) repeats seed {first}")]
    DuplicateSeed {
        /// The repeated endpoint.
        endpoint: Endpoint,
        /// Its first position.
        first: usize,
        /// The repeat's position.
        again: usize,
    },
    /// A setting that must be positive is zero.
    #[error("`{0}` must not be zero")]
    Zero(&'static str),
    /// A duration above [`MAX_DURATION`] (one year).
    #[error("`{field}` ({value:?}) is longer than a year")]
    TooLong {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: Duration,
    },
    /// RFC 8305 forbids attempt delays below 10 ms.
    #[error("`attempt_delay` ({}) is below the 10ms minimum of RFC 8305", duration::format(*.0))]
    AttemptDelayTooShort(Duration),
    /// A clustered role needs a cluster name.
    #[error("a serving or load-balancer-only instance needs a cluster name")]
    MissingCluster,
    /// A standalone instance belongs to no cluster.
    #[error("a standalone instance must not name a cluster")]
    StandaloneInCluster,
    /// Heartbeats must come more often than members expire.
    #[error(
        "`heartbeat_interval` must be shorter than `member_ttl`, or a live member would expire between beats"
    )]
    HeartbeatSlowerThanTtl,
    /// The first backoff's bound is above the cap: every backoff would be the
    /// cap, which is never what was meant.
    #[error(
        "`retry.base` ({}) is longer than `retry.cap` ({}): every backoff would be cut to the cap",
        duration::format(*base),
        duration::format(*cap)
    )]
    RetryBaseAboveCap {
        /// `retry.base`.
        base: Duration,
        /// `retry.cap`.
        cap: Duration,
    },
    /// Staggering that starts no earlier than the timeout staggers nothing.
    #[error(
        "`attempt_delay` ({}) must be shorter than `handshake_timeout` ({}), or the next seed is never tried early",
        duration::format(*attempt_delay),
        duration::format(*handshake_timeout)
    )]
    AttemptDelayNotBelowHandshakeTimeout {
        /// `attempt_delay`.
        attempt_delay: Duration,
        /// `handshake_timeout`.
        handshake_timeout: Duration,
    },
    /// A snapshot reused for as long as members live keeps ranking members
    /// that have stopped.
    #[error(
        "`snapshot_ttl` ({}) must be shorter than `member_ttl` ({}), or a reused snapshot keeps members that expired",
        duration::format(*snapshot_ttl),
        duration::format(*member_ttl)
    )]
    SnapshotTtlNotBelowMemberTtl {
        /// `snapshot_ttl`.
        snapshot_ttl: Duration,
        /// `member_ttl`.
        member_ttl: Duration,
    },
    /// A herd-control setting that is zero while herd control is on.
    #[error("`{0}` must not be zero while `herd_control` is on (switch `herd_control` off instead)")]
    ZeroWithHerdControl(&'static str),
}

/// A configuration that failed [`ClientConfig::validate`] or
/// [`InstanceConfig::validate`], with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {}", list(.problems))]
pub struct ConfigError {
    /// Every problem, in the order the settings are declared.
    pub problems: Vec<ConfigProblem>,
}

fn list(problems: &[ConfigProblem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl ConfigError {
    fn from_problems(problems: Vec<ConfigProblem>) -> Result<(), ConfigError> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// Human durations: `"250ms"`, `"5s"`, `"1.5s"`, `"2m"`, `"1h"`, `"100us"`,
/// and compounds such as `"1m30s"` or `"1h2m3.5s"`;
/// written back in the largest unit that keeps the value exact.
pub mod duration {
    use std::time::Duration;

    /// Parses a human duration: one or more number-and-unit parts, summed
    /// (`"250ms"`, `"1.5s"`, `"1m30s"`, `"1h 2m 3.5s"`).
    pub fn parse(text: &str) -> Result<Duration, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err(format!("`{text}`: expected a number and a unit (ns, us, ms, s, m, h)"));
        }
        let mut total: u128 = 0;
        let mut rest = t;
        while !rest.is_empty() {
            // A part runs to the first digit after its unit.
            let unit_start = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            let end = rest[unit_start..]
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .map_or(rest.len(), |i| unit_start + i);
            let nanos = part(text, &rest[..end])?;
            total = total.checked_add(nanos).ok_or_else(|| format!("`{text}`: too large"))?;
            rest = rest[end..].trim_start();
        }
        let secs = u64::try_from(total / 1_000_000_000).map_err(|_| format!("`{text}`: too large"))?;
        Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
    }

    /// One number-and-unit part, in nanoseconds; `text` is the whole, for errors.
    fn part(text: &str, t: &str) -> Result<u128, String> {
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (number, unit) = (&t[..split], t[split..].trim());
        let nanos_per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" | "min" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "`{text}`: expected a number and a unit (ns, us, ms, s, m, h), or several such as 1m30s"
                ))
            }
        };
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && frac.is_empty() || frac.contains('.') || frac.len() > 9 {
            return Err(format!("`{text}`: not a number"));
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| format!("`{text}`: not a number"))?
        };
        let frac_nanos: u128 = if frac.is_empty() {
            0
        } else {
            let digits: u128 = frac.parse().map_err(|_| format!("`{text}`: not a number"))?;
            let scaled = digits * nanos_per;
            let scale = 10u128.pow(frac.len() as u32);
            if scaled % scale != 0 {
                return Err(format!("`{text}`: finer than a nanosecond"));
            }
            scaled / scale
        };
        whole
            .checked_mul(nanos_per)
            .and_then(|n| n.checked_add(frac_nanos))
            .ok_or_else(|| format!("`{text}`: too large"))
    }

    /// Formats a duration in the largest exact unit.
    pub fn format(d: Duration) -> String {
        let nanos = d.as_nanos();
        for (unit, per) in [
            ("h", 3_600_000_000_000u128),
            ("m", 60_000_000_000),
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1_000),
        ] {
            if nanos != 0 && nanos % per == 0 {
                return format!("{}{unit}", nanos / per);
            }
        }
        if nanos == 0 {
            return "0s".to_owned();
        }
        format!("{nanos}ns")
    }

    /// serde: serialize as a human string.
    #[cfg(feature = "serde")]
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    /// serde: deserialize from a human string.
    #[cfg(feature = "serde")]
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }
}

/// serde for `attempt_delay`: a human string, or a switch (`true` is
/// [`DEFAULT_ATTEMPT_DELAY`], `false` is off); written back as a string.
#[cfg(feature = "serde")]
mod attempt_delay {
    use std::fmt;
    use std::time::Duration;

    pub use super::opt_duration::serialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        d.deserialize_any(Setting)
    }

    struct Setting;

    impl<'de> serde::de::Visitor<'de> for Setting {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"250ms\", or true (250ms) or false (off)")
        }

        fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<Self::Value, E> {
            Ok(on.then_some(super::DEFAULT_ATTEMPT_DELAY))
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            super::duration::parse(text).map(Some).map_err(E::custom)
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(Setting)
        }
    }
}

/// serde for `Option<Duration>` as an optional human string.
#[cfg(feature = "serde")]
mod opt_duration {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&super::duration::format(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = <Option<String> as serde::Deserialize>::deserialize(d)?;
        text.map(|t| super::duration::parse(&t).map_err(serde::de::Error::custom)).transpose()
    }
}
