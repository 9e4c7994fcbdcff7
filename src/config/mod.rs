//! Client and instance configuration, with the defaults of SPEC.md.
//!
//! Both read naturally from TOML or JSON; durations are human strings such as
//! `"250ms"`, `"5s"`, `"1m"`. [`ClientConfig::validate`] and
//! [`InstanceConfig::validate`] return every problem at once.

use std::time::Duration;

mod client;
pub mod duration;
mod instance;
mod problem;

pub use self::client::{ClientConfig, RetryPolicy};
pub use self::instance::{
    FanOut, InstanceConfig, InstanceLimits, DEFAULT_FAN_OUT_LIVE, DEFAULT_FULL_FAN_OUT_UP_TO,
    DEFAULT_MAX_FIGURE_AGE,
};
pub use self::problem::{ConfigError, ConfigProblem, MAX_DURATION};

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
