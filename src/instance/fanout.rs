//! Bounded fan-out (issue 13): whom a query round asks live once the
//! snapshot holds more active peers than [`FanOut::full_up_to`].
//!
//! Every registry row carries the member's figures as of its last heartbeat.
//! A bounded round asks live only
//! - the [`FanOut::live`] best members by those figures, predicted with this
//!   instance's reservations and ordered exactly as a reply would be (the
//!   first waiting handshake's salt, least recently headed first, the
//!   predicted-full tail), and
//! - every member whose figures are older than [`FanOut::max_figure_age`]
//!   (heartbeat age plus snapshot age), or contradict themselves;
//!
//! and ranks everyone else on the registry figures (plus reservations),
//! exactly like an answered member. An asked member found unreachable is
//! replaced by the next best in that order (`round.rs`), so a round's lists
//! are headed by members that answered even when the dead look best. Herd control takes a new snapshot's rows
//! as reports measured at their heartbeat, so reservations on members nobody
//! asks are covered once their clients had ample time to land before that
//! heartbeat, not only by expiry.
//!
//! [`FanOut::full_up_to`]: crate::config::FanOut::full_up_to
//! [`FanOut::live`]: crate::config::FanOut::live
//! [`FanOut::max_figure_age`]: crate::config::FanOut::max_figure_age

use std::collections::BTreeMap;
use std::time::Instant;

use super::rerank::{rank_full, TailScratch};
use super::Instance;
use crate::workload::{Candidate, InstanceId};

/// Whom a bounded round asks (snapshot member indices).
pub(super) struct BoundedPlan {
    /// Asked live at once, ascending.
    pub(super) asked: Vec<usize>,
    /// Ranked on registry figures, ascending.
    pub(super) unasked: Vec<usize>,
    /// The members of `unasked` in the order they would be asked in place of
    /// one found unreachable, next best last.
    pub(super) replacements: Vec<usize>,
}

/// What bounded rounds keep between rounds.
#[derive(Debug, Default)]
pub(super) struct FanOutState {
    /// Members a live query found unreachable, and when: a bounded round
    /// neither asks nor lists them until their registry row shows a
    /// heartbeat after that (a crashed member's row stays active for
    /// `member_ttl`, and its old figures would put it at the head of lists).
    unreachable: BTreeMap<InstanceId, Instant>,
    /// The last round left members unasked, ranked on registry figures:
    /// released reservations wait until figures show them.
    pub(super) bounded: bool,
    /// Scratch for choosing whom to ask, kept for its capacity.
    sources: Vec<(InstanceId, usize)>,
    reported: Vec<Candidate>,
    predicted: Vec<Candidate>,
    scratch: TailScratch,
    order: Vec<usize>,
    live: Vec<u32>,
}

impl FanOutState {
    /// A live query found `member` unreachable at `at`.
    pub(super) fn unreachable(&mut self, member: InstanceId, at: Instant, max_members: usize) {
        if self.unreachable.len() < max_members || self.unreachable.contains_key(&member) {
            self.unreachable.insert(member, at);
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.unreachable.len() * 2 * (size_of::<InstanceId>() + size_of::<Instant>())
            + self.sources.capacity() * size_of::<(InstanceId, usize)>()
            + (self.reported.capacity() + self.predicted.capacity()) * size_of::<Candidate>()
            + self.scratch.heap_bytes()
            + self.order.capacity() * size_of::<usize>()
            + self.live.capacity() * size_of::<u32>()
    }
}

impl Instance {
    /// Splits the `active` members (snapshot indices, ascending) of a bounded
    /// round into those asked live and those ranked on registry figures,
    /// both ascending. The ones left out of both are not asked and would not
    /// be listed either: their registry figures say full, draining or not
    /// serving, and are fresh enough to trust.
    pub(super) fn bounded_plan(&mut self, active: Vec<usize>, now: Instant) -> BoundedPlan {
        self.cover_registry_figures();
        let Some(snapshot) = &self.snapshot else {
            return BoundedPlan { asked: active, unasked: Vec::new(), replacements: Vec::new() };
        };
        let since = now.saturating_duration_since(snapshot.received_at);
        let max_age = self.config.fan_out.max_figure_age;
        let mut asked = Vec::new();
        let state = &mut self.fan_out;
        state.sources.clear();
        state.reported.clear();
        for &i in &active {
            let m = &snapshot.members[i];
            if let Some(&failed_at) = state.unreachable.get(&m.id) {
                let heartbeat_at = snapshot.received_at.checked_sub(m.heartbeat_age);
                if heartbeat_at.map_or(true, |at| at <= failed_at) {
                    continue;
                }
                state.unreachable.remove(&m.id);
            }
            let contradictory = m.figures.workload.connected > m.figures.workload.max_sessions;
            if contradictory || m.heartbeat_age.saturating_add(since) > max_age {
                asked.push(i);
            } else {
                state.sources.push((m.id, i));
                state.reported.push(m.figures);
            }
        }
        state.predicted.clear();
        state.predicted.extend_from_slice(&state.reported);
        let herd = self.config.herd_control;
        if herd {
            let ttl = self.config.reservation_ttl;
            self.herd.live_each(&state.sources, now, ttl, &mut self.stats, &mut state.live);
            for (p, &live) in state.predicted.iter_mut().zip(&state.live) {
                p.workload.connected =
                    p.workload.connected.saturating_add(self.herd.predicted_sessions(live));
            }
        }
        // The order the round's first reply would have on these figures.
        let salt = self.pending.first().map_or(0, |p| p.salt);
        rank_full(
            herd.then_some(&self.herd),
            &state.sources,
            &state.reported,
            &state.predicted,
            salt,
            &mut state.scratch,
            &mut state.order,
        );
        let live = self.config.fan_out.live.min(state.order.len());
        let mut chosen = vec![false; state.sources.len()];
        for &c in &state.order[..live] {
            chosen[c] = true;
            asked.push(state.sources[c].1);
        }
        asked.sort_unstable();
        let unasked = (0..state.sources.len())
            .filter(|&c| !chosen[c] && state.reported[c].is_eligible())
            .map(|c| state.sources[c].1)
            .collect();
        // Next best first out (`pop`): all of them are eligible, so listed.
        let replacements = state.order[live..].iter().rev().map(|&c| state.sources[c].1).collect();
        BoundedPlan { asked, unasked, replacements }
    }

    /// Once per snapshot: herd control takes each row as a report from the
    /// member measured at its last heartbeat (received at minus heartbeat
    /// age) whose `connected` did not rise (why: the comment inside): it covers
    /// the reservations whose clients had ample time to land before the
    /// heartbeat, which the row's figures already count.
    fn cover_registry_figures(&mut self) {
        let Some(snapshot) = &mut self.snapshot else { return };
        if std::mem::replace(&mut snapshot.covered, true) {
            return;
        }
        let max_members = self.config.limits.max_members;
        for m in &snapshot.members {
            let w = m.figures.workload;
            let Some(measured_at) = snapshot.received_at.checked_sub(m.heartbeat_age) else { continue };
            if w.connected > w.max_sessions {
                continue;
            }
            // A member never reported before starts its record at the row's figure.
            // Handed over as a report that rose by nothing: herd control counts
            // a rise as landed sessions and clears that many of its oldest
            // reservations, right for a live report (asked after every
            // reservation was made) but not for a heartbeat seconds old, whose
            // rise (other balancers' sessions included) would clear
            // reservations made after it and under-predict the members nobody
            // asks (the `crash` scenario at 32 instances, k = 8: peak arrivals
            // 3.6x the fair share against 1.2x with full fan-out). A member
            // never reported before starts its record at the row's figure.
            let unchanged = self.herd.last_reported(m.id).unwrap_or(w.connected);
            self.herd.cover(m.id, unchanged, measured_at, max_members);
        }
    }
}
