//! The reference model of herd control and of one ranked reply, written
//! from SPEC 2.4-2.6 and the machine's documented rules with plain vectors
//! and linear scans, so it shares no data structure with `src/instance/`.
//!
//! The model is exact, down to when expired reservations are purged: the
//! machine expires lazily (only while ranking, at an admission here, or
//! when the reservation limit is reached), and a lingering expired
//! reservation can still be replaced or released, which moves the counters.
//! Modelling that laziness is what lets every reply be predicted entry for
//! entry.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aos_cluster::instance::ConnectionId;
use aos_cluster::workload::InstanceId;

mod reply;

pub(super) use self::reply::{expected_reply, predicted, shown, ReplyInput};

#[derive(Debug, Clone, Copy)]
struct Reservation {
    member: InstanceId,
    conn: ConnectionId,
    made_at: Instant,
}

/// Released reservations are counted per member in buckets this wide, at
/// most this many per member (then they join the newest).
const UNSHOWN_BUCKET: Duration = Duration::from_millis(20);
const UNSHOWN_BUCKETS: usize = 64;

/// Herd control's state as the model sees it, with its counters.
#[derive(Debug)]
pub(super) struct HerdModel {
    /// Every reservation the machine still holds (live or lingering
    /// expired), oldest first.
    held: Vec<Reservation>,
    /// Per member: landings figures showed (a report's rise, an admission
    /// here) whose clients still hold a reservation.
    arrived: BTreeMap<InstanceId, u32>,
    /// Released reservations no figures showed yet: `(member, bucket start,
    /// count)`, oldest first per member.
    unshown: Vec<(InstanceId, Instant, u32)>,
    /// Reply number at which each member last headed a list.
    last_headed: BTreeMap<InstanceId, u64>,
    replies_headed: u64,
    /// Each peer's `connected` in its last valid report.
    last_reported: BTreeMap<InstanceId, u32>,
    /// The instance's own id, and its own reservations made and landings
    /// per bucket of an eighth of `reservation_ttl`: `(start, made, landed)`.
    own: InstanceId,
    share: Vec<(Instant, u32, u32)>,
    /// The weight `(landed, made)` read when the current round finished.
    weight: (u32, u32),
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
            arrived: BTreeMap::new(),
            unshown: Vec::new(),
            last_headed: BTreeMap::new(),
            replies_headed: 0,
            last_reported: BTreeMap::new(),
            own,
            share: Vec::new(),
            weight: (1, 1),
            made: 0,
            released: 0,
            replaced: 0,
            expired_unused: 0,
            dropped: 0,
        }
    }

    /// The share's bucket for `now` (a new one once the last is an eighth
    /// of `ttl` old), after forgetting buckets a whole `ttl` old.
    fn share_bucket(&mut self, now: Instant, ttl: Duration) -> usize {
        self.share.retain(|&(start, ..)| start + ttl > now);
        let width = (ttl / 8).max(Duration::from_millis(1));
        if self.share.last().is_none_or(|&(start, ..)| start + width <= now) {
            self.share.push((now, 0, 0));
        }
        self.share.len() - 1
    }

    /// The weight of a reservation at `now`: own landings over own
    /// reservations of the last `ttl`, once 64 were made, at least 1/16.
    fn share_weight(&mut self, now: Instant, ttl: Duration) -> (u32, u32) {
        self.share.retain(|&(start, ..)| start + ttl > now);
        let made: u32 = self.share.iter().map(|&(_, m, _)| m).sum();
        let landed: u32 = self.share.iter().map(|&(_, _, l)| l).sum();
        if made < 64 {
            return (1, 1);
        }
        (landed.max(made.div_ceil(16)).min(made), made)
    }

    /// Connection `conn` closed: its reservation goes; a landing counted
    /// for its member absorbs it, else (a peer) it waits to be shown.
    pub(super) fn closed(&mut self, conn: ConnectionId, now: Instant) {
        let Some(pos) = self.held.iter().position(|r| r.conn == conn) else { return };
        let member = self.held.remove(pos).member;
        self.released += 1;
        if let Some(arrived) = self.arrived.get_mut(&member) {
            *arrived -= 1;
            if *arrived == 0 {
                self.arrived.remove(&member);
            }
            return;
        }
        if member != self.own {
            let full = self.unshown.iter().filter(|(m, ..)| *m == member).count() >= UNSHOWN_BUCKETS;
            match self.unshown.iter_mut().rev().find(|(m, ..)| *m == member) {
                Some((_, start, n)) if *start + UNSHOWN_BUCKET > now || full => *n += 1,
                _ => self.unshown.push((member, now, 1)),
            }
        }
    }

    /// Reservations held, live or not yet purged.
    pub(super) fn held(&self) -> usize {
        self.held.len()
    }

    /// What `member`'s live reservations predict at `now`: its live
    /// reservations less its counted landings, plus its unshown releases.
    fn predicted_sessions(&self, member: InstanceId, now: Instant, ttl: Duration) -> u32 {
        let live = self.held.iter().filter(|r| r.member == member && r.made_at + ttl > now).count() as u32;
        let arrived = self.arrived.get(&member).copied().unwrap_or(0).min(live);
        let unshown: u32 = self
            .unshown
            .iter()
            .filter(|&&(m, start, _)| m == member && start + ttl > now)
            .map(|&(.., n)| n)
            .sum();
        live - arrived + unshown
    }

    /// What the machine does whenever it reads `member`'s live count:
    /// expired reservations and releases go (the reservations counted as
    /// expired unused), and its counted landings are capped at what is left.
    fn settle_member(&mut self, member: InstanceId, now: Instant, ttl: Duration) {
        let before = self.held.len();
        self.held.retain(|r| r.member != member || r.made_at + ttl > now);
        self.expired_unused += (before - self.held.len()) as u64;
        self.unshown.retain(|&(m, start, _)| m != member || start + ttl > now);
        let live = self.held.iter().filter(|r| r.member == member).count() as u32;
        if let Some(arrived) = self.arrived.get_mut(&member) {
            *arrived = (*arrived).min(live);
            if *arrived == 0 {
                self.arrived.remove(&member);
            }
        }
    }

    /// A round finishes at `now` with `candidates` (ids, sorted): the weight
    /// of its reservations is read, their live counts settled, and once the
    /// head record outgrows `max_members` it forgets members that are not
    /// candidates.
    pub(super) fn finish_round(
        &mut self,
        candidates: &[InstanceId],
        now: Instant,
        ttl: Duration,
        max_members: usize,
    ) {
        self.weight = self.share_weight(now, ttl);
        for &id in candidates {
            self.settle_member(id, now, ttl);
        }
        if self.last_headed.len() > max_members {
            self.last_headed.retain(|id, _| candidates.contains(id));
        }
    }

    /// A valid report from `member` saying `connected`, asked for at
    /// `asked_at`: it shows its releases before the question (buckets wholly
    /// before it), and of the later ones as many as the rest of its rise
    /// since its last report (remembered for at most `max_members` peers),
    /// oldest first; the rest of the rise counts as landings of clients
    /// still holding reservations, at most as many as it holds.
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
        let mut landed = previous.map_or(0, |p| connected.saturating_sub(p));
        while let Some(pos) = self.unshown.iter().position(|&(m, ..)| m == member) {
            let (_, start, n) = self.unshown[pos];
            if start + UNSHOWN_BUCKET > asked_at {
                break;
            }
            self.unshown.remove(pos);
            landed = landed.saturating_sub(n);
        }
        while landed > 0 {
            let Some(pos) = self.unshown.iter().position(|&(m, ..)| m == member) else { break };
            let taken = self.unshown[pos].2.min(landed);
            landed -= taken;
            self.unshown[pos].2 -= taken;
            if self.unshown[pos].2 == 0 {
                self.unshown.remove(pos);
            }
        }
        let held = self.held.iter().filter(|r| r.member == member).count() as u32;
        let arrived = self.arrived.get(&member).copied().unwrap_or(0).saturating_add(landed).min(held);
        if arrived == 0 {
            self.arrived.remove(&member);
        } else {
            self.arrived.insert(member, arrived);
        }
    }

    /// A session was admitted on `own` at `now` on `conn`: a landing, and
    /// one of its live reservations came true: `conn`'s own, if it holds
    /// one here (it goes), else one not known (cancelled).
    pub(super) fn admitted(&mut self, own: InstanceId, conn: ConnectionId, now: Instant, ttl: Duration) {
        let bucket = self.share_bucket(now, ttl);
        self.share[bucket].2 += 1;
        if let Some(pos) = self.held.iter().position(|r| r.conn == conn && r.member == own) {
            self.held.remove(pos);
            return;
        }
        self.settle_member(own, now, ttl);
        if self.predicted_sessions(own, now, ttl) > 0 {
            *self.arrived.entry(own).or_insert(0) += 1;
        }
    }

    /// The reply to `conn` at `now` was headed by `member`; the machine then
    /// reads the live counts of `member` and of the member whose
    /// reservation this one replaced, if a candidate of the round.
    fn reserve(
        &mut self,
        conn: ConnectionId,
        member: InstanceId,
        input: &ReplyInput<'_>,
        candidates: &[InstanceId],
    ) {
        let (now, ttl) = (input.now, input.reservation_ttl);
        let replaced = self.held.iter().position(|r| r.conn == conn).map(|pos| self.held.remove(pos).member);
        self.replaced += u64::from(replaced.is_some());
        self.make(conn, member, now, ttl, input.max_reservations);
        self.settle_member(member, now, ttl);
        if let Some(old) = replaced.filter(|old| candidates.contains(old)) {
            self.settle_member(old, now, ttl);
        }
    }

    fn make(&mut self, conn: ConnectionId, member: InstanceId, now: Instant, ttl: Duration, limit: usize) {
        self.replies_headed += 1;
        self.last_headed.insert(member, self.replies_headed);
        if self.held.len() >= limit {
            let mut members: Vec<InstanceId> = self.held.iter().map(|r| r.member).collect();
            members.sort_unstable();
            members.dedup();
            for m in members {
                self.settle_member(m, now, ttl);
            }
            if self.held.len() >= limit {
                self.dropped += 1;
                return;
            }
        }
        if member == self.own {
            let bucket = self.share_bucket(now, ttl);
            self.share[bucket].1 += 1;
        }
        self.held.push(Reservation { member, conn, made_at: now });
        self.made += 1;
    }
}
