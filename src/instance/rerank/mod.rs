//! The order of one coalesced round's replies, kept sorted between them.
//!
//! A reply's list is a function of the predicted figures, the reported
//! figures (for the predicted-full tail), when each member last headed a
//! reply, and the request's salt (SPEC 2.5): groups of identical workload in
//! rank order, each group in id order rotated left by `salt % len`, the head's
//! group then least recently headed first, then the members only predicted
//! full, ranked by their reported figures the same way. [`rank_full`] computes
//! it from scratch, O(n log n). Between two replies of one round only the
//! head's figures and record change (and the member whose reservation the
//! head's client replaced), so [`Rerank`] keeps the members sorted by a
//! salt-free key and re-inserts just those by binary search; a reply then
//! applies its salt while it copies the list out. Same inputs, same lists:
//! the property test below checks it against [`rank_full`].

use std::cmp::Ordering;

use super::herd::Herd;
use crate::workload::{rank_into, Candidate, InstanceId};

/// Scratch for [`rank_full`]'s predicted-full tail, kept for its capacity.
#[derive(Debug, Default)]
pub(super) struct TailScratch {
    tail: Vec<Candidate>,
    tail_order: Vec<usize>,
}

impl TailScratch {
    pub(super) fn heap_bytes(&self) -> usize {
        self.tail.capacity() * std::mem::size_of::<Candidate>()
            + self.tail_order.capacity() * std::mem::size_of::<usize>()
    }
}

/// The full re-rank into `order` (the seed's ranking with herd control on
/// top): the rank of the predicted figures, the head's tie group least
/// recently headed first (with `herd`), then the members only predicted full
/// (SPEC 2.4: listed last, never dropped), ranked by their reported figures.
/// O(n log n): used once per bounded round to choose whom to ask, and as the
/// reference model of [`Rerank`].
pub(super) fn rank_full<S>(
    herd: Option<&Herd>,
    sources: &[(InstanceId, S)],
    reported: &[Candidate],
    predicted: &[Candidate],
    salt: u64,
    scratch: &mut TailScratch,
    order: &mut Vec<usize>,
) {
    rank_into(predicted, salt, order);
    let Some(herd) = herd else { return };
    herd.least_recently_headed_first(predicted, sources, order);
    let predicted_full = |i: usize| predicted[i].workload.is_full() && reported[i].is_eligible();
    if !(0..reported.len()).any(predicted_full) {
        return;
    }
    let TailScratch { tail, tail_order } = scratch;
    tail.clear();
    tail.extend(reported.iter().enumerate().map(|(i, c)| Candidate {
        // Everyone else is already placed (or out): keep them out of the tail.
        accepting: c.accepting && predicted_full(i),
        ..*c
    }));
    rank_into(tail, salt, tail_order);
    order.extend_from_slice(tail_order);
}

/// The members of one round sorted by salt-free keys, so that each reply
/// costs O(log n) comparisons beyond copying its list out. Indices are into
/// the round's `reported` and `predicted` figures, which the caller passes in
/// and changes only between [`remove`](Self::remove) and
/// [`insert`](Self::insert) of the member concerned.
#[derive(Debug, Default)]
pub(super) struct Rerank {
    herd: bool,
    /// Eligible by predicted figures, by (predicted rank, index).
    by_rank: Vec<usize>,
    /// The same members by (predicted rank, last headed, index) (herd only).
    by_headed: Vec<usize>,
    /// Predicted full but reported eligible, by (reported rank, index) (herd only).
    tail: Vec<usize>,
    /// Per candidate: when it last headed a reply (0: never) (herd only).
    last_headed: Vec<u64>,
}

impl Rerank {
    /// Sorts the round's candidates: O(n log n), once per round.
    /// `last_headed(i)` is candidate `i`'s record; `herd` says whether herd
    /// control is on (off: the plain rank of `predicted`, no tail).
    pub(super) fn build(
        &mut self,
        reported: &[Candidate],
        predicted: &[Candidate],
        herd: bool,
        last_headed: impl Fn(usize) -> u64,
    ) {
        self.herd = herd;
        // Salt 0 rotates nothing: ties stay in index order, the salt-free key.
        rank_into(predicted, 0, &mut self.by_rank);
        self.by_headed.clear();
        self.tail.clear();
        self.last_headed.clear();
        if !herd {
            return;
        }
        self.last_headed.extend((0..reported.len()).map(last_headed));
        self.by_headed.extend_from_slice(&self.by_rank);
        let lh = &self.last_headed;
        self.by_headed.sort_by(|&a, &b| cmp_headed(predicted, lh, a, b));
        self.tail.extend((0..reported.len()).filter(|&i| in_tail(reported, predicted, i)));
        self.tail.sort_unstable_by(|&a, &b| cmp_rank(reported, a, b));
    }

    /// Takes candidate `i` out, before its predicted figures or record change.
    pub(super) fn remove(&mut self, reported: &[Candidate], predicted: &[Candidate], i: usize) {
        self.place(reported, predicted, i, false);
    }

    /// Puts candidate `i` back, after its figures or record changed.
    pub(super) fn insert(&mut self, reported: &[Candidate], predicted: &[Candidate], i: usize) {
        self.place(reported, predicted, i, true);
    }

    /// Records that candidate `i`, currently taken out, headed a reply with
    /// record `at` (greater than every other record).
    pub(super) fn set_last_headed(&mut self, i: usize, at: u64) {
        if let Some(slot) = self.last_headed.get_mut(i) {
            *slot = at;
        }
    }

    fn place(&mut self, reported: &[Candidate], predicted: &[Candidate], i: usize, insert: bool) {
        fn put(v: &mut Vec<usize>, i: usize, insert: bool, cmp: impl Fn(usize) -> Ordering) {
            match (v.binary_search_by(|&x| cmp(x)), insert) {
                (Err(at), true) => v.insert(at, i),
                (Ok(at), false) => {
                    v.remove(at);
                }
                // Already in (or not in): the caller's pairing is off; keep the set as is.
                _ => debug_assert!(false, "candidate {i} misplaced"),
            }
        }
        if predicted[i].is_eligible() {
            put(&mut self.by_rank, i, insert, |x| cmp_rank(predicted, x, i));
            if self.herd {
                let lh = &self.last_headed;
                put(&mut self.by_headed, i, insert, |x| cmp_headed(predicted, lh, x, i));
            }
        } else if self.herd && in_tail(reported, predicted, i) {
            put(&mut self.tail, i, insert, |x| cmp_rank(reported, x, i));
        }
    }

    /// The first `max_len` entries of the list for `salt` into `out`: the
    /// same as the first `max_len` of [`rank_full`]'s order for these inputs.
    pub(super) fn list(
        &self,
        reported: &[Candidate],
        predicted: &[Candidate],
        salt: u64,
        max_len: usize,
        out: &mut Vec<usize>,
    ) {
        out.clear();
        let same_predicted = |a: usize, b: usize| predicted[a].workload == predicted[b].workload;
        if !self.herd {
            return emit_groups(&self.by_rank, 0, same_predicted, salt, max_len, out);
        }
        let mut next = 0;
        if !self.by_rank.is_empty() {
            // The head's group: its never-headed members in the salt's
            // rotation (by index, from the rotation's first index on), then
            // the others by record, oldest first; records are unique.
            let g = group_end(&self.by_rank, 0, same_predicted);
            let pivot = self.by_rank[(salt % g as u64) as usize];
            let group = &self.by_headed[..g];
            let never = group.partition_point(|&x| self.last_headed[x] == 0);
            let from = group[..never].partition_point(|&x| x < pivot);
            for part in [&group[from..never], &group[..from], &group[never..]] {
                push(out, part, max_len);
            }
            next = g;
        }
        emit_groups(&self.by_rank, next, same_predicted, salt, max_len, out);
        let same_reported = |a: usize, b: usize| reported[a].workload == reported[b].workload;
        emit_groups(&self.tail, 0, same_reported, salt, max_len, out);
    }

    pub(super) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        (self.by_rank.capacity() + self.by_headed.capacity() + self.tail.capacity()) * size_of::<usize>()
            + self.last_headed.capacity() * size_of::<u64>()
    }
}

fn in_tail(reported: &[Candidate], predicted: &[Candidate], i: usize) -> bool {
    predicted[i].workload.is_full() && reported[i].is_eligible()
}

/// The salt-free rank key: workload, more free sessions, then index.
fn cmp_rank(figures: &[Candidate], a: usize, b: usize) -> Ordering {
    figures[a].workload.cmp_rank(figures[b].workload).then(a.cmp(&b))
}

fn cmp_headed(figures: &[Candidate], last_headed: &[u64], a: usize, b: usize) -> Ordering {
    figures[a]
        .workload
        .cmp_rank(figures[b].workload)
        .then(last_headed[a].cmp(&last_headed[b]))
        .then(a.cmp(&b))
}

/// Appends as much of `part` as fits under `max_len`.
fn push(out: &mut Vec<usize>, part: &[usize], max_len: usize) {
    let room = max_len.saturating_sub(out.len());
    out.extend_from_slice(&part[..part.len().min(room)]);
}

/// Appends the groups of `sorted` from `start` on, each rotated by the salt,
/// until `max_len` entries are out.
fn emit_groups(
    sorted: &[usize],
    mut start: usize,
    same: impl Fn(usize, usize) -> bool,
    salt: u64,
    max_len: usize,
    out: &mut Vec<usize>,
) {
    while start < sorted.len() && out.len() < max_len {
        let end = group_end(sorted, start, &same);
        let turn = start + (salt % (end - start) as u64) as usize;
        push(out, &sorted[turn..end], max_len);
        push(out, &sorted[start..turn], max_len);
        start = end;
    }
}

/// The end of the group starting at `start` (a run of `same` neighbours),
/// by galloping then binary search: O(log len) for a group of len members,
/// so walking k groups costs about what copying them does.
fn group_end(sorted: &[usize], start: usize, same: impl Fn(usize, usize) -> bool) -> usize {
    let first = sorted[start];
    let mut known = start + 1; // sorted[..known] from start on is in the group
    let mut step = 1;
    loop {
        let probe = start.saturating_add(step);
        if probe >= sorted.len() || !same(first, sorted[probe]) {
            let limit = probe.min(sorted.len());
            return known + sorted[known..limit].partition_point(|&x| same(first, x));
        }
        known = probe + 1;
        step = step.saturating_mul(2);
    }
}

#[cfg(test)]
mod tests;
