//! Seeded random draws: latencies, session lengths, probabilities.
//!
//! Every draw comes from the crate's SplitMix64 ([`Rng`]), so a scenario and a
//! seed fix every number the simulator ever uses.

use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use crate::rng::Rng;
use aos_cluster::config::duration;

/// A distribution of durations (a one-way network latency, a session length).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Dist {
    /// Always `value`.
    Constant {
        /// The duration.
        #[serde(with = "duration")]
        value: Duration,
    },
    /// Uniform in `min..=max`.
    Uniform {
        /// Shortest.
        #[serde(with = "duration")]
        min: Duration,
        /// Longest.
        #[serde(with = "duration")]
        max: Duration,
    },
    /// `base` plus an exponential tail of mean `mean_extra` (cut at 20 means,
    /// so one draw cannot stall a run).
    Exponential {
        /// The floor (zero when not given).
        #[serde(with = "duration", default)]
        base: Duration,
        /// Mean of the tail above the floor (also read as `mean`).
        #[serde(with = "duration", alias = "mean")]
        mean_extra: Duration,
    },
}

impl Dist {
    /// Always `value`.
    pub const fn constant(value: Duration) -> Self {
        Dist::Constant { value }
    }

    /// Uniform between two durations given in milliseconds.
    pub const fn uniform_ms(min: u64, max: u64) -> Self {
        Dist::Uniform { min: Duration::from_millis(min), max: Duration::from_millis(max) }
    }

    /// One draw.
    pub fn sample(&self, rng: &mut Rng) -> Duration {
        match *self {
            Dist::Constant { value } => value,
            Dist::Uniform { min, max } => {
                let span = max.saturating_sub(min).as_nanos().min(u128::from(u64::MAX)) as u64;
                min + Duration::from_nanos(rng.below_or_eq(span))
            }
            Dist::Exponential { base, mean_extra } => {
                let tail = mean_extra.as_secs_f64() * exponential_unit(rng).min(20.0);
                base + Duration::from_secs_f64(tail)
            }
        }
    }

    /// The largest value a draw can take (for budgets such as "3 RTT").
    pub fn max(&self) -> Duration {
        match *self {
            Dist::Constant { value } => value,
            Dist::Uniform { max, .. } => max,
            Dist::Exponential { base, mean_extra } => base + mean_extra * 20,
        }
    }

    /// Checks the bounds are ordered.
    pub fn validate(&self, what: &str) -> Result<(), String> {
        match self {
            Dist::Uniform { min, max } if min > max => Err(format!("{what}: uniform min above max")),
            _ => Ok(()),
        }
    }
}

/// How long a session lasts once connected: forever, or drawn from a
/// [`Dist`]. Written as the distribution itself (`kind = "constant"`,
/// `"uniform"`, `"exponential"`) or `kind = "forever"`; an exponential
/// length's `base` defaults to zero and its mean may be spelled `mean`.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SessionLength {
    /// Never ends within the run (a login storm of long working sessions).
    #[default]
    Forever,
    /// Drawn from a distribution.
    #[serde(untagged)]
    Drawn(Dist),
}

// By hand rather than derived with an untagged `Drawn`: serde's untagged
// fallback would replace the distribution's own error ("missing field `max`")
// with "did not match any variant".
impl<'de> Deserialize<'de> for SessionLength {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        if value.get("kind").and_then(serde_json::Value::as_str) == Some("forever") {
            return Ok(SessionLength::Forever);
        }
        Dist::deserialize(value).map(SessionLength::Drawn).map_err(|e| {
            let e = e.to_string();
            match e.strip_prefix("unknown variant") {
                Some(_) => D::Error::custom(format!("{e}, or `forever`")),
                None => D::Error::custom(e),
            }
        })
    }
}

impl SessionLength {
    /// One draw; `None` for a session that never ends.
    pub fn sample(&self, rng: &mut Rng) -> Option<Duration> {
        match self {
            SessionLength::Forever => None,
            SessionLength::Drawn(dist) => Some(dist.sample(rng)),
        }
    }
}

/// A unit-mean exponential draw, `-ln(1 - u)` for `u` uniform in `[0, 1)`.
pub fn exponential_unit(rng: &mut Rng) -> f64 {
    -(1.0 - unit(rng)).ln()
}

/// A uniform draw in `[0, 1)` from the top 53 bits.
pub fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// `true` with probability `p` (clamped to `0..=1`).
pub fn chance(rng: &mut Rng, p: f64) -> bool {
    p > 0.0 && (p >= 1.0 || unit(rng) < p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_in_bounds_and_replay() {
        let d = Dist::uniform_ms(10, 30);
        let (mut a, mut b) = (Rng::new(3), Rng::new(3));
        for _ in 0..1000 {
            let x = d.sample(&mut a);
            assert_eq!(x, d.sample(&mut b));
            assert!((Duration::from_millis(10)..=Duration::from_millis(30)).contains(&x));
        }
        let e = Dist::Exponential { base: Duration::from_millis(5), mean_extra: Duration::from_millis(1) };
        let mut total = Duration::ZERO;
        for _ in 0..10_000 {
            let x = e.sample(&mut a);
            assert!(x >= Duration::from_millis(5) && x <= e.max());
            total += x;
        }
        let mean = total / 10_000;
        assert!(mean > Duration::from_micros(5_900) && mean < Duration::from_micros(6_100), "{mean:?}");
    }

    #[test]
    fn session_lengths_read_every_spelling_and_draw_as_their_distribution() {
        let read = |json: &str| serde_json::from_str::<SessionLength>(json).unwrap();
        assert_eq!(read(r#"{"kind":"forever"}"#), SessionLength::Forever);
        assert_eq!(
            read(r#"{"kind":"constant","value":"2s"}"#),
            SessionLength::Drawn(Dist::constant(Duration::from_secs(2)))
        );
        assert_eq!(
            read(r#"{"kind":"uniform","min":"1s","max":"3s"}"#),
            SessionLength::Drawn(Dist::uniform_ms(1000, 3000))
        );
        let exponential = Dist::Exponential { base: Duration::ZERO, mean_extra: Duration::from_secs(5) };
        assert_eq!(read(r#"{"kind":"exponential","mean":"5s"}"#), SessionLength::Drawn(exponential.clone()));
        assert_eq!(
            read(r#"{"kind":"exponential","mean_extra":"5s"}"#),
            SessionLength::Drawn(exponential.clone())
        );
        for length in [SessionLength::Forever, SessionLength::Drawn(exponential.clone())] {
            assert_eq!(read(&serde_json::to_string(&length).unwrap()), length);
        }
        for bad in [
            r#"{"kind":"uniform","min":"1s"}"#,
            r#"{"kind":"constant","value":"1s","x":1}"#,
            r#"{"kind":"never"}"#,
        ] {
            assert!(serde_json::from_str::<SessionLength>(bad).is_err(), "{bad}");
        }
        // The draw is the distribution's, the same stream of numbers.
        let (mut a, mut b) = (Rng::new(9), Rng::new(9));
        let length = SessionLength::Drawn(exponential.clone());
        for _ in 0..100 {
            assert_eq!(length.sample(&mut a), Some(exponential.sample(&mut b)));
        }
        assert_eq!(SessionLength::Forever.sample(&mut a), None);
    }

    #[test]
    fn chance_extremes() {
        let mut r = Rng::new(1);
        assert!((0..100).all(|_| !chance(&mut r, 0.0)));
        assert!((0..100).all(|_| chance(&mut r, 1.0)));
        let hits = (0..10_000).filter(|_| chance(&mut r, 0.25)).count();
        assert!((2_300..2_700).contains(&hits), "{hits}");
    }
}
