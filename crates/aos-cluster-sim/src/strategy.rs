//! The strategies compared in the same harness, on the same arrivals.
//!
//! Four are the protocol itself (herd control off or on, and with herd
//! control the query round's fan-out, set in every
//! [`InstanceConfig`](aos_cluster::InstanceConfig)). The two baselines are small
//! client-side transforms of the ranked list a client received, applied by
//! the simulator to the reply message before the real `Connector` sees it, so
//! neither the client nor the instance carries any baseline code.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::rng::Rng;
use aos_cluster::config::FanOut;
use aos_cluster::wire::RankedEntry;

/// Members asked live per round by [`Strategy::Bounded`] (the contract's k).
pub const BOUNDED_LIVE: usize = 8;

/// The largest cluster the full-fan-out strategies (`ax-plain`, `full`,
/// `random`, `p2c`) run on; see [`Strategy::skip_reason`]. Between the
/// 1 000-instance family (up to 1 125 with `join-1000`'s joiners) and 5 000.
pub const FULL_FAN_OUT_MAX_INSTANCES: u32 = 2000;

/// How clients pick among the instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Herd control off: the seed's exact behaviour (everyone takes the least
    /// loaded instance of the figures it was ranked on).
    AxPlain,
    /// The protocol's defaults: herd control on (ranking by predicted load)
    /// and `FanOut::default()` (full fan-out in small clusters, bounded above).
    Default,
    /// Herd control on, full fan-out always (`FanOut::FULL`: every round asks
    /// every active peer, the seed's query pattern).
    Full,
    /// Herd control on, bounded fan-out always (`FanOut::bounded(8)`: the
    /// [`BOUNDED_LIVE`] best members by registry figures asked live, plus
    /// those whose figures are too old).
    Bounded,
    /// Clients shuffle the ranked list (libpq `load_balance_hosts=random`).
    Random,
    /// Power of two choices on the same figures (MongoDB, Envoy): two random
    /// entries, the less loaded first, the rest in ranked order behind.
    P2c,
}

impl Strategy {
    /// Every strategy, in table order.
    pub const ALL: [Strategy; 6] = [
        Strategy::AxPlain,
        Strategy::Default,
        Strategy::Full,
        Strategy::Bounded,
        Strategy::Random,
        Strategy::P2c,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::AxPlain => "ax-plain",
            Strategy::Default => "default",
            Strategy::Full => "full",
            Strategy::Bounded => "bounded",
            Strategy::Random => "random",
            Strategy::P2c => "p2c",
        }
    }

    /// Whether instances run with herd control. The baselines run on the plain
    /// figures ("the same stale figures"), as the systems they imitate.
    pub fn herd_control(self) -> bool {
        matches!(self, Strategy::Default | Strategy::Full | Strategy::Bounded)
    }

    /// The query round's fan-out. The baselines keep the seed's full fan-out:
    /// they differ from it only in the client's pick.
    pub fn fan_out(self) -> FanOut {
        match self {
            Strategy::Default => FanOut::default(),
            Strategy::Bounded => FanOut::bounded(BOUNDED_LIVE),
            Strategy::AxPlain | Strategy::Full | Strategy::Random | Strategy::P2c => FanOut::FULL,
        }
    }

    /// Whether every round asks every active peer in any cluster, so a round
    /// costs O(n) peer queries (n^2 over a storm that reaches every instance).
    pub fn is_full_fan_out(self) -> bool {
        self.fan_out().full_up_to == usize::MAX
    }

    /// Whether the client transforms the ranked list at all.
    pub fn transforms(self) -> bool {
        matches!(self, Strategy::Random | Strategy::P2c)
    }

    /// Why this strategy is not run on `scenario`, if it is not: a full
    /// fan-out above [`FULL_FAN_OUT_MAX_INSTANCES`] instances, where every
    /// query round asks every other instance and a storm costs n^2 peer
    /// queries: the 5 000-instance scenarios (the 1 125 instances of
    /// `join-1000` still run).
    pub fn skip_reason(self, scenario: &crate::Scenario) -> Option<String> {
        let n = scenario.instance_count();
        (self.is_full_fan_out() && n > FULL_FAN_OUT_MAX_INSTANCES).then(|| {
            format!(
                "{}: skipped on {} ({n} instances): full fan-out asks all {} peers every round, \
                 infeasible above {FULL_FAN_OUT_MAX_INSTANCES} instances (the 5 000-instance scenarios)",
                self.name(),
                scenario.name,
                n - 1
            )
        })
    }

    /// The client-side transform of a ranked list (identity for the protocol strategies).
    pub fn reorder(self, entries: &mut [RankedEntry], rng: &mut Rng) {
        match self {
            Strategy::AxPlain | Strategy::Default | Strategy::Full | Strategy::Bounded => {}
            Strategy::Random => rng.shuffle(entries),
            Strategy::P2c => {
                let n = entries.len();
                if n < 2 {
                    return;
                }
                let a = rng.below_or_eq(n as u64 - 1) as usize;
                let mut b = rng.below_or_eq(n as u64 - 2) as usize;
                if b >= a {
                    b += 1;
                }
                let better = if entries[b].workload.cmp_rank(entries[a].workload).is_lt() { b } else { a };
                entries[..=better].rotate_right(1);
            }
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL.into_iter().find(|st| st.name() == s).ok_or_else(|| {
            format!("unknown strategy `{s}` (expected ax-plain, default, full, bounded, random, p2c or all)")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aos_cluster::workload::{InstanceId, Workload};
    use aos_cluster::Endpoint;

    fn list(loads: &[u32]) -> Vec<RankedEntry> {
        loads
            .iter()
            .enumerate()
            .map(|(i, &c)| RankedEntry {
                id: InstanceId(i as u32),
                endpoint: Endpoint::new(&format!("aos{i}"), 2712).unwrap(),
                workload: Workload::new(c, 100),
            })
            .collect()
    }

    fn ids(l: &[RankedEntry]) -> Vec<u32> {
        l.iter().map(|e| e.id.0).collect()
    }

    #[test]
    fn protocol_strategies_keep_the_list() {
        let mut rng = Rng::new(1);
        for s in [Strategy::AxPlain, Strategy::Default, Strategy::Full, Strategy::Bounded] {
            let mut l = list(&[1, 2, 3, 4]);
            s.reorder(&mut l, &mut rng);
            assert_eq!(ids(&l), vec![0, 1, 2, 3]);
        }
    }

    #[test]
    fn random_is_a_permutation_and_p2c_moves_the_better_of_two_to_front() {
        let mut rng = Rng::new(2);
        let mut firsts = [0u32; 6];
        for _ in 0..6000 {
            let mut l = list(&[0, 1, 2, 3, 4, 5]);
            Strategy::Random.reorder(&mut l, &mut rng);
            let mut sorted = ids(&l);
            sorted.sort_unstable();
            assert_eq!(sorted, vec![0, 1, 2, 3, 4, 5]);
            firsts[l[0].id.0 as usize] += 1;
        }
        assert!(firsts.iter().all(|&n| (800..1200).contains(&n)), "{firsts:?}");

        let mut firsts = [0u32; 6];
        for _ in 0..6000 {
            let mut l = list(&[0, 1, 2, 3, 4, 5]);
            Strategy::P2c.reorder(&mut l, &mut rng);
            let first = l[0].id.0;
            let rest: Vec<u32> = ids(&l[1..]);
            let expected: Vec<u32> = (0..6).filter(|&i| i != first).collect();
            assert_eq!(rest, expected, "the rest keeps ranked order");
            firsts[first as usize] += 1;
        }
        // The better of two uniform distinct picks: P(first = i) = 2(n-1-i) / (n(n-1)).
        assert_eq!(firsts[5], 0, "the worst entry never wins a pair");
        assert!(firsts[0] > firsts[1] && firsts[1] > firsts[2] && firsts[3] > firsts[4]);
        assert!((1800..2200).contains(&firsts[0]), "{firsts:?}");
    }

    #[test]
    fn only_full_fan_outs_are_skipped_and_only_at_5000() {
        let big = crate::Scenario::login_storm_scaled(5000);
        let join = crate::Scenario::join_at(1000);
        for s in Strategy::ALL {
            let bounded = matches!(s, Strategy::Default | Strategy::Bounded);
            assert_eq!(s.skip_reason(&big).is_some(), !bounded, "{s}");
            assert!(s.skip_reason(&join).is_none(), "{s}: join-1000 has {}", join.instance_count());
        }
        assert!(Strategy::Full.skip_reason(&big).unwrap().contains("4999 peers"));
    }

    #[test]
    fn names_round_trip() {
        for s in Strategy::ALL {
            assert_eq!(s.name().parse::<Strategy>().unwrap(), s);
        }
        assert!("herd".parse::<Strategy>().is_err());
    }
}
