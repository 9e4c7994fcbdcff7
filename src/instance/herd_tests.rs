//! [`Herd::live_each`] against [`Herd::live`] per member, over random
//! reservations, releases and reports.

use proptest::prelude::*;

use super::*;

/// One herd operation at `at` milliseconds: reserve member `m` for
/// connection `c`, release connection `c` (until shown or not), or a report
/// from member `m` saying `connected`.
#[derive(Debug, Clone)]
enum Op {
    Reserve { c: u64, m: u32, at: u64 },
    Release { c: u64, until_shown: bool, at: u64 },
    Report { m: u32, connected: u32, at: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..40, 0u32..30, 0u64..3_000).prop_map(|(c, m, at)| Op::Reserve { c, m, at }),
        2 => (0u64..40, any::<bool>(), 0u64..3_000).prop_map(|(c, until_shown, at)| Op::Release { c, until_shown, at }),
        1 => (0u32..30, 0u32..20, 0u64..3_000).prop_map(|(m, connected, at)| Op::Report { m, connected, at }),
    ]
}

fn herd_after(ops: &[Op], epoch: Instant, stats: &mut InstanceStats) -> Herd {
    let ttl = Duration::from_secs(1);
    let ms = |at: u64| epoch + Duration::from_millis(at);
    let mut herd = Herd::new(InstanceId(0));
    for op in ops {
        match *op {
            Op::Reserve { c, m, at } => {
                herd.reserve(ConnectionId(c), InstanceId(m), ms(at), ttl, 1_000, stats);
            }
            Op::Release { c, until_shown, at } => herd.release(ConnectionId(c), ms(at), until_shown, stats),
            Op::Report { m, connected, at } => herd.cover(InstanceId(m), connected, ms(at), 64),
        }
    }
    herd
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Same counts, same expiries counted, same herd left behind, whether
    /// the walk or the look-ups answer (few `ids` against full maps take
    /// the look-ups).
    #[test]
    fn live_each_is_live_for_each(
        ops in prop::collection::vec(op(), 0..120),
        ids in prop::collection::btree_set(0u32..32, 0..32),
        at in 0u64..4_500,
    ) {
        #[allow(clippy::disallowed_methods)] // the one base instant of the test
        let epoch = Instant::now();
        let ttl = Duration::from_secs(1);
        let now = epoch + Duration::from_millis(at);
        let ids: Vec<(InstanceId, ())> = ids.into_iter().map(|id| (InstanceId(id), ())).collect();
        let (mut stats_each, mut stats_one) = (InstanceStats::default(), InstanceStats::default());
        let mut each = herd_after(&ops, epoch, &mut stats_each);
        let mut one = herd_after(&ops, epoch, &mut stats_one);
        let mut out = vec![7; 3];
        each.live_each(&ids, now, ttl, &mut stats_each, &mut out);
        let expected: Vec<u32> = ids.iter().map(|&(id, _)| one.live(id, now, ttl, &mut stats_one)).collect();
        prop_assert_eq!(&out, &expected);
        prop_assert_eq!(&stats_each, &stats_one);
        prop_assert_eq!(each.total(), one.total());
        prop_assert_eq!((each.by_member.len(), each.unshown.len()), (one.by_member.len(), one.unshown.len()));
        // Every member afterwards, one at a time: nothing left differs.
        for id in 0..32 {
            let id = InstanceId(id);
            prop_assert_eq!(each.live(id, now, ttl, &mut stats_each), one.live(id, now, ttl, &mut stats_one));
        }
    }
}
