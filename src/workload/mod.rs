//! Workloads and the pure, exact ranking function (SPEC.md phase 2, items 4-5).
//!
//! Workload is `connected / max_sessions`. Ratios are compared exactly by
//! integer cross-multiplication (`a/b < c/d  <=>  a*d < c*b`, both products fit
//! in `u64`), never through floating point, so two instances at 1/3 and 2/6 tie
//! exactly and 1/3 vs 333/1000 orders correctly.

use std::cmp::Ordering;

mod rank;

pub use self::rank::{rank, rank_into};

/// An instance's identity within its cluster (the registry's key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct InstanceId(pub u32);

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What an instance does in its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[non_exhaustive]
pub enum Role {
    /// Accepts sessions and balances: the seed's cluster without a dedicated
    /// load balancer, where every instance is both.
    Serving,
    /// Balances only: never accepts a session, never appears in a ranked list.
    LoadBalancerOnly,
    /// Belongs to no cluster; answers a handshake with itself alone.
    Standalone,
}

/// An instance's live figures: sessions connected and the most it admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Workload {
    /// Sessions currently connected.
    pub connected: u32,
    /// The most sessions the instance admits ("Max concurrent sessions").
    pub max_sessions: u32,
}

impl Workload {
    /// A workload from its two figures.
    pub const fn new(connected: u32, max_sessions: u32) -> Self {
        Workload { connected, max_sessions }
    }

    /// Sessions still free (`max_sessions - connected`, never below zero).
    pub const fn free(self) -> u32 {
        self.max_sessions.saturating_sub(self.connected)
    }

    /// No session can be admitted (`connected >= max_sessions`).
    pub const fn is_full(self) -> bool {
        self.connected >= self.max_sessions
    }

    /// Compares `connected / max_sessions` exactly. A zero `max_sessions`
    /// counts as fully loaded (it can admit nothing), above any real ratio.
    pub fn cmp_load(self, other: Workload) -> Ordering {
        match (self.max_sessions, other.max_sessions) {
            (0, 0) => Ordering::Equal,
            (0, _) => Ordering::Greater,
            (_, 0) => Ordering::Less,
            (a_max, b_max) => {
                let lhs = u64::from(self.connected) * u64::from(b_max);
                let rhs = u64::from(other.connected) * u64::from(a_max);
                lhs.cmp(&rhs)
            }
        }
    }

    /// The ranking order: lighter load first, then more free sessions first.
    /// Equal under this order means an identical workload (see [`rank`]).
    pub fn cmp_rank(self, other: Workload) -> Ordering {
        self.cmp_load(other).then_with(|| other.free().cmp(&self.free()))
    }
}

/// One member as the ranking sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Candidate {
    /// The member's role.
    pub role: Role,
    /// Accepting new sessions (not draining).
    pub accepting: bool,
    /// Its live (or predicted) figures.
    pub workload: Workload,
}

impl Candidate {
    /// May enter a ranked list: `Serving`, accepting and not full. (Members
    /// whose figures are stale or missing never become candidates.)
    pub fn is_eligible(&self) -> bool {
        self.role == Role::Serving && self.accepting && !self.workload.is_full()
    }
}
