//! Bounded fan-out: whom a query round asks live once the snapshot holds
//! more active peers than [`FanOut::full_up_to`].
//!
//! Each member's figures are its freshest known: its registry row (as of
//! its last heartbeat) or a live report asked for later (`snapshot.rs`).
//! A bounded round asks live only
//! - the [`FanOut::live`] best members by those figures, predicted with this
//!   instance's reservations and ordered exactly as a reply would be (the
//!   first waiting handshake's salt, least recently headed first, the
//!   predicted-full tail),
//! - as many again of the members whose figures are the oldest, once older
//!   than one snapshot (`snapshot_ttl`): figures miss the sessions that
//!   ended since, so a member that looks busier than it is would otherwise
//!   never be among the best, and never asked, until its next heartbeat
//!   (when many sessions end together, the members asked last take the
//!   next clients twice over), and
//! - every member whose figures are older than [`FanOut::max_figure_age`],
//!   or contradict themselves;
//!
//! and ranks everyone else on those figures (plus reservations), exactly
//! like an answered member (a member asked but silent or unreachable is left
//! out, as in a full round). An asked member found unreachable is replaced
//! by the next best in that order, so a round's lists are headed
//! by members that answered even when the dead look best: a crashed member's
//! row keeps its old figures, the best in the cluster, until `member_ttl`. A
//! member found unreachable is then neither asked nor listed by later bounded
//! rounds until its row shows a heartbeat after the failure. Herd control
//! takes a new snapshot's rows as reports measured at their heartbeat, which
//! show the releases before it: reservations on members nobody asks are
//! covered once their clients had ample time to land before that heartbeat,
//! not only by expiry.
//!
//! Bounds: a round sends at most 2k peer queries plus one per stale member
//! and one per member found unreachable, whatever the cluster's size
//! (counted in [`RoundStats::peer_queries`], the replacements also in
//! [`FanOutStats::replacement_queries`]). A figure not asked live is at
//! most `max_figure_age` old: its heartbeat's age (below
//! `heartbeat_interval` while the member beats on time) plus the snapshot's
//! (below `snapshot_ttl`). A member whose registry figures say full or
//! draining is neither asked nor listed until a newer heartbeat says
//! otherwise.
//!
//! Why balance holds: the head of a list, the member that takes the next
//! arrival, comes from the k best, and those are asked live, so the head is
//! ranked on exact figures unless every one of the k grew past the best
//! unasked member's registry figure since its heartbeat. The k are chosen by
//! predicted figures, and every reply reserves its head, so consecutive
//! rounds ask (and head) different members of a tied level. What bounding
//! costs, and why clusters of up to 33 instances keep the full fan-out by
//! default: [`DEFAULT_FULL_FAN_OUT_UP_TO`].
//!
//! [`FanOut::full_up_to`]: crate::config::FanOut::full_up_to
//! [`FanOutStats::replacement_queries`]: super::FanOutStats::replacement_queries
//! [`RoundStats::peer_queries`]: super::RoundStats::peer_queries
//! [`DEFAULT_FULL_FAN_OUT_UP_TO`]: crate::config::DEFAULT_FULL_FAN_OUT_UP_TO
//! [`FanOut::live`]: crate::config::FanOut::live
//! [`FanOut::max_figure_age`]: crate::config::FanOut::max_figure_age

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::herd::{Herd, Shown};
use super::rerank::{rank_full, TailScratch};
use super::snapshot::Snapshot;
use super::stats::FanOutStats;
use crate::config::InstanceConfig;
use crate::workload::{Candidate, InstanceId};

/// Whom a round asks (snapshot member indices).
pub(super) struct Plan {
    /// Asked live at once, ascending.
    pub(super) asked: Vec<usize>,
    /// Ranked on registry figures, ascending (empty in a full round).
    pub(super) unasked: Vec<usize>,
}

/// Whom query rounds ask, and what bounded rounds keep between rounds.
#[derive(Debug, Default)]
pub(super) struct FanOutControl {
    /// Members a live query found unreachable, and when: a bounded round
    /// neither asks nor lists them until their registry row shows a
    /// heartbeat after that (a crashed member's row stays active for
    /// `member_ttl`, and its old figures would put it at the head of lists).
    unreachable: BTreeMap<InstanceId, Instant>,
    /// The round's members not asked, in the order they are asked in place
    /// of one found unreachable, next best last (bounded rounds only).
    replacements: Vec<usize>,
    /// Scratch for choosing whom to ask, kept for its capacity.
    sources: Vec<(InstanceId, usize)>,
    reported: Vec<Candidate>,
    predicted: Vec<Candidate>,
    scratch: TailScratch,
    order: Vec<usize>,
    live: Vec<u32>,
    /// Candidates for a refresh: (figure age, source index).
    oldest: Vec<(Duration, usize)>,
    stats: FanOutStats,
}

impl FanOutControl {
    pub(super) fn stats(&self) -> &FanOutStats {
        &self.stats
    }

    /// A live query found `member` unreachable at `at`.
    pub(super) fn unreachable(&mut self, member: InstanceId, at: Instant, max_members: usize) {
        if self.unreachable.len() < max_members || self.unreachable.contains_key(&member) {
            self.unreachable.insert(member, at);
        }
    }

    /// The next member to ask in place of one found unreachable (one of
    /// the plan's `unasked`), counted as a replacement query.
    pub(super) fn next_replacement(&mut self) -> Option<usize> {
        let member = self.replacements.pop()?;
        self.stats.replacement_queries += 1;
        Some(member)
    }

    /// Whom a round at `now` asks of the `active` members of `snapshot`
    /// (indices, ascending): every one up to `fan_out.full_up_to`, else a
    /// bounded few (see the module docs); `salt` is the first waiting
    /// handshake's.
    pub(super) fn plan(
        &mut self,
        active: Vec<usize>,
        snapshot: Option<&mut Snapshot>,
        herd: &mut Herd,
        config: &InstanceConfig,
        salt: u64,
        now: Instant,
    ) -> Plan {
        self.replacements.clear();
        match snapshot {
            Some(snapshot) if !config.fan_out.is_full_for(active.len()) => {
                cover_registry_figures(snapshot, herd, config.limits.max_members);
                self.bounded(active, snapshot, herd, config, salt, now)
            }
            _ => Plan { asked: active, unasked: Vec::new() },
        }
    }

    /// Splits the `active` members (snapshot indices, ascending) of a bounded
    /// round into those asked live and those ranked on registry figures,
    /// both ascending. The ones left out of both are not asked and would not
    /// be listed either: their registry figures say full, draining or not
    /// serving, and are fresh enough to trust.
    fn bounded(
        &mut self,
        active: Vec<usize>,
        snapshot: &Snapshot,
        herd: &mut Herd,
        config: &InstanceConfig,
        salt: u64,
        now: Instant,
    ) -> Plan {
        let max_age = config.fan_out.max_figure_age;
        let mut asked = Vec::new();
        self.sources.clear();
        self.reported.clear();
        for &i in &active {
            let m = &snapshot.members[i];
            if let Some(&failed_at) = self.unreachable.get(&m.id) {
                let heartbeat_at = snapshot.received_at.checked_sub(m.heartbeat_age);
                if heartbeat_at.map_or(true, |at| at <= failed_at) {
                    continue;
                }
                self.unreachable.remove(&m.id);
            }
            let contradictory = m.figures.workload.connected > m.figures.workload.max_sessions;
            if contradictory || m.figure_age(now) > max_age {
                asked.push(i);
            } else {
                self.sources.push((m.id, i));
                self.reported.push(m.figures);
            }
        }
        self.predicted.clear();
        self.predicted.extend_from_slice(&self.reported);
        let herd_control = config.herd_control;
        if herd_control {
            herd.live_each(&self.sources, now, config.reservation_ttl, &mut self.live);
            for (p, &live) in self.predicted.iter_mut().zip(&self.live) {
                *p = herd.predict(*p, live);
            }
        }
        // The order the round's first reply would have on these figures.
        rank_full(
            herd_control.then_some(&*herd),
            &self.sources,
            &self.reported,
            &self.predicted,
            salt,
            &mut self.scratch,
            &mut self.order,
        );
        let live = config.fan_out.live.min(self.order.len());
        let mut chosen = vec![false; self.sources.len()];
        for &c in &self.order[..live] {
            chosen[c] = true;
            asked.push(self.sources[c].1);
        }
        // Refresh: as many again of the members with the oldest figures,
        // once older than a snapshot. Figures miss the sessions that ended
        // since, which only a live answer shows; a member that looks busier
        // than it is would otherwise never be asked, and never chosen,
        // until its next heartbeat.
        let stale_after = config.snapshot_ttl;
        let (sources, reported) = (&self.sources, &self.reported);
        let oldest = &mut self.oldest;
        oldest.clear();
        oldest.extend(
            (0..sources.len())
                .filter(|&c| !chosen[c] && reported[c].is_eligible())
                .map(|c| (snapshot.members[sources[c].1].figure_age(now), c))
                .filter(|&(age, _)| age > stale_after),
        );
        let refresh = live.min(oldest.len());
        if refresh > 0 {
            oldest.select_nth_unstable_by(refresh - 1, |a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            for &(_, c) in &oldest[..refresh] {
                chosen[c] = true;
                asked.push(sources[c].1);
            }
        }
        asked.sort_unstable();
        let unasked = (0..sources.len())
            .filter(|&c| !chosen[c] && reported[c].is_eligible())
            .map(|c| sources[c].1)
            .collect();
        // Next best first out (`pop`): all of them are eligible, so listed.
        self.replacements
            .extend(self.order[live..].iter().rev().filter(|&&c| !chosen[c]).map(|&c| sources[c].1));
        Plan { asked, unasked }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.unreachable.len() * 2 * (size_of::<InstanceId>() + size_of::<Instant>())
            + (self.replacements.capacity() + self.order.capacity()) * size_of::<usize>()
            + self.sources.capacity() * size_of::<(InstanceId, usize)>()
            + (self.reported.capacity() + self.predicted.capacity()) * size_of::<Candidate>()
            + self.scratch.heap_bytes()
            + self.live.capacity() * size_of::<u32>()
            + self.oldest.capacity() * size_of::<(Duration, usize)>()
    }
}

/// Once per snapshot: herd control takes each row as a report from the
/// member measured at its last heartbeat (received at minus heartbeat
/// age) whose `connected` did not rise (why: the comment inside): the
/// releases before the heartbeat are shown by the row's figures.
fn cover_registry_figures(snapshot: &mut Snapshot, herd: &mut Herd, max_members: usize) {
    if std::mem::replace(&mut snapshot.covered, true) {
        return;
    }
    // Figures kept from a live report were settled when it came.
    for m in snapshot.members.iter().filter(|m| !m.live) {
        let w = m.figures.workload;
        let Some(measured_at) = m.figures_at else { continue };
        if w.connected > w.max_sessions {
            continue;
        }
        // Handed over as a report that rose by nothing: herd control counts
        // a rise as landed sessions that cancel as many reservations,
        // right for a live report (asked after every reservation was
        // made) but not for a heartbeat seconds old, whose rise (other
        // balancers' sessions included) would cancel reservations made
        // after it and under-predict the members nobody asks. A member
        // never reported before starts its record at the row's figure.
        let unchanged = herd.last_reported(m.id).unwrap_or(w.connected);
        herd.cover(m.id, unchanged, Shown::Row { measured_at }, max_members);
    }
}
