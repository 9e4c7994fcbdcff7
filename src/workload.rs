//! Workloads and the pure, exact ranking function (SPEC.md phase 2, items 4-5).
//!
//! Workload is `connected / max_sessions`. Ratios are compared exactly by
//! integer cross-multiplication (`a/b < c/d  <=>  a*d < c*b`, both products fit
//! in `u64`), never through floating point, so two instances at 1/3 and 2/6 tie
//! exactly and 1/3 vs 333/1000 orders correctly.

use std::cmp::Ordering;

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
    /// Heartbeat younger than `member_ttl` and answered this round.
    pub fresh: bool,
    /// Its live (or predicted) figures.
    pub workload: Workload,
}

impl Candidate {
    /// May enter a ranked list: `Serving`, accepting, fresh and not full.
    pub fn is_eligible(&self) -> bool {
        self.role == Role::Serving && self.accepting && self.fresh && !self.workload.is_full()
    }
}

/// Ranks `candidates`, returning the indices of the eligible ones, least
/// loaded first. See [`rank_into`].
pub fn rank(candidates: &[Candidate], salt: u64) -> Vec<usize> {
    let mut out = Vec::new();
    rank_into(candidates, salt, &mut out);
    out
}

/// Ranks `candidates` into `out` (cleared first): indices of the eligible
/// members only, ordered by exact workload ascending, then more free sessions
/// first. Members tied on both have identical workloads; each tied group keeps
/// input order rotated left by `salt % group_len`, so different salts put each
/// tied member first in turn and same inputs with the same salt give the same
/// list. O(n log n); allocates nothing beyond `out`.
pub fn rank_into(candidates: &[Candidate], salt: u64, out: &mut Vec<usize>) {
    out.clear();
    match Packing::for_len(candidates.len()) {
        Some(packing) => rank_packed(candidates, salt, out, packing),
        None => rank_by_comparison(candidates, salt, out),
    }
}

/// The exact order of two eligible members (`a`, `b` index `candidates`):
/// workload by cross-multiplication, then more free sessions, then input order.
fn cmp_exact(candidates: &[Candidate], a: usize, b: usize) -> Ordering {
    candidates[a].workload.cmp_rank(candidates[b].workload).then(a.cmp(&b))
}

/// The plain path: sort indices with the exact comparator. Used where a packed
/// key does not fit (32-bit targets, more than 2^32 candidates).
fn rank_by_comparison(candidates: &[Candidate], salt: u64, out: &mut Vec<usize>) {
    out.extend(candidates.iter().enumerate().filter(|(_, c)| c.is_eligible()).map(|(i, _)| i));
    out.sort_unstable_by(|&a, &b| cmp_exact(candidates, a, b));
    rotate_ties(out, salt, |a, b| candidates[a].workload == candidates[b].workload);
}

/// How an eligible member packs into one 64-bit word of `out`, so the bulk of
/// the work is a primitive integer sort (several times faster than sorting
/// indices through a comparator that chases each index into `candidates`):
///
/// ```text
/// [ load: 32 bits ][ fewer free sessions: 32 - index_bits ][ index: index_bits ]
/// ```
///
/// `load = floor(connected * 2^32 / max_sessions)`. An eligible member has
/// `connected < max_sessions`, so `load < 2^32`, and the floor is monotone:
/// a smaller `load` is a strictly smaller exact ratio. Equal `load`s do not
/// prove equal ratios (two fractions with denominators above 2^16 may share a
/// floor), and the free-session field saturates, so every run of equal `load`
/// is then re-sorted with the exact comparator ([`cmp_exact`], integer
/// cross-multiplication). The packed sort only ever decides between members
/// whose exact ratios differ in the direction it sorts them; every tie, and
/// every near-tie, is decided by cross-multiplication.
#[derive(Debug, Clone, Copy)]
struct Packing {
    index_bits: u32,
    free_bits: u32,
}

impl Packing {
    const LOAD_SHIFT: u32 = 32;

    /// The packing for `len` candidates, if an index fits in 32 bits beside
    /// the load and `out`'s words are 64 bits wide.
    fn for_len(len: usize) -> Option<Packing> {
        let index_bits = usize::BITS - len.saturating_sub(1).leading_zeros();
        (usize::BITS == 64 && index_bits <= 32)
            .then_some(Packing { index_bits, free_bits: Self::LOAD_SHIFT - index_bits })
    }

    fn index_mask(self) -> u64 {
        (1u64 << self.index_bits) - 1
    }

    /// The word for eligible member `index` with workload `w`.
    fn pack(self, index: usize, w: Workload) -> u64 {
        let load = (u64::from(w.connected) << Self::LOAD_SHIFT) / u64::from(w.max_sessions);
        let free_max = (1u64 << self.free_bits) - 1;
        let fewer_free = free_max - u64::from(w.free()).min(free_max);
        (load << Self::LOAD_SHIFT) | (fewer_free << self.index_bits) | index as u64
    }
}

fn rank_packed(candidates: &[Candidate], salt: u64, out: &mut Vec<usize>, packing: Packing) {
    // `as` conversions between u64 and usize are lossless: `for_len` admits
    // 64-bit targets only.
    out.extend(
        candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_eligible())
            .map(|(i, c)| packing.pack(i, c.workload) as usize),
    );
    out.sort_unstable();
    let mask = packing.index_mask() as usize;
    let load_of = |word: usize| word >> Packing::LOAD_SHIFT;
    let mut start = 0;
    while start < out.len() {
        let load = load_of(out[start]);
        let end = start + out[start..].iter().position(|&w| load_of(w) != load).unwrap_or(out.len() - start);
        let run = &mut out[start..end];
        for word in run.iter_mut() {
            *word &= mask;
        }
        if run.len() > 1 {
            // Already in packed order, which is the exact order unless two
            // different ratios share a `load` or free sessions saturated; the
            // sort confirms a sorted run in one linear pass.
            run.sort_unstable_by(|&a, &b| cmp_exact(candidates, a, b));
            rotate_ties(run, salt, |a, b| candidates[a].workload == candidates[b].workload);
        }
        start = end;
    }
}

/// Rotates each run of equal neighbours (by `same`) left by `salt % run_len`.
fn rotate_ties(order: &mut [usize], salt: u64, same: impl Fn(usize, usize) -> bool) {
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && same(order[start], order[end]) {
            end += 1;
        }
        let len = end - start;
        if len > 1 {
            order[start..end].rotate_left((salt % len as u64) as usize);
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serving(connected: u32, max: u32) -> Candidate {
        Candidate {
            role: Role::Serving,
            accepting: true,
            fresh: true,
            workload: Workload::new(connected, max),
        }
    }

    #[test]
    fn seed_example_orders_by_ratio() {
        // A 3/10, B 1/10, C 5/10 -> B, A, C.
        let c = [serving(3, 10), serving(1, 10), serving(5, 10)];
        assert_eq!(rank(&c, 0), vec![1, 0, 2]);
    }

    #[test]
    fn exact_ratios_and_free_sessions_break_ties() {
        // 1/3 == 2/6, but 2/6 has more free sessions; 333/1000 < 1/3.
        let c = [serving(1, 3), serving(2, 6), serving(333, 1000)];
        assert_eq!(rank(&c, 0), vec![2, 1, 0]);
    }

    #[test]
    fn ineligible_members_are_left_out() {
        let mut draining = serving(0, 10);
        draining.accepting = false;
        let mut stale = serving(0, 10);
        stale.fresh = false;
        let mut lb = serving(0, 10);
        lb.role = Role::LoadBalancerOnly;
        let c = [serving(10, 10), draining, stale, lb, serving(9, 10)];
        assert_eq!(rank(&c, 0), vec![4]);
    }

    #[test]
    fn salt_rotates_tied_members() {
        let c = [serving(1, 4), serving(1, 4), serving(1, 4), serving(0, 4)];
        assert_eq!(rank(&c, 0), vec![3, 0, 1, 2]);
        assert_eq!(rank(&c, 1), vec![3, 1, 2, 0]);
        assert_eq!(rank(&c, 5), vec![3, 2, 0, 1]);
    }
}
