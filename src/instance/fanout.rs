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
//! exactly like an answered member. Herd control takes a new snapshot's rows
//! as reports measured at their heartbeat, so reservations on members nobody
//! asks are still covered by what their sessions did, not only by expiry.
//!
//! [`FanOut::full_up_to`]: crate::config::FanOut::full_up_to
//! [`FanOut::live`]: crate::config::FanOut::live
//! [`FanOut::max_figure_age`]: crate::config::FanOut::max_figure_age

use std::collections::BTreeMap;
use std::time::Instant;

use super::rerank::{rank_full, TailScratch};
use super::Instance;
use crate::workload::{Candidate, InstanceId};

/// What bounded rounds keep between rounds.
#[derive(Debug, Default)]
pub(super) struct FanOutState {
    /// Per member, when the figures herd control last took as its report
    /// were measured. Registry rows can be older than a live report already
    /// taken; covering with them would move the member's last reported
    /// `connected` back, and the next live report would count a rise that
    /// never happened.
    covered_at: BTreeMap<InstanceId, Instant>,
    /// Scratch for choosing whom to ask, kept for its capacity.
    sources: Vec<(InstanceId, usize)>,
    reported: Vec<Candidate>,
    predicted: Vec<Candidate>,
    scratch: TailScratch,
    order: Vec<usize>,
}

impl FanOutState {
    /// Herd control took figures of `member` measured at `at` (a live report
    /// asked at `at`). Live reports are never older than what was taken
    /// before: they are asked now, registry rows were measured before.
    pub(super) fn covered(&mut self, member: InstanceId, at: Instant, max_members: usize) {
        if self.covered_at.len() < max_members || self.covered_at.contains_key(&member) {
            self.covered_at.insert(member, at);
        }
    }

    fn newer(&self, member: InstanceId, at: Instant) -> bool {
        self.covered_at.get(&member).map_or(true, |&last| at > last)
    }

    pub(super) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.covered_at.len() * 2 * (size_of::<InstanceId>() + size_of::<Instant>())
            + self.sources.capacity() * size_of::<(InstanceId, usize)>()
            + (self.reported.capacity() + self.predicted.capacity()) * size_of::<Candidate>()
            + self.scratch.heap_bytes()
            + self.order.capacity() * size_of::<usize>()
    }
}

impl Instance {
    /// Splits the `active` members (snapshot indices, ascending) of a bounded
    /// round into those asked live and those ranked on registry figures,
    /// both ascending. The ones left out of both are not asked and would not
    /// be listed either: their registry figures say full, draining or not
    /// serving, and are fresh enough to trust.
    pub(super) fn bounded_plan(&mut self, active: Vec<usize>, now: Instant) -> (Vec<usize>, Vec<usize>) {
        self.cover_registry_figures();
        let Some(snapshot) = &self.snapshot else { return (active, Vec::new()) };
        let since = now.saturating_duration_since(snapshot.received_at);
        let max_age = self.config.fan_out.max_figure_age;
        let mut asked = Vec::new();
        let state = &mut self.fan_out;
        state.sources.clear();
        state.reported.clear();
        for &i in &active {
            let m = &snapshot.members[i];
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
            for (p, &(id, _)) in state.predicted.iter_mut().zip(&state.sources) {
                let extra = self.herd.live(id, now, ttl, &mut self.stats);
                p.workload.connected = p.workload.connected.saturating_add(extra);
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
        (asked, unasked)
    }

    /// Once per snapshot: herd control takes each row's figures as a report
    /// from the member measured at its last heartbeat (received at minus
    /// heartbeat age), unless a newer one was taken already.
    fn cover_registry_figures(&mut self) {
        let Some(snapshot) = &mut self.snapshot else { return };
        if std::mem::replace(&mut snapshot.covered, true) {
            return;
        }
        let max_members = self.config.limits.max_members;
        if self.fan_out.covered_at.len() >= max_members {
            // Forget members that left, so the current ones fit.
            let members = &snapshot.members;
            self.fan_out.covered_at.retain(|id, _| members.binary_search_by_key(id, |m| m.id).is_ok());
        }
        for m in &snapshot.members {
            let w = m.figures.workload;
            let Some(measured_at) = snapshot.received_at.checked_sub(m.heartbeat_age) else { continue };
            if w.connected > w.max_sessions || !self.fan_out.newer(m.id, measured_at) {
                continue;
            }
            self.herd.cover(m.id, w.connected, measured_at, max_members);
            self.fan_out.covered(m.id, measured_at, max_members);
        }
    }
}
