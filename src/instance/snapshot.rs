//! The registry snapshot as a round uses it: the active `Serving` rows of
//! other members, one per id and one per target, each with the freshest
//! figures known for it (its row, or a live report newer than the row).

use std::cmp::Ordering;
use std::time::{Duration, Instant};

use crate::endpoint::Endpoint;
use crate::registry::MemberRecord;
use crate::workload::{Candidate, InstanceId, Role};

/// A registry row worth querying: `Serving`, not this instance, active when
/// received.
#[derive(Debug, Clone)]
pub(super) struct CachedMember {
    pub(super) id: InstanceId,
    pub(super) endpoint: Endpoint,
    pub(super) heartbeat_age: Duration,
    /// Its freshest figures: as of its last heartbeat, or from a live report
    /// asked for later.
    pub(super) figures: Candidate,
    /// When `figures` were measured (`None`: before this instance's clock
    /// began, older than anything else).
    pub(super) figures_at: Option<Instant>,
    /// `figures` came from a live report, whose reservations herd control
    /// already settled.
    pub(super) live: bool,
}

impl CachedMember {
    /// How old its figures are at `now`.
    pub(super) fn figure_age(&self, now: Instant) -> Duration {
        self.figures_at.map_or(Duration::MAX, |at| now.saturating_duration_since(at))
    }

    /// A live report asked for at `asked_at` said `figures`.
    pub(super) fn reported(&mut self, figures: Candidate, asked_at: Instant) {
        if self.figures_at.map_or(true, |at| at <= asked_at) {
            self.figures = figures;
            self.figures_at = Some(asked_at);
            self.live = true;
        }
    }
}

#[derive(Debug)]
pub(super) struct Snapshot {
    pub(super) received_at: Instant,
    /// Sorted by id, one row per id and per target.
    pub(super) members: Vec<CachedMember>,
    /// Whether herd control has taken the rows' figures as reports yet
    /// (bounded rounds only, once per snapshot).
    pub(super) covered: bool,
}

/// What building a snapshot left out.
#[derive(Debug, Default)]
pub(super) struct Dropped {
    /// Rows beyond `limits.max_members`.
    pub(super) over_cap: usize,
}

impl Snapshot {
    /// The snapshot of `rows` received at `now` by instance `own_id` at
    /// `own_endpoint`: active `Serving` rows of other ids; one row per id and
    /// per target (SPEC 2.7: the one with the latest heartbeat, so every
    /// reply is encodable), none at this instance's own target; at most
    /// `cap`. Figures that `previous` had from a live report newer than the
    /// row are kept.
    pub(super) fn build(
        rows: Vec<MemberRecord>,
        now: Instant,
        own: (InstanceId, &Endpoint),
        member_ttl: Duration,
        cap: usize,
        previous: Option<&Snapshot>,
    ) -> (Snapshot, Dropped) {
        let (own_id, own_endpoint) = own;
        let mut kept: Vec<CachedMember> = rows
            .into_iter()
            .filter(|m| m.role == Role::Serving && m.id != own_id && m.heartbeat_age < member_ttl)
            .filter(|m| !m.endpoint.same_target(own_endpoint))
            .map(|m| CachedMember {
                id: m.id,
                endpoint: m.endpoint,
                heartbeat_age: m.heartbeat_age,
                figures: Candidate { role: m.role, accepting: m.accepting, workload: m.workload },
                figures_at: now.checked_sub(m.heartbeat_age),
                live: false,
            })
            .collect();
        // One row per target, the freshest (ties: the lower id, for determinism).
        kept.sort_by(|a, b| {
            a.endpoint
                .cmp_target(&b.endpoint)
                .then(a.heartbeat_age.cmp(&b.heartbeat_age))
                .then(a.id.cmp(&b.id))
        });
        kept.dedup_by(|later, first| later.endpoint.same_target(&first.endpoint));
        // One row per id, the freshest, in id order.
        kept.sort_by(|a, b| a.id.cmp(&b.id).then(a.heartbeat_age.cmp(&b.heartbeat_age)));
        kept.dedup_by_key(|m| m.id);
        let mut dropped = Dropped::default();
        if kept.len() > cap {
            dropped.over_cap = kept.len() - cap;
            kept.truncate(cap);
        }
        if let Some(previous) = previous {
            keep_newer_reports(&mut kept, &previous.members);
        }
        (Snapshot { received_at: now, members: kept, covered: false }, dropped)
    }
}

/// Both sorted by id: a member whose live report in `previous` is newer
/// than its new row keeps that report's figures.
fn keep_newer_reports(kept: &mut [CachedMember], previous: &[CachedMember]) {
    let mut old = previous.iter().filter(|m| m.live).peekable();
    for member in kept.iter_mut() {
        while old.peek().is_some_and(|o| o.id < member.id) {
            old.next();
        }
        let Some(o) = old.peek() else { break };
        let newer = match (o.figures_at, member.figures_at) {
            (Some(report), Some(row)) => report.cmp(&row) == Ordering::Greater,
            (Some(_), None) => true,
            _ => false,
        };
        if o.id == member.id && o.endpoint == member.endpoint && newer {
            member.figures = o.figures;
            member.figures_at = o.figures_at;
            member.live = true;
        }
    }
}
