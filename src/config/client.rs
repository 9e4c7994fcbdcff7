//! The client's settings (phases 1 and 3) and its retry policy.

use std::time::Duration;

#[cfg(feature = "serde")]
use super::duration;
use super::problem::{length_check, zero_check};
use super::{
    ConfigError, ConfigProblem, DEFAULT_ATTEMPT_DELAY, DEFAULT_MAX_LIST_LEN, DEFAULT_TIMEOUT,
    MIN_ATTEMPT_DELAY,
};
use crate::endpoint::Endpoint;

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
            Ok(on.then_some(crate::config::DEFAULT_ATTEMPT_DELAY))
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            crate::config::duration::parse(text).map(Some).map_err(E::custom)
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
            Some(d) => s.serialize_some(&crate::config::duration::format(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = <Option<String> as serde::Deserialize>::deserialize(d)?;
        text.map(|t| crate::config::duration::parse(&t).map_err(serde::de::Error::custom)).transpose()
    }
}
