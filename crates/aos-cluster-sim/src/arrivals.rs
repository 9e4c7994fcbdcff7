//! Client arrival processes: when each client starts and how long it stays.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dist::{exponential_unit, SessionLength};
use crate::rng::Rng;
use aos_cluster::config::duration;

/// How a group's clients arrive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Process {
    /// `count` clients at independent uniform times within `within` (a login storm).
    Burst {
        /// How many clients.
        count: u32,
        /// The window they all arrive in.
        #[serde(with = "duration")]
        within: Duration,
    },
    /// `count` clients evenly spaced over `within` (a calm warm-up).
    Even {
        /// How many clients.
        count: u32,
        /// The window.
        #[serde(with = "duration")]
        within: Duration,
    },
    /// `count` clients with exponential gaps at `rate_per_sec` on average.
    Poisson {
        /// How many clients.
        count: u32,
        /// Mean arrivals per second.
        rate_per_sec: f64,
    },
}

impl Process {
    /// How many clients the process starts.
    pub fn count(&self) -> u32 {
        match *self {
            Process::Burst { count, .. } | Process::Even { count, .. } | Process::Poisson { count, .. } => {
                count
            }
        }
    }

    /// The arrival offsets from the group's start, ascending.
    pub fn offsets(&self, rng: &mut Rng) -> Vec<Duration> {
        match *self {
            Process::Burst { count, within } => {
                let span = within.as_nanos().min(u128::from(u64::MAX)) as u64;
                let mut times: Vec<Duration> =
                    (0..count).map(|_| Duration::from_nanos(rng.below_or_eq(span))).collect();
                times.sort_unstable();
                times
            }
            Process::Even { count, within } => {
                (0..count).map(|i| within.mul_f64(f64::from(i) / f64::from(count.max(1)))).collect()
            }
            Process::Poisson { count, rate_per_sec } => {
                let mut at = 0.0f64;
                (0..count)
                    .map(|_| {
                        at += exponential_unit(rng) / rate_per_sec;
                        Duration::from_secs_f64(at)
                    })
                    .collect()
            }
        }
    }

    /// Checks the parameters make sense.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Process::Poisson { rate_per_sec, .. } if !(rate_per_sec.is_finite() && rate_per_sec > 0.0) => {
                Err(format!("poisson rate_per_sec must be positive, got {rate_per_sec}"))
            }
            _ => Ok(()),
        }
    }
}

/// A group of clients that arrive by one process and share a session length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrivalGroup {
    /// When the group's first client may arrive.
    #[serde(with = "duration", default)]
    pub start: Duration,
    /// The arrival process.
    pub process: Process,
    /// How long each session lasts.
    #[serde(default)]
    pub session: SessionLength,
    /// Whether the group's clients count in the metrics (a warm-up group does not).
    #[serde(default = "yes")]
    pub measured: bool,
}

fn yes() -> bool {
    true
}

/// Hostile clients: each handshakes on a new connection, closes it once the
/// reply is in, and never asks for a session (a handshake flood). They are
/// never measured; the real clients are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flood {
    /// When the flood begins.
    #[serde(with = "duration", default)]
    pub start: Duration,
    /// How long it lasts (it stops earlier if the run does: a flood never
    /// keeps a run going).
    #[serde(with = "duration")]
    pub duration: Duration,
    /// Handshakes per second, all hostile clients together (exponential
    /// gaps: a Poisson process).
    pub rate_per_sec: f64,
    /// The instances they handshake with, one drawn uniformly per
    /// handshake. Empty: the first instance of the clients' seed list, the
    /// one every real client handshakes with while it answers.
    #[serde(default)]
    pub targets: Vec<u32>,
}

impl Flood {
    /// The instances to hit: `targets`, or `default` when none are named.
    pub fn targets_or(&self, default: Vec<u32>) -> Vec<u32> {
        if self.targets.is_empty() {
            default
        } else {
            self.targets.clone()
        }
    }

    /// About how many handshakes the flood sends (for the step bound).
    pub fn expected_handshakes(&self) -> u64 {
        (self.rate_per_sec * self.duration.as_secs_f64()).ceil().max(0.0) as u64
    }

    /// Checks the rate makes sense.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.rate_per_sec.is_finite() && self.rate_per_sec > 0.0) {
            return Err(format!("flood rate_per_sec must be positive, got {}", self.rate_per_sec));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_give_count_sorted_offsets_in_window() {
        let mut rng = Rng::new(9);
        let w = Duration::from_secs(1);
        for p in [
            Process::Burst { count: 500, within: w },
            Process::Even { count: 500, within: w },
            Process::Poisson { count: 500, rate_per_sec: 500.0 },
        ] {
            let t = p.offsets(&mut rng);
            assert_eq!(t.len(), 500);
            assert!(t.windows(2).all(|p| p[0] <= p[1]));
            if !matches!(p, Process::Poisson { .. }) {
                assert!(t.iter().all(|&x| x <= w));
            }
        }
        let poisson = Process::Poisson { count: 5000, rate_per_sec: 1000.0 }.offsets(&mut rng);
        let last = poisson.last().unwrap().as_secs_f64();
        assert!((4.5..5.5).contains(&last), "{last}");
    }
}
