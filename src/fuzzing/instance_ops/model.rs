//! The reference model of herd control and of one ranked reply, written
//! from SPEC 2.4-2.6 and the machine's documented rules with plain vectors
//! and linear scans, so it shares no data structure with `src/instance/`.
//!
//! The model is exact, down to when expired reservations are purged: the
//! machine expires lazily (only while ranking, or when the reservation limit
//! is reached), and a lingering expired reservation can still be replaced,
//! covered or consumed by an admission, which moves the counters and the
//! learned landing time. Modelling that laziness is what lets every reply be
//! predicted entry for entry.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::instance::ConnectionId;
use crate::wire::{RankedEntry, RankedList};
use crate::workload::{rank, Candidate, InstanceId};

use super::endpoint_of;

#[derive(Debug, Clone, Copy)]
struct Reservation {
    member: InstanceId,
    conn: ConnectionId,
    made_at: Instant,
}

/// Herd control's state as the model sees it, with its counters.
#[derive(Debug, Default)]
pub(super) struct HerdModel {
    /// Every reservation the machine still holds (live or lingering
    /// expired), oldest first.
    held: Vec<Reservation>,
    /// Reply number at which each member last headed a list.
    last_headed: BTreeMap<InstanceId, u64>,
    replies_headed: u64,
    /// The moving average of how long own reservations took to land.
    landing: Duration,
    pub(super) made: u64,
    pub(super) replaced: u64,
    pub(super) expired_unused: u64,
    pub(super) dropped: u64,
}

impl HerdModel {
    /// Reservations held, live or not yet purged.
    pub(super) fn held(&self) -> usize {
        self.held.len()
    }

    /// Live reservations on `member` at `now`.
    fn live(&self, member: InstanceId, now: Instant, ttl: Duration) -> u32 {
        let n = self.held.iter().filter(|r| r.member == member && r.made_at + ttl > now).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Drops the expired reservations of `member` (every member: `None`),
    /// counting them as expired unused.
    fn purge(&mut self, member: Option<InstanceId>, now: Instant, ttl: Duration) {
        let before = self.held.len();
        self.held.retain(|r| member.is_some_and(|m| r.member != m) || r.made_at + ttl > now);
        self.expired_unused += (before - self.held.len()) as u64;
    }

    /// A round finishes at `now` with `candidates` (ids, sorted): their
    /// expired reservations are purged, and once the head record outgrows
    /// `max_members` it forgets members that are not candidates.
    pub(super) fn finish_round(
        &mut self,
        candidates: &[InstanceId],
        now: Instant,
        ttl: Duration,
        max_members: usize,
    ) {
        for &id in candidates {
            self.purge(Some(id), now, ttl);
        }
        if self.last_headed.len() > max_members {
            self.last_headed.retain(|id, _| candidates.contains(id));
        }
    }

    /// A valid report from `member`, asked for at `asked_at`, covers every
    /// reservation on it whose client had the landing time to land before.
    pub(super) fn cover(&mut self, member: InstanceId, asked_at: Instant) {
        let landing = self.landing;
        self.held.retain(|r| r.member != member || r.made_at + landing >= asked_at);
    }

    /// A session was admitted on `own` at `now`: its oldest reservation
    /// (expired or not) came true and teaches the landing time.
    pub(super) fn admitted(&mut self, own: InstanceId, now: Instant) {
        if let Some(pos) = self.held.iter().position(|r| r.member == own) {
            let took = now.saturating_duration_since(self.held.remove(pos).made_at);
            self.landing = (self.landing * 7 + took) / 8;
        }
    }

    /// The reply to `conn` at `now` was headed by `member`.
    fn reserve(&mut self, conn: ConnectionId, member: InstanceId, now: Instant, ttl: Duration, limit: usize) {
        self.replies_headed += 1;
        self.last_headed.insert(member, self.replies_headed);
        if let Some(pos) = self.held.iter().position(|r| r.conn == conn) {
            self.held.remove(pos);
            self.replaced += 1;
        }
        if self.held.len() >= limit {
            self.purge(None, now, ttl);
            if self.held.len() >= limit {
                self.dropped += 1;
                return;
            }
        }
        self.held.push(Reservation { member, conn, made_at: now });
        self.made += 1;
    }
}

/// Each candidate's predicted figures: reported plus live reservations
/// (with herd control; without, the reported figures).
pub(super) fn predicted(
    herd: &HerdModel,
    candidates: &[(InstanceId, Candidate)],
    herd_control: bool,
    now: Instant,
    ttl: Duration,
) -> Vec<Candidate> {
    candidates
        .iter()
        .map(|&(id, c)| {
            let mut p = c;
            if herd_control {
                p.workload.connected = p.workload.connected.saturating_add(herd.live(id, now, ttl));
            }
            p
        })
        .collect()
}

/// What one ranked reply is built from.
pub(super) struct ReplyInput<'a> {
    /// Self and the peers that answered this round, sorted by id, with their
    /// reported figures (own: live).
    pub(super) candidates: &'a [(InstanceId, Candidate)],
    pub(super) herd_control: bool,
    pub(super) salt: u64,
    pub(super) conn: ConnectionId,
    pub(super) now: Instant,
    pub(super) reservation_ttl: Duration,
    pub(super) max_reservations: usize,
    pub(super) max_list_len: usize,
    pub(super) stale: bool,
}

/// The exact reply for one handshake, updating the herd model as the
/// machine must (the head of the full order is reserved for `conn`).
///
/// SPEC 2.4-2.6: members eligible by their predicted figures (reported plus
/// live reservations) come first, ranked by those figures, with the member
/// of the head's tie group that headed a reply least recently moved to the
/// front (never-headed members first, in `rank()`'s order). Members only
/// predicted full (reported eligible) follow, ranked by reported figures,
/// and are listed with their reported figures; the others with predicted.
pub(super) fn expected_reply(herd: &mut HerdModel, input: &ReplyInput<'_>) -> RankedList {
    let ids: Vec<InstanceId> = input.candidates.iter().map(|&(id, _)| id).collect();
    let reported: Vec<Candidate> = input.candidates.iter().map(|&(_, c)| c).collect();
    let predicted = predicted(herd, input.candidates, input.herd_control, input.now, input.reservation_ttl);
    let mut order = rank(&predicted, input.salt);
    if input.herd_control {
        if let Some(&head) = order.first() {
            let tied: Vec<usize> = order
                .iter()
                .copied()
                .take_while(|&i| predicted[i].workload == predicted[head].workload)
                .collect();
            let never = tied.iter().copied().find(|&i| !herd.last_headed.contains_key(&ids[i]));
            let first = never.unwrap_or_else(|| {
                tied.iter().copied().min_by_key(|&i| herd.last_headed.get(&ids[i]).copied()).unwrap_or(head)
            });
            order.retain(|&i| i != first);
            order.insert(0, first);
        }
        let tail: Vec<Candidate> = reported
            .iter()
            .zip(&predicted)
            .map(|(r, p)| Candidate {
                accepting: r.accepting && r.is_eligible() && p.workload.is_full(),
                ..*r
            })
            .collect();
        order.extend(rank(&tail, input.salt));
    }
    let entries = order
        .iter()
        .take(input.max_list_len)
        .map(|&i| {
            let workload =
                if predicted[i].workload.is_full() { reported[i].workload } else { predicted[i].workload };
            RankedEntry { id: ids[i], endpoint: endpoint_of(ids[i]), workload }
        })
        .collect();
    if let (true, Some(&head)) = (input.herd_control, order.first()) {
        herd.reserve(input.conn, ids[head], input.now, input.reservation_ttl, input.max_reservations);
    }
    RankedList { stale: input.stale, entries }
}
