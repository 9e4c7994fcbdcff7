use super::*;
use crate::workload::Role;

fn serving(connected: u32, max: u32) -> Candidate {
    Candidate { role: Role::Serving, accepting: true, workload: Workload::new(connected, max) }
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
    let mut lb = serving(0, 10);
    lb.role = Role::LoadBalancerOnly;
    let c = [serving(10, 10), draining, lb, serving(9, 10)];
    assert_eq!(rank(&c, 0), vec![3]);
}

#[test]
fn salt_rotates_tied_members() {
    let c = [serving(1, 4), serving(1, 4), serving(1, 4), serving(0, 4)];
    assert_eq!(rank(&c, 0), vec![3, 0, 1, 2]);
    assert_eq!(rank(&c, 1), vec![3, 1, 2, 0]);
    assert_eq!(rank(&c, 5), vec![3, 2, 0, 1]);
}

/// The radix pass sorts like `sort_unstable`, whether the words spread
/// evenly, crowd one bucket, or span fewer bits than a digit.
#[test]
fn sort_words_sorts() {
    let mut rng = crate::rng::Rng::new(11);
    for (len, span) in [(RADIX_MIN, u64::MAX), (RADIX_MIN + 1, 1 << 40), (20_000, 1 << 8), (9_000, 1 << 60)] {
        let mut words: Vec<usize> = (0..len).map(|i| (rng.below_or_eq(span) as usize) << 14 | i).collect();
        // A crowded bucket: a tenth of the words share the top bits.
        for word in words.iter_mut().step_by(10) {
            *word &= (1 << 20) - 1;
        }
        let mut expected = words.clone();
        expected.sort_unstable();
        sort_words(&mut words);
        assert_eq!(words, expected, "len {len} span {span}");
        // Called again on sorted words, with the spare half already there.
        sort_words(&mut words);
        assert_eq!(words, expected, "len {len} span {span}, sorted");
    }
}

/// Every path (comparison, exact packing, approximate packing) gives the
/// same list, on inputs built to reach each of them.
#[test]
fn all_three_paths_agree() {
    let mut rng = crate::rng::Rng::new(42);
    for round in 0..300 {
        let len = 1 + rng.below_or_eq(60) as usize;
        let cap = [3u64, 200, 65_535, u64::from(u32::MAX)][round % 4];
        let cands: Vec<Candidate> = (0..len)
            .map(|_| {
                let max = rng.below_or_eq(cap) as u32;
                let mut c = serving(rng.below_or_eq(u64::from(max)) as u32, max);
                c.accepting = rng.below_or_eq(9) != 0;
                c
            })
            .collect();
        let salt = rng.next_u64();
        let mut by_comparison = Vec::new();
        rank_by_comparison(&cands, salt, &mut by_comparison);
        let chosen = Packing::choose(&cands).unwrap();
        assert_eq!(chosen.exact, cap < 1 << 20, "cap {cap}");
        let index_bits = chosen.index_bits;
        for packing in
            [chosen, Packing { load_bits: 32, free_bits: 32 - index_bits, index_bits, exact: false }]
        {
            let mut packed = Vec::new();
            rank_packed(&cands, salt, &mut packed, packing);
            assert_eq!(packed, by_comparison, "{packing:?} on {cands:?}");
        }
    }
}
