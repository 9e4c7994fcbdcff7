//! What can be wrong with a configuration: each problem, and the error
//! that lists them all.

use std::time::Duration;

use super::duration;
#[cfg(doc)]
use super::{ClientConfig, InstanceConfig};
use crate::endpoint::Endpoint;

pub(super) fn zero_check(problems: &mut Vec<ConfigProblem>, name: &'static str, d: Duration) {
    if d.is_zero() {
        problems.push(ConfigProblem::Zero(name));
    }
}

/// The longest any timer may be: far beyond any sensible setting, and small
/// enough that `now + timer` never overflows an `Instant` on any platform.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

pub(super) fn length_check(problems: &mut Vec<ConfigProblem>, name: &'static str, d: Duration) {
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
    pub(super) fn from_problems(problems: Vec<ConfigProblem>) -> Result<(), ConfigError> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}
