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
#[derive(Debug)]
pub(super) struct HerdModel {
    /// Every reservation the machine still holds (live or lingering
    /// expired), oldest first.
    held: Vec<Reservation>,
    /// Reply number at which each member last headed a list.
    last_headed: BTreeMap<InstanceId, u64>,
    replies_headed: u64,
    /// The moving average of how long own reservations took to land (none
    /// before the first admission).
    landing: Option<Duration>,
    /// Each peer's `connected` in its last valid report.
    last_reported: BTreeMap<InstanceId, u32>,
    /// The instance's own id, and how many of its reservations on itself
    /// were made and came true (both halved together at 2 048 made).
    own: InstanceId,
    own_made: u32,
    own_landed: u32,
    /// `(own_made, own_landed)` as they were when the current round finished.
    at_round: (u32, u32),
    pub(super) made: u64,
    pub(super) released: u64,
    pub(super) replaced: u64,
    pub(super) expired_unused: u64,
    pub(super) dropped: u64,
}

impl HerdModel {
    pub(super) fn new(own: InstanceId) -> Self {
        HerdModel {
            held: Vec::new(),
            last_headed: BTreeMap::new(),
            replies_headed: 0,
            landing: None,
            last_reported: BTreeMap::new(),
            own,
            own_made: 0,
            own_landed: 0,
            at_round: (0, 0),
            made: 0,
            released: 0,
            replaced: 0,
            expired_unused: 0,
            dropped: 0,
        }
    }

    /// What `live` reservations predict: each weighs the share of own
    /// reservations that came true as the round finished, once 64 were made,
    /// rounded to nearest, never below 1/16.
    fn weigh(&self, live: u32) -> u32 {
        let (own_made, own_landed) = self.at_round;
        if own_made < 64 {
            return live;
        }
        let landed = u128::from(own_landed.clamp(own_made / 16, own_made));
        let made = u128::from(own_made);
        // floor(live * landed / made + 1/2)
        let rounded = (2 * u128::from(live) * landed + made) / (2 * made);
        u32::try_from(rounded).unwrap_or(u32::MAX)
    }

    /// Connection `conn` closed: its reservation goes.
    pub(super) fn closed(&mut self, conn: ConnectionId) {
        if let Some(pos) = self.held.iter().position(|r| r.conn == conn) {
            self.held.remove(pos);
            self.released += 1;
        }
    }
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
        self.at_round = (self.own_made, self.own_landed);
        for &id in candidates {
            self.purge(Some(id), now, ttl);
        }
        if self.last_headed.len() > max_members {
            self.last_headed.retain(|id, _| candidates.contains(id));
        }
    }

    /// A valid report from `member` saying `connected`, asked for at
    /// `asked_at`, covers its oldest reservations: at least as many as
    /// `connected` rose since its last report (remembered for at most
    /// `max_members` peers), and every one older than three landing times
    /// before `asked_at`; it stops at the first that is neither.
    pub(super) fn cover(
        &mut self,
        member: InstanceId,
        connected: u32,
        asked_at: Instant,
        max_members: usize,
    ) {
        let previous = if self.last_reported.len() < max_members || self.last_reported.contains_key(&member) {
            self.last_reported.insert(member, connected)
        } else {
            None
        };
        let mut landed = previous.map_or(0, |p| connected.saturating_sub(p) as usize);
        let landing = self.landing;
        while let Some(pos) = self.held.iter().position(|r| r.member == member) {
            let settled = landing.is_some_and(|l| self.held[pos].made_at + l * 3 < asked_at);
            if landed == 0 && !settled {
                break;
            }
            landed = landed.saturating_sub(1);
            self.held.remove(pos);
        }
    }

    /// A session was admitted on `own` at `now`: its oldest reservation
    /// (after the expired ones are purged) came true and teaches the landing time.
    pub(super) fn admitted(&mut self, own: InstanceId, now: Instant, ttl: Duration) {
        // Expired ones never came true: they go (counted) before the oldest live one is consumed.
        self.own_landed += 1;
        self.purge(Some(own), now, ttl);
        if let Some(pos) = self.held.iter().position(|r| r.member == own) {
            let took = now.saturating_duration_since(self.held.remove(pos).made_at);
            self.landing = Some(self.landing.map_or(took, |l| (l * 7 + took) / 8));
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
        if member == self.own {
            self.own_made += 1;
            if self.own_made == 2_048 {
                self.own_made /= 2;
                self.own_landed /= 2;
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
                p.workload.connected =
                    p.workload.connected.saturating_add(herd.weigh(herd.live(id, now, ttl)));
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
/// live reservations) come first, ranked by those figures, with the head's
/// tie group ordered least recently headed first (never-headed members
/// first; equal records in `rank()`'s order). Members only
/// predicted full (reported eligible) follow, ranked by reported figures,
/// and are listed with their reported figures; the others with predicted.
pub(super) fn expected_reply(herd: &mut HerdModel, input: &ReplyInput<'_>) -> RankedList {
    let ids: Vec<InstanceId> = input.candidates.iter().map(|&(id, _)| id).collect();
    let reported: Vec<Candidate> = input.candidates.iter().map(|&(_, c)| c).collect();
    let predicted = predicted(herd, input.candidates, input.herd_control, input.now, input.reservation_ttl);
    let mut order = rank(&predicted, input.salt);
    if input.herd_control {
        if let Some(&head) = order.first() {
            // The head's tie group, least recently headed first (never: 0),
            // ties between records in rank()'s order.
            let tied =
                order.iter().take_while(|&&i| predicted[i].workload == predicted[head].workload).count();
            let mut group: Vec<(u64, usize, usize)> = order[..tied]
                .iter()
                .enumerate()
                .map(|(pos, &i)| (herd.last_headed.get(&ids[i]).copied().unwrap_or(0), pos, i))
                .collect();
            group.sort();
            for (slot, (_, _, i)) in order.iter_mut().zip(group) {
                *slot = i;
            }
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
