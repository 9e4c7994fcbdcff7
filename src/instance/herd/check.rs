//! [`Herd::live_each`] against [`Herd::live`] per member, over reservations,
//! releases and reports drawn from bytes. Run by the `herd_read` fuzz body
//! (and its property test in `tests/`), which owns the clock: `epoch` is
//! handed in.

use arbitrary::{Result, Unstructured};

use super::*;

/// One herd operation at `at` milliseconds after the epoch.
#[derive(Debug, Clone)]
enum Op {
    /// Reserve member `m` for connection `c`.
    Reserve { c: u64, m: u32, at: u64 },
    /// Release connection `c`.
    Release { c: u64, at: u64 },
    /// A report from member `m` saying `connected`.
    Report { m: u32, connected: u32, at: u64 },
}

fn op(u: &mut Unstructured<'_>) -> Result<Op> {
    let at = u.int_in_range(0u64..=2_999)?;
    Ok(match u.int_in_range(0u8..=6)? {
        0..=3 => Op::Reserve { c: u.int_in_range(0..=39)?, m: u.int_in_range(0..=29)?, at },
        4 | 5 => Op::Release { c: u.int_in_range(0..=39)?, at },
        _ => Op::Report { m: u.int_in_range(0..=29)?, connected: u.int_in_range(0..=19)?, at },
    })
}

fn herd_after(ops: &[Op], epoch: Instant) -> Herd {
    let ttl = Duration::from_secs(1);
    let ms = |at: u64| epoch + Duration::from_millis(at);
    let mut herd = Herd::new(InstanceId(0));
    for op in ops {
        match *op {
            Op::Reserve { c, m, at } => {
                herd.reserve(ConnectionId(c), InstanceId(m), ms(at), ttl, 1_000);
            }
            Op::Release { c, at } => herd.release(ConnectionId(c), ms(at)),
            Op::Report { m, connected, at } => {
                let shown = if at % 2 == 0 {
                    Shown::Report { asked_at: ms(at) }
                } else {
                    Shown::Row { measured_at: ms(at) }
                };
                herd.cover(InstanceId(m), connected, shown, 64)
            }
        }
    }
    herd
}

/// Same counts, same expiries counted, same herd left behind, whether the
/// walk or the look-ups answer (few ids against full maps take the
/// look-ups). Panics on a difference.
pub fn live_each_matches_live(data: &[u8], epoch: Instant) {
    let mut u = Unstructured::new(data);
    let Ok(ids) = u.int_in_range(0u32..=u32::MAX) else { return };
    let Ok(at) = u.int_in_range(0u64..=4_499) else { return };
    let mut ops = Vec::new();
    while ops.len() < 120 {
        let Ok(next) = op(&mut u) else { break };
        ops.push(next);
    }
    // Bit i of `ids`: member i is a candidate.
    let ids: Vec<(InstanceId, ())> =
        (0..32).filter(|i| ids & (1 << i) != 0).map(|i| (InstanceId(i), ())).collect();
    let ttl = Duration::from_secs(1);
    let now = epoch + Duration::from_millis(at);
    let mut each = herd_after(&ops, epoch);
    let mut one = herd_after(&ops, epoch);
    let mut out = vec![7; 3];
    each.live_each(&ids, now, ttl, &mut out);
    let expected: Vec<u32> = ids.iter().map(|&(id, _)| one.live(id, now, ttl)).collect();
    assert_eq!(out, expected, "live counts");
    assert_eq!(each.stats, one.stats, "stats");
    assert_eq!(each.total(), one.total(), "reservations left");
    assert_eq!((each.by_member.len(), each.unshown.len()), (one.by_member.len(), one.unshown.len()));
    // Every member afterwards, one at a time: nothing left differs.
    for id in 0..32 {
        let id = InstanceId(id);
        assert_eq!(each.live(id, now, ttl), one.live(id, now, ttl));
    }
}
