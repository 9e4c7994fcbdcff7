//! The exact ranking: eligible candidates by workload, then free sessions,
//! ties rotated by a salt. Small inputs take an insertion sort; larger ones
//! sort keys packed into words when the figures fit, or compare exactly.

use std::cmp::Ordering;

use super::{Candidate, Workload};

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
/// list. O(n log n); allocates nothing beyond `out`, whose capacity may grow
/// to twice the number of eligible members (the sort's scratch space).
pub fn rank_into(candidates: &[Candidate], salt: u64, out: &mut Vec<usize>) {
    out.clear();
    if candidates.len() <= SMALL_LEN {
        return rank_small(candidates, salt, out);
    }
    match Packing::choose(candidates) {
        Some(packing) => rank_packed(candidates, salt, out, packing),
        None => rank_by_comparison(candidates, salt, out),
    }
}

/// Up to this many candidates, an insertion sort with the exact comparator
/// beats packing: it needs no division per member and no pass to choose a
/// packing, and a handful of cross-multiplications is cheap.
const SMALL_LEN: usize = 16;

/// The small path: eligible indices, insertion-sorted by workload. Insertion
/// sort is stable, so members tied on workload stay in input order without
/// comparing indices, as the tie rotation needs.
fn rank_small(candidates: &[Candidate], salt: u64, out: &mut Vec<usize>) {
    out.extend(candidates.iter().enumerate().filter(|(_, c)| c.is_eligible()).map(|(i, _)| i));
    for sorted in 1..out.len() {
        let next = out[sorted];
        let load = candidates[next].workload;
        let mut hole = sorted;
        while hole > 0 && candidates[out[hole - 1]].workload.cmp_rank(load) == Ordering::Greater {
            out[hole] = out[hole - 1];
            hole -= 1;
        }
        out[hole] = next;
    }
    rotate_ties(out, salt, |a, b| candidates[a].workload == candidates[b].workload);
}

/// The exact order of two eligible members (`a`, `b` index `candidates`):
/// workload by cross-multiplication, then more free sessions, then input order.
fn cmp_exact(candidates: &[Candidate], a: usize, b: usize) -> Ordering {
    candidates[a].workload.cmp_rank(candidates[b].workload).then(a.cmp(&b))
}

/// The plain path: sort indices with the exact comparator. Used where a packed
/// word does not fit (32-bit targets, more than 2^32 candidates).
fn rank_by_comparison(candidates: &[Candidate], salt: u64, out: &mut Vec<usize>) {
    out.extend(candidates.iter().enumerate().filter(|(_, c)| c.is_eligible()).map(|(i, _)| i));
    out.sort_unstable_by(|&a, &b| cmp_exact(candidates, a, b));
    rotate_ties(out, salt, |a, b| candidates[a].workload == candidates[b].workload);
}

/// How an eligible member packs into one 64-bit word of `out`, so the bulk of
/// the work is a primitive integer sort rather than sorting indices through a
/// comparator that chases each one into `candidates` (several times slower):
///
/// ```text
/// [ load: load_bits ][ fewer free sessions: free_bits ][ index: index_bits ]
/// ```
///
/// `load = floor(connected * 2^load_bits / max_sessions)`. An eligible member
/// has `connected < max_sessions`, so `load < 2^load_bits`, and the floor is
/// monotone: a smaller `load` always means a strictly smaller exact ratio.
///
/// **Exact packing**, when every capacity is below `2^b` and `3b + index_bits
/// <= 64` (any AX cluster: capacities up to 65535 with up to 65536 members,
/// or up to 2^15 with 2^17 members): `load_bits = 2b`, `free_bits = b`. Two
/// different ratios `p/q` and `r/s` with `q, s < 2^b` differ by at least
/// `1/(qs) > 2^-2b`, so their loads differ: equal loads *are* equal ratios,
/// and since free sessions fit unsaturated, the word order is exactly
/// (ratio, more free, index), and equal words-without-index are exactly
/// identical workloads (equal ratio and equal free sessions force equal
/// figures for a member that is not full). No comparison is needed at all.
///
/// **Approximate packing** otherwise: `load_bits = 32`, `free_bits = 32 -
/// index_bits`, saturating. Equal loads no longer prove equal ratios, so each
/// run of equal load is re-sorted with [`cmp_exact`] (integer
/// cross-multiplication): the packed sort only orders members whose exact
/// ratios differ in that direction, and every tie or near-tie is decided by
/// cross-multiplication.
#[derive(Debug, Clone, Copy)]
struct Packing {
    load_bits: u32,
    free_bits: u32,
    index_bits: u32,
    exact: bool,
}

impl Packing {
    /// The packing for these candidates, if one fits: `out`'s words must be
    /// 64 bits wide and an index must fit in 32 bits.
    fn choose(candidates: &[Candidate]) -> Option<Packing> {
        let index_bits = usize::BITS - candidates.len().saturating_sub(1).leading_zeros();
        if usize::BITS != 64 || index_bits > 32 {
            return None;
        }
        // Over every member, not only the eligible: a branch-free pass, and a
        // wide ineligible capacity only costs the faster packing.
        let widest = candidates.iter().map(|c| c.workload.max_sessions).max().unwrap_or(0);
        let cap_bits = u32::BITS - widest.leading_zeros();
        Some(if 3 * cap_bits + index_bits <= 64 {
            Packing { load_bits: 2 * cap_bits, free_bits: cap_bits, index_bits, exact: true }
        } else {
            Packing { load_bits: 32, free_bits: 32 - index_bits, index_bits, exact: false }
        })
    }

    /// The word for eligible member `index` with workload `w`.
    fn pack(self, index: usize, w: Workload) -> u64 {
        // connected < max_sessions < 2^cap_bits, so the shift stays within
        // 3 * cap_bits <= 64 bits (exact) or 32 + 32 bits (approximate).
        let load = (u64::from(w.connected) << self.load_bits) / u64::from(w.max_sessions);
        let free_max = (1u64 << self.free_bits) - 1;
        let fewer_free = free_max - u64::from(w.free()).min(free_max);
        (load << (self.free_bits + self.index_bits)) | (fewer_free << self.index_bits) | index as u64
    }
}

fn rank_packed(candidates: &[Candidate], salt: u64, out: &mut Vec<usize>, packing: Packing) {
    // `as` conversions between u64 and usize are lossless: `choose` admits
    // 64-bit targets only.
    out.extend(
        candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_eligible())
            .map(|(i, c)| packing.pack(i, c.workload) as usize),
    );
    sort_words(out);
    let mask = (1usize << packing.index_bits) - 1;
    // Exact: a run of equal words-without-index is one tied group. Otherwise
    // a run of equal load, to be settled by cross-multiplication.
    let run_shift = if packing.exact { packing.index_bits } else { packing.free_bits + packing.index_bits };
    let settle = |run: &mut [usize]| {
        for word in run.iter_mut() {
            *word &= mask;
        }
        if packing.exact {
            run.rotate_left((salt % run.len() as u64) as usize);
        } else {
            // In packed order, which is exact unless two different ratios
            // share a load or free sessions saturated; a sorted run costs
            // the sort one linear pass.
            run.sort_unstable_by(|&a, &b| cmp_exact(candidates, a, b));
            rotate_ties(run, salt, |a, b| candidates[a].workload == candidates[b].workload);
        }
    };
    // Runs longer than one are rare outside tie-heavy clusters: find them in
    // one tight pass, then strip every word to its index in another.
    let words = out.as_mut_slice();
    let mut start = 0;
    let mut key = words.first().map_or(0, |&w| w >> run_shift);
    for end in 1..words.len() {
        let next = words[end] >> run_shift;
        if next != key {
            if end - start > 1 {
                settle(&mut words[start..end]);
            }
            start = end;
            key = next;
        }
    }
    if words.len() - start > 1 {
        settle(&mut words[start..]);
    }
    for word in words.iter_mut() {
        *word &= mask;
    }
}

/// From this many words, [`sort_words`] distributes them by their top digit
/// before sorting: below it `sort_unstable` alone is as fast.
const RADIX_MIN: usize = 4096;

/// The most digit bits [`sort_words`] distributes by (its table holds
/// `2^MAX_DIGIT_BITS` entries on the stack).
const MAX_DIGIT_BITS: u32 = 11;

/// Sorts distinct packed words ascending. Large inputs take one
/// most-significant-digit radix pass over the span the words actually cover,
/// then `sort_unstable` per bucket: buckets of a few dozen words sort far
/// faster than the whole. Words are distinct (each holds its index), so the
/// unstable sort is deterministic; a skewed distribution only makes some
/// bucket large, which then sorts as the whole would have.
///
/// The scatter needs a second buffer as long as the words: it is the spare
/// half of `words` itself, grown to twice the length, so the ranking still
/// allocates nothing beyond its output buffer (which keeps that capacity for
/// the next call). An in-place distribution (American flag sort) needs no
/// spare half, but it chases one dependent, cache-missing load per word and
/// measured slower than this scatter.
fn sort_words(words: &mut Vec<usize>) {
    let len = words.len();
    if len < RADIX_MIN {
        words.sort_unstable();
        return;
    }
    let (min, max) = words.iter().fold((usize::MAX, 0), |(lo, hi), &w| (lo.min(w), hi.max(w)));
    // About 32 words a bucket.
    let digit_bits = (len.ilog2() - 5).min(MAX_DIGIT_BITS);
    let span_bits = usize::BITS - (max - min).leading_zeros();
    let shift = span_bits.saturating_sub(digit_bits);
    let buckets = 1usize << digit_bits;
    let digit = |w: usize| ((w - min) >> shift) & (buckets - 1);
    let mut next = [0usize; 1 << MAX_DIGIT_BITS];
    for &w in words.iter() {
        next[digit(w)] += 1;
    }
    let mut start = 0;
    for slot in next.iter_mut().take(buckets) {
        let count = *slot;
        *slot = start;
        start += count;
    }
    words.resize(2 * len, 0);
    let (packed, sorted) = words.split_at_mut(len);
    for &w in packed.iter() {
        let slot = &mut next[digit(w)];
        sorted[*slot] = w;
        *slot += 1;
    }
    // Each bucket's next slot is now its end.
    let mut start = 0;
    for &end in next.iter().take(buckets) {
        sorted[start..end].sort_unstable();
        start = end;
    }
    words.copy_within(len.., 0);
    words.truncate(len);
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
mod tests;
