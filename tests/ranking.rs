//! Ranking (SPEC.md phase 2, items 4-5) against an independent reference.

use std::cmp::Ordering;

use aos_cluster::rng::Rng;
use aos_cluster::workload::{rank, rank_into, Candidate, Role, Workload};
use proptest::prelude::*;

/// An exact fraction compared through `u128` products: written apart from the
/// crate's `u64` cross-multiplication so a shared mistake is unlikely.
#[derive(Debug, Clone, Copy)]
struct Ratio {
    num: u128,
    den: u128,
}

impl Ratio {
    fn of(w: Workload) -> Ratio {
        Ratio { num: u128::from(w.connected), den: u128::from(w.max_sessions) }
    }

    fn cmp(self, other: Ratio) -> Ordering {
        (self.num * other.den).cmp(&(other.num * self.den))
    }
}

fn eligible(c: &Candidate) -> bool {
    c.role == Role::Serving && c.accepting && c.workload.connected < c.workload.max_sessions
}

fn free(c: &Candidate) -> u64 {
    u64::from(c.workload.max_sessions) - u64::from(c.workload.connected)
}

/// The reference: a stable sort by (ratio, more free) keeps tied members in
/// input order; each group of identical workloads is then rotated left by
/// `salt % group length`, rebuilding the list group by group.
fn reference(candidates: &[Candidate], salt: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).filter(|&i| eligible(&candidates[i])).collect();
    order.sort_by(|&a, &b| {
        let (ca, cb) = (&candidates[a], &candidates[b]);
        Ratio::of(ca.workload).cmp(Ratio::of(cb.workload)).then_with(|| free(cb).cmp(&free(ca)))
    });
    let mut result = Vec::with_capacity(order.len());
    let mut i = 0;
    while i < order.len() {
        let w = candidates[order[i]].workload;
        let group: Vec<usize> =
            order[i..].iter().copied().take_while(|&j| candidates[j].workload == w).collect();
        let shift = (salt % group.len() as u64) as usize;
        result.extend(group.iter().cycle().skip(shift).take(group.len()));
        i += group.len();
    }
    result
}

fn serving(connected: u32, max_sessions: u32) -> Candidate {
    Candidate { role: Role::Serving, accepting: true, workload: Workload::new(connected, max_sessions) }
}

/// Workloads from three regimes: tiny capacities (many exact ties such as 1/3
/// and 2/6), AX-like capacities, and capacities near `u32::MAX` where distinct
/// ratios differ by less than 2^-32.
fn workload() -> impl Strategy<Value = Workload> {
    prop_oneof![
        (0u32..=8, 0u32..=8).prop_map(|(c, m)| Workload::new(c, m)),
        (1u32..=2000).prop_flat_map(|m| (0..=m, Just(m))).prop_map(|(c, m)| Workload::new(c, m)),
        (u32::MAX - 1000..=u32::MAX)
            .prop_flat_map(|m| (prop_oneof![0..=m, m - 1000..=m], Just(m)))
            .prop_map(|(c, m)| Workload::new(c, m)),
    ]
}

fn candidate() -> impl Strategy<Value = Candidate> {
    (
        prop_oneof![8 => Just(Role::Serving), 1 => Just(Role::LoadBalancerOnly), 1 => Just(Role::Standalone)],
        prop::bool::weighted(0.8),
        workload(),
    )
        .prop_map(|(role, accepting, workload)| Candidate { role, accepting, workload })
}

fn candidates(max_len: usize) -> impl Strategy<Value = Vec<Candidate>> {
    prop::collection::vec(candidate(), 0..=max_len)
}

/// Many members over few distinct workloads, so big tied groups form.
fn tie_heavy(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<Candidate>> {
    (
        prop::collection::vec((0u32..4, 1u32..6), 1..=6),
        prop::collection::vec((any::<prop::sample::Index>(), prop::bool::weighted(0.95)), len),
    )
        .prop_map(|(kinds, picks)| {
            picks
                .into_iter()
                .map(|(pick, accepting)| {
                    let (c, m) = *pick.get(&kinds);
                    Candidate { accepting, ..serving(c, m) }
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn output_is_sorted_by_exact_ratio_then_free(cands in candidates(200), salt in any::<u64>()) {
        let ranked = rank(&cands, salt);
        for pair in ranked.windows(2) {
            let (a, b) = (&cands[pair[0]], &cands[pair[1]]);
            let by_ratio = Ratio::of(a.workload).cmp(Ratio::of(b.workload));
            prop_assert_ne!(by_ratio, Ordering::Greater, "{:?} before {:?}", a.workload, b.workload);
            if by_ratio == Ordering::Equal {
                prop_assert!(free(a) >= free(b), "{:?} before {:?}", a.workload, b.workload);
            }
        }
    }

    #[test]
    fn output_holds_exactly_the_eligible_members_once(cands in candidates(200), salt in any::<u64>()) {
        let mut ranked = rank(&cands, salt);
        ranked.sort_unstable();
        let expected: Vec<usize> = (0..cands.len()).filter(|&i| eligible(&cands[i])).collect();
        prop_assert_eq!(ranked, expected);
    }

    #[test]
    fn equal_inputs_and_salt_give_equal_output(cands in candidates(200), salt in any::<u64>()) {
        let copy = cands.clone();
        let first = rank(&cands, salt);
        prop_assert_eq!(&first, &rank(&copy, salt));
        // `rank_into` clears whatever the buffer held.
        let mut out = vec![usize::MAX; 7];
        rank_into(&copy, salt, &mut out);
        prop_assert_eq!(first, out);
    }

    #[test]
    fn every_tied_member_comes_first_for_some_salt(
        tied in 2usize..12,
        load in (1u32..50).prop_flat_map(|m| (0..m, Just(m))),
        heavier in prop::collection::vec((1u32..50, 0u32..50), 0..20),
        seed in any::<u64>(),
    ) {
        let (connected, max) = load;
        // Members strictly heavier than the tied group, interleaved with it.
        let mut cands: Vec<Candidate> = heavier
            .into_iter()
            .map(|(m, extra)| {
                let c = (connected as u64 * m as u64 / max as u64) as u32 + 1 + extra % m.max(1);
                serving(c.min(m + 1), m)
            })
            .filter(|c| Ratio::of(c.workload).cmp(Ratio::of(Workload::new(connected, max))) == Ordering::Greater)
            .collect();
        let mut tied_at = Vec::new();
        for k in 0..tied {
            let at = ((seed >> (k * 5 % 60)) as usize) % (cands.len() + 1);
            cands.insert(at, serving(connected, max));
        }
        for (i, c) in cands.iter().enumerate() {
            if c.workload == Workload::new(connected, max) {
                tied_at.push(i);
            }
        }
        prop_assert_eq!(tied_at.len(), tied);
        let mut firsts: Vec<usize> = (0..tied as u64).map(|salt| rank(&cands, salt)[0]).collect();
        firsts.sort_unstable();
        prop_assert_eq!(firsts, tied_at);
    }

    #[test]
    fn tied_groups_rotate_through_every_member(cands in tie_heavy(1..=300), salt in any::<u64>()) {
        // In any input, each tied group's first slot takes every member of the
        // group as the salt runs over the group's length.
        let base = rank(&cands, salt);
        let mut i = 0;
        while i < base.len() {
            let w = cands[base[i]].workload;
            let len = base[i..].iter().take_while(|&&j| cands[j].workload == w).count();
            let mut group: Vec<usize> = base[i..i + len].to_vec();
            let mut firsts: Vec<usize> = (0..len as u64).map(|s| rank(&cands, s)[i]).collect();
            group.sort_unstable();
            firsts.sort_unstable();
            prop_assert_eq!(firsts, group);
            i += len;
        }
    }

    #[test]
    fn agrees_with_the_u128_reference(cands in candidates(300), salt in any::<u64>()) {
        prop_assert_eq!(rank(&cands, salt), reference(&cands, salt));
    }

    #[test]
    fn agrees_with_the_reference_on_ax_capacities(
        cands in prop::collection::vec(
            (1u32..=65_535).prop_flat_map(|m| (0..=m, Just(m), prop::bool::weighted(0.9))),
            0..=300,
        ),
        salt in any::<u64>(),
    ) {
        // Capacities up to AX's 65535 only (the exact packed path of `rank`).
        let cands: Vec<Candidate> =
            cands.into_iter().map(|(c, m, accepting)| Candidate { accepting, ..serving(c, m) }).collect();
        prop_assert_eq!(rank(&cands, salt), reference(&cands, salt));
    }

    #[test]
    fn agrees_with_the_reference_on_tie_heavy_inputs(cands in tie_heavy(1..=300), salt in any::<u64>()) {
        prop_assert_eq!(rank(&cands, salt), reference(&cands, salt));
    }
}

/// A large cluster drawn from `seed` with the same regimes as [`candidate`],
/// built directly: proptest's per-element strategies are too slow in debug
/// for 100k members.
fn large_cluster(seed: u64, len: usize) -> Vec<Candidate> {
    let mut rng = Rng::new(seed);
    let mut below = |n: u64| rng.below_or_eq(n - 1);
    (0..len)
        .map(|_| {
            let role = match below(10) {
                0 => Role::LoadBalancerOnly,
                1 => Role::Standalone,
                _ => Role::Serving,
            };
            let accepting = below(5) != 0;
            let workload = match below(3) {
                0 => Workload::new(below(9) as u32, below(9) as u32),
                1 => {
                    let m = 1 + below(2000) as u32;
                    Workload::new(below(u64::from(m) + 1) as u32, m)
                }
                _ => {
                    let m = u32::MAX - below(1001) as u32;
                    Workload::new(m - below(1001) as u32, m)
                }
            };
            Candidate { role, accepting, workload }
        })
        .collect()
}

proptest! {
    // Up to 100k members: few cases, so the file stays fast in debug.
    #![proptest_config(ProptestConfig::with_cases(4))]

    #[test]
    fn agrees_with_the_reference_on_large_clusters(
        seed in any::<u64>(),
        len in 50_000usize..=100_000,
        salt in any::<u64>(),
    ) {
        let cands = large_cluster(seed, len);
        prop_assert_eq!(rank(&cands, salt), reference(&cands, salt));
    }

    #[test]
    fn agrees_with_the_reference_on_large_tie_heavy_clusters(
        cands in tie_heavy(50_000..=100_000),
        salt in any::<u64>(),
    ) {
        prop_assert_eq!(rank(&cands, salt), reference(&cands, salt));
    }
}

#[test]
fn near_ties_below_two_to_the_minus_32_are_ordered_exactly() {
    // Distinct ratios whose difference is below 2^-32 share a 32-bit floor;
    // they must still be ordered by their exact values.
    let m = u32::MAX;
    let cands =
        [serving(m - 2, m), serving(m - 3, m - 1), serving(m - 2, m - 1), serving(1, m), serving(1, m - 1)];
    // (m-3)/(m-1) < (m-2)/m < (m-2)/(m-1); 1/m < 1/(m-1).
    assert_eq!(rank(&cands, 0), vec![3, 4, 1, 0, 2]);
    assert_eq!(rank(&cands, 0), reference(&cands, 0));
}

#[test]
fn the_seed_example_and_exact_ties() {
    // The seed's example: 3/10, 1/10, 5/10 -> 1/10, 3/10, 5/10.
    assert_eq!(rank(&[serving(3, 10), serving(1, 10), serving(5, 10)], 0), vec![1, 0, 2]);
    // 1/3 == 2/6 exactly (2/6 has more free sessions), and 333/1000 < 1/3, which
    // f32 would round to the same value as 1/3.
    assert_eq!(rank(&[serving(1, 3), serving(2, 6), serving(333_333, 1_000_000)], 0), vec![2, 1, 0]);
    // Zero max_sessions can admit nothing: never ranked, never a division by zero.
    assert_eq!(rank(&[serving(0, 0), serving(0, 1)], 0), vec![1]);
}
