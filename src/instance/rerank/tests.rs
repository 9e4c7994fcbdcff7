//! [`Rerank`] against the full re-rank it replaces, over random rounds.

use proptest::prelude::*;

use super::*;
use crate::workload::{Role, Workload};

/// One random round: reported figures, extra reservations, who headed
/// replies before (in that order), herd control, then per reply a salt, a
/// list length, whether the head's reservation is counted, and which
/// member's reservation the client replaced (an index, wrapped).
#[derive(Debug, Clone)]
struct RoundCase {
    reported: Vec<Candidate>,
    extra: Vec<u32>,
    headed_before: Vec<usize>,
    herd: bool,
    replies: Vec<(u64, usize, bool, Option<usize>)>,
}

fn candidate() -> impl Strategy<Value = Candidate> {
    // Small capacities make ties and full members common.
    (1u32..5, 0u32..6, prop::bool::weighted(0.9), prop::bool::weighted(0.95)).prop_map(
        |(max, connected, accepting, serving)| Candidate {
            role: if serving { Role::Serving } else { Role::LoadBalancerOnly },
            accepting,
            workload: Workload::new(connected.min(max), max),
        },
    )
}

fn round_case() -> impl Strategy<Value = RoundCase> {
    (0usize..40).prop_flat_map(|n| {
        (
            prop::collection::vec(candidate(), n),
            prop::collection::vec(prop_oneof![3 => Just(0u32), 1 => 1u32..4], n),
            prop::collection::vec(0..n.max(1), 0..n + 1),
            any::<bool>(),
            prop::collection::vec(
                (
                    any::<u64>(),
                    prop_oneof![3 => Just(usize::MAX), 1 => 1usize..8],
                    prop::bool::weighted(0.9),
                    prop::option::weighted(0.3, 0..n.max(1)),
                ),
                1..30,
            ),
        )
            .prop_map(|(reported, extra, headed_before, herd, replies)| RoundCase {
                reported,
                extra,
                headed_before,
                herd,
                replies,
            })
    })
}

fn id(i: usize) -> InstanceId {
    InstanceId(3 * i as u32 + 1)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Every reply of a round gets exactly the list the full re-rank gives
    /// for the same figures, records and salt.
    #[test]
    fn incremental_lists_equal_the_full_re_rank(case in round_case()) {
        let n = case.reported.len();
        let sources: Vec<(InstanceId, ())> = (0..n).map(|i| (id(i), ())).collect();
        let mut herd = Herd::new(InstanceId(0));
        for &i in case.headed_before.iter().filter(|&&i| i < n) {
            herd.headed(id(i));
        }
        let reported = case.reported.clone();
        let mut predicted = reported.clone();
        if case.herd {
            for (p, extra) in predicted.iter_mut().zip(&case.extra) {
                p.workload.connected = p.workload.connected.saturating_add(*extra);
            }
        }
        let mut rerank = Rerank::default();
        rerank.build(&reported, &predicted, case.herd, |i| herd.last_headed(id(i)));
        let (mut scratch, mut order, mut list) = (TailScratch::default(), Vec::new(), Vec::new());
        for (step, &(salt, max_len, counted, replaced)) in case.replies.iter().enumerate() {
            rank_full(case.herd.then_some(&herd), &sources, &reported, &predicted, salt, &mut scratch, &mut order);
            order.truncate(max_len);
            rerank.list(&reported, &predicted, salt, max_len, &mut list);
            prop_assert_eq!(&list, &order, "reply {}", step);
            let Some(&head) = list.first() else { continue };
            if !case.herd {
                continue;
            }
            rerank.remove(&reported, &predicted, head);
            herd.headed(id(head));
            rerank.set_last_headed(head, herd.last_headed(id(head)));
            if counted {
                predicted[head].workload.connected += 1;
            }
            rerank.insert(&reported, &predicted, head);
            if let Some(r) = replaced.filter(|&r| r < n) {
                if predicted[r].workload.connected > reported[r].workload.connected {
                    rerank.remove(&reported, &predicted, r);
                    predicted[r].workload.connected -= 1;
                    rerank.insert(&reported, &predicted, r);
                }
            }
        }
    }
}

#[test]
fn a_tied_idle_cluster_takes_arrivals_in_turn_then_levels_up() {
    // Four idle members of one capacity, none headed yet: the salt picks the
    // first, the rest follow in index order from it, and a member that took
    // an arrival comes after the idle ones.
    let reported = vec![Candidate { role: Role::Serving, accepting: true, workload: Workload::new(0, 2) }; 4];
    let mut predicted = reported.clone();
    let mut herd = Herd::new(InstanceId(0));
    let mut rerank = Rerank::default();
    rerank.build(&reported, &predicted, true, |_| 0);
    let mut list = Vec::new();
    let mut heads = Vec::new();
    for (k, salt) in [2u64, 0, 0, 0, 5].into_iter().enumerate() {
        rerank.list(&reported, &predicted, salt, usize::MAX, &mut list);
        let head = list[0];
        heads.push(head);
        rerank.remove(&reported, &predicted, head);
        herd.headed(id(head));
        rerank.set_last_headed(head, herd.last_headed(id(head)));
        predicted[head].workload.connected += 1;
        rerank.insert(&reported, &predicted, head);
        if k == 3 {
            // Everyone took one: the next level, members at 1/2, then nobody.
            rerank.list(&reported, &predicted, 0, usize::MAX, &mut list);
            assert_eq!(list, vec![2, 0, 1, 3], "least recently headed first on the new level");
        }
    }
    assert_eq!(heads, vec![2, 0, 1, 3, 2]);
    // Everyone is predicted full or at 1/2: member 2 (2/2) is in the tail.
    rerank.list(&reported, &predicted, 0, usize::MAX, &mut list);
    assert_eq!(list, vec![0, 1, 3, 2]);
}
