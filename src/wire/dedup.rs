//! The one duplicate finder for ranked lists and seed lists (SPEC.md phase
//! 1, item 5): an entry repeats when its target (host ASCII
//! case-insensitive, port; the instance name is a label, see
//! [`Endpoint::same_target`]) or its instance id appeared earlier in the list.
//!
//! The decoder and the encoder refuse a list with a repeat; the client drops
//! repeats from a list it received; configuration validation reports repeated
//! seeds. Long lists cost O(n log n): `(key, position)` pairs are sorted in a
//! reusable scratch vector instead of hashed into a set, so a reused scratch
//! makes the check allocation-free, and the order of the output never
//! depends on a hasher.

use super::error::Duplicate;
use super::message::RankedEntry;
use crate::endpoint::Endpoint;

/// Up to this many items, every pair of fingerprints is compared: cheaper
/// than sorting, and still one fingerprint per item.
const SMALL_LIST: usize = 16;

/// Reusable buffers for the duplicate finder (keep one per decoder or
/// client so the check does not allocate).
#[derive(Debug, Clone, Default)]
pub(crate) struct DedupScratch {
    /// `(key, position)` pairs: fingerprints, then ids.
    order: Vec<(u64, usize)>,
    /// Per position: does this entry repeat an earlier one?
    repeat: Vec<bool>,
}

impl DedupScratch {
    /// Empties the buffers and gives back the capacity beyond what a list of
    /// `entries` needs.
    pub(crate) fn shrink_to(&mut self, entries: usize) {
        self.order.clear();
        self.repeat.clear();
        self.order.shrink_to(entries);
        self.repeat.shrink_to(entries);
    }
}

/// Calls `note(later, first)` for every item whose endpoint is the same target
/// as an earlier item's, `first` being the earliest position of that target.
/// Notes come in no particular order.
pub(crate) fn repeated_targets<T>(
    items: &[T],
    endpoint: impl Fn(&T) -> &Endpoint,
    order: &mut Vec<(u64, usize)>,
    note: impl FnMut(usize, usize),
) {
    repeated_targets_by(items, endpoint, Endpoint::target_fingerprint, order, note);
}

/// [`repeated_targets`] with the fingerprint as a parameter, so tests can
/// force collisions. `fingerprint` must give the same value for the same target.
fn repeated_targets_by<T>(
    items: &[T],
    endpoint: impl Fn(&T) -> &Endpoint,
    fingerprint: impl Fn(&Endpoint) -> u64,
    order: &mut Vec<(u64, usize)>,
    mut note: impl FnMut(usize, usize),
) {
    if items.len() < 2 {
        return;
    }
    order.clear();
    order.extend(items.iter().enumerate().map(|(i, item)| (fingerprint(endpoint(item)), i)));
    if items.len() <= SMALL_LIST {
        for later in 1..order.len() {
            let (key, _) = order[later];
            let same = |&(k, earlier): &(u64, usize)| {
                k == key && endpoint(&items[earlier]).same_target(endpoint(&items[later]))
            };
            if let Some(&(_, first)) = order[..later].iter().find(|pair| same(pair)) {
                note(later, first);
            }
        }
        return;
    }
    // Sorting by (fingerprint, position) groups equal targets; a run of equal
    // fingerprints (rarely longer than one target) is then ordered by target,
    // position second, so each target's first occurrence leads its group.
    order.sort_unstable();
    for run in order.chunk_by_mut(|a, b| a.0 == b.0).filter(|run| run.len() > 1) {
        run.sort_unstable_by(|&(_, a), &(_, b)| {
            endpoint(&items[a]).cmp_target(endpoint(&items[b])).then(a.cmp(&b))
        });
        let mut first = run[0].1;
        for pair in run.windows(2) {
            let (earlier, later) = (pair[0].1, pair[1].1);
            if endpoint(&items[earlier]).same_target(endpoint(&items[later])) {
                note(later, first);
            } else {
                first = later;
            }
        }
    }
}

/// Calls `note(later)` for every entry whose id appeared earlier.
fn repeated_ids(entries: &[RankedEntry], order: &mut Vec<(u64, usize)>, mut note: impl FnMut(usize)) {
    if entries.len() < 2 {
        return;
    }
    order.clear();
    order.extend(entries.iter().enumerate().map(|(i, e)| (u64::from(e.id.0), i)));
    if entries.len() <= SMALL_LIST {
        for later in 1..order.len() {
            if order[..later].iter().any(|&(id, _)| id == order[later].0) {
                note(later);
            }
        }
        return;
    }
    order.sort_unstable();
    for pair in order.windows(2) {
        if pair[0].0 == pair[1].0 {
            note(pair[1].1);
        }
    }
}

/// The first entry (in list order) that repeats an earlier id or target, and
/// what it repeats; an entry repeating both is reported as an id repeat.
pub(crate) fn first_repeat(
    entries: &[RankedEntry],
    scratch: &mut DedupScratch,
) -> Option<(usize, Duplicate)> {
    let mut first: Option<(usize, Duplicate)> = None;
    let mut keep_earliest = |index: usize, what: Duplicate| match first {
        Some((seen, _)) if seen <= index => {}
        _ => first = Some((index, what)),
    };
    repeated_ids(entries, &mut scratch.order, |later| {
        keep_earliest(later, Duplicate::Id(entries[later].id));
    });
    repeated_targets(
        entries,
        |e| &e.endpoint,
        &mut scratch.order,
        |later, _| {
            keep_earliest(later, Duplicate::Endpoint);
        },
    );
    first
}

/// Removes every entry whose target or id appeared earlier in the list
/// (earlier removed entries included: the test is on the list as received),
/// keeping the order of the rest. The client's cleanup of a ranked list that
/// did not come through the decoder's check.
pub(crate) fn drop_repeats(entries: &mut Vec<RankedEntry>, scratch: &mut DedupScratch) {
    if entries.len() < 2 {
        return;
    }
    let DedupScratch { order, repeat } = scratch;
    repeat.clear();
    repeat.resize(entries.len(), false);
    repeated_ids(entries, order, |later| repeat[later] = true);
    repeated_targets(entries, |e| &e.endpoint, order, |later, _| repeat[later] = true);
    let mut position = 0;
    entries.retain(|_| {
        position += 1;
        !repeat[position - 1]
    });
}

/// Every repeated seed as `(repeat's position, first position)`, in the
/// order of the repeats.
pub(crate) fn repeated_seeds(seeds: &[Endpoint]) -> Vec<(usize, usize)> {
    let mut repeats = Vec::new();
    repeated_targets(seeds, |e| e, &mut Vec::new(), |later, first| repeats.push((later, first)));
    repeats.sort_unstable();
    repeats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{InstanceId, Workload};
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn entry(id: u32, text: &str) -> RankedEntry {
        RankedEntry { id: InstanceId(id), endpoint: text.parse().unwrap(), workload: Workload::new(0, 1) }
    }

    /// The definition, quadratic: an entry repeats when any earlier entry
    /// has its id or its target.
    fn naive_repeats(entries: &[RankedEntry]) -> Vec<bool> {
        (0..entries.len())
            .map(|i| {
                entries[..i]
                    .iter()
                    .any(|e| e.id == entries[i].id || e.endpoint.same_target(&entries[i].endpoint))
            })
            .collect()
    }

    fn naive_first(entries: &[RankedEntry]) -> Option<(usize, Duplicate)> {
        (0..entries.len()).find_map(|i| {
            let earlier = &entries[..i];
            if earlier.iter().any(|e| e.id == entries[i].id) {
                Some((i, Duplicate::Id(entries[i].id)))
            } else if earlier.iter().any(|e| e.endpoint.same_target(&entries[i].endpoint)) {
                Some((i, Duplicate::Endpoint))
            } else {
                None
            }
        })
    }

    /// A small pool of hosts in several spellings, so repeats are common,
    /// including ones that differ only in case, instance label or IPv6 form.
    fn endpoint() -> impl Strategy<Value = Endpoint> {
        let host = prop_oneof![
            Just("aos1"),
            Just("AOS1"),
            Just("Aos1"),
            Just("aos2"),
            Just("10.0.0.7"),
            Just("::1"),
            Just("0:0::1"),
            Just("fe80::A"),
            Just("FE80::a"),
        ];
        let instance = proptest::option::of(prop_oneof![Just("AOS01"), Just("aos01"), Just("B")]);
        (instance, host, 1u16..=3).prop_map(|(instance, host, port)| {
            Endpoint::with_instance(instance, host, port).expect("valid pool endpoint")
        })
    }

    fn entries(max: usize) -> impl Strategy<Value = Vec<RankedEntry>> {
        vec(
            (0u32..40, endpoint()).prop_map(|(id, endpoint)| RankedEntry {
                id: InstanceId(id),
                endpoint,
                workload: Workload::new(0, 1),
            }),
            0..max,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Short lists (pairwise path) and long ones (sorting path) both
        /// drop exactly what the definition says and keep the order.
        #[test]
        fn drop_repeats_matches_the_naive_model(list in prop_oneof![entries(SMALL_LIST + 1), entries(120)]) {
            let marks = naive_repeats(&list);
            let expected: Vec<RankedEntry> =
                list.iter().zip(&marks).filter(|(_, &m)| !m).map(|(e, _)| e.clone()).collect();
            let mut scratch = DedupScratch::default();
            let mut got = list.clone();
            drop_repeats(&mut got, &mut scratch);
            prop_assert_eq!(&got, &expected);
            // The scratch is reusable: a second run on the clean list keeps it whole.
            drop_repeats(&mut got, &mut scratch);
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn first_repeat_matches_the_naive_model(list in prop_oneof![entries(SMALL_LIST + 1), entries(120)]) {
            prop_assert_eq!(first_repeat(&list, &mut DedupScratch::default()), naive_first(&list));
        }

        #[test]
        fn repeated_seeds_name_the_first_occurrence(
            seeds in vec(endpoint(), 0..40),
        ) {
            let expected: Vec<(usize, usize)> = (0..seeds.len())
                .filter_map(|i| seeds[..i].iter().position(|s| s.same_target(&seeds[i])).map(|f| (i, f)))
                .collect();
            prop_assert_eq!(repeated_seeds(&seeds), expected);
        }
    }

    #[test]
    fn labels_and_case_do_not_make_a_new_target() {
        let list = vec![entry(1, "AOS01@h:2712"), entry(2, "h:2712"), entry(3, "H"), entry(4, "h:2713")];
        assert_eq!(first_repeat(&list, &mut DedupScratch::default()), Some((1, Duplicate::Endpoint)));
        let mut kept = list.clone();
        drop_repeats(&mut kept, &mut DedupScratch::default());
        assert_eq!(kept, vec![list[0].clone(), list[3].clone()]);
    }

    proptest! {
        /// With every fingerprint equal (the worst collision), or only a few
        /// distinct ones, the runs are settled by the targets themselves.
        #[test]
        fn fingerprint_collisions_are_settled_by_the_targets(
            seeds in vec(endpoint(), 0..60),
            buckets in 1u64..4,
        ) {
            let expected: Vec<(usize, usize)> = (0..seeds.len())
                .filter_map(|i| seeds[..i].iter().position(|s| s.same_target(&seeds[i])).map(|f| (i, f)))
                .collect();
            // A coarse but valid fingerprint: equal targets give equal ports.
            let coarse = |e: &Endpoint| u64::from(e.port()) % buckets;
            let mut got = Vec::new();
            let note = |later, first| got.push((later, first));
            repeated_targets_by(&seeds, |e| e, coarse, &mut Vec::new(), note);
            got.sort_unstable();
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn same_target_endpoints_share_a_fingerprint_and_order_equal() {
        let texts =
            ["aos1", "AOS1:2712", "A@aos1", "b@AoS1:2712", "aos1:2713", "[::1]", "[0:0::1]:2712", "x"];
        let endpoints: Vec<Endpoint> = texts.iter().map(|t| t.parse().unwrap()).collect();
        for a in &endpoints {
            for b in &endpoints {
                let same = a.same_target(b);
                assert_eq!(same, a.cmp_target(b).is_eq(), "{a} vs {b}");
                assert_eq!(a.cmp_target(b), b.cmp_target(a).reverse(), "{a} vs {b}");
                if same {
                    assert_eq!(a.target_fingerprint(), b.target_fingerprint(), "{a} vs {b}");
                }
            }
        }
        assert!(endpoints[0].same_target(&endpoints[3]));
        assert!(endpoints[5].same_target(&endpoints[6]));
        assert!(!endpoints[0].same_target(&endpoints[4]));
    }
}
