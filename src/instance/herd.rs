//! Herd control (SPEC 2.5, 2.6): reservations that make the next handshake
//! rank by predicted load, and the tie rule that turns levels into a round
//! robin.
//!
//! A reservation is a provisional session counted on the head of a reply, for
//! `reservation_ttl`. It belongs to the client connection whose handshake
//! made it, and a connection holds at most one: a new handshake on it
//! replaces the old reservation, so handshakes that never become sessions
//! cannot pile predictions up. A fresh workload report from a member clears
//! every reservation on it made before the report was asked for (its figures
//! already show whatever those clients did); an admitted session here
//! consumes this instance's oldest own reservation; the rest expire unused.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::event::{ConnectionId, InstanceStats};
use crate::workload::{Candidate, InstanceId};

/// A reservation older than this many landing times when a report was asked
/// for is settled: its client landed or is not coming.
const SETTLE_FACTOR: u32 = 3;

#[derive(Debug, Clone, Copy)]
struct Reservation {
    conn: ConnectionId,
    made_at: Instant,
}

/// Every live reservation, reachable by member (oldest first) and by
/// connection. Counts are derived from these maps, never kept beside them.
#[derive(Debug, Default)]
pub(super) struct Herd {
    /// Per member: sequence number (so oldest first) -> reservation.
    by_member: BTreeMap<InstanceId, BTreeMap<u64, Reservation>>,
    /// Per client connection: its one reservation.
    by_conn: BTreeMap<ConnectionId, (InstanceId, u64)>,
    next_seq: u64,
    /// When each member last headed a reply, as a count of replies; a member
    /// absent never did.
    last_headed: BTreeMap<InstanceId, u64>,
    headed_replies: u64,
    /// How long a reserved client takes to land its session, learned from
    /// this instance's own admissions (a moving average); unknown until the
    /// first one.
    landing: Option<Duration>,
    /// Each peer's `connected` in its last valid report.
    last_reported: BTreeMap<InstanceId, u32>,
}

impl Herd {
    /// Live reservations (expired ones may linger until the next ranking).
    pub(super) fn total(&self) -> usize {
        self.by_conn.len()
    }

    /// Live reservations on `id` at `now`, after expiring the old ones.
    pub(super) fn live(
        &mut self,
        id: InstanceId,
        now: Instant,
        ttl: Duration,
        stats: &mut InstanceStats,
    ) -> u32 {
        let Some(queue) = self.by_member.get_mut(&id) else { return 0 };
        while let Some(entry) = queue.first_entry() {
            if entry.get().made_at + ttl > now {
                break;
            }
            let reservation = entry.remove();
            self.by_conn.remove(&reservation.conn);
            stats.reservations_expired_unused += 1;
        }
        let live = queue.len();
        if live == 0 {
            self.by_member.remove(&id);
        }
        u32::try_from(live).unwrap_or(u32::MAX)
    }

    fn expire_all(&mut self, now: Instant, ttl: Duration, stats: &mut InstanceStats) {
        let ids: Vec<InstanceId> = self.by_member.keys().copied().collect();
        for id in ids {
            self.live(id, now, ttl, stats);
        }
    }

    fn remove(&mut self, member: InstanceId, seq: u64) -> Option<Reservation> {
        let queue = self.by_member.get_mut(&member)?;
        let reservation = queue.remove(&seq)?;
        if queue.is_empty() {
            self.by_member.remove(&member);
        }
        self.by_conn.remove(&reservation.conn);
        Some(reservation)
    }

    /// Reserves `member` for the handshake on `conn`, replacing that
    /// connection's previous reservation. Returns the member whose
    /// reservation was replaced, and whether the new one was counted (not
    /// when `limit` is reached even after expiring old ones).
    pub(super) fn reserve(
        &mut self,
        conn: ConnectionId,
        member: InstanceId,
        now: Instant,
        ttl: Duration,
        limit: usize,
        stats: &mut InstanceStats,
    ) -> (Option<InstanceId>, bool) {
        let replaced = self.by_conn.get(&conn).copied().and_then(|(old, seq)| {
            self.remove(old, seq)?;
            stats.reservations_replaced += 1;
            Some(old)
        });
        if self.total() >= limit {
            self.expire_all(now, ttl, stats);
            if self.total() >= limit {
                stats.reservations_dropped += 1;
                return (replaced, false);
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_member.entry(member).or_default().insert(seq, Reservation { conn, made_at: now });
        self.by_conn.insert(conn, (member, seq));
        stats.reservations_made += 1;
        (replaced, true)
    }

    /// A fresh report from `member`, asked for at `asked_at`, saying it
    /// holds `connected` sessions. It covers every reservation whose client
    /// had ample time to land before the question was even asked, whatever
    /// its `connected` did (sessions also end): older than
    /// [`SETTLE_FACTOR`] times the learned landing time; and at least as
    /// many of the oldest as `connected` rose since its last report (those
    /// sessions did land). Younger ones are clients still on their way and
    /// stay predicted until a later report or their expiry.
    ///
    /// Why not every reservation older than the report, as SPEC 2.6 reads
    /// literally: a reply reaches its client and the client's request
    /// reaches the member a client round trip later, so a report asked
    /// shortly after a reservation cannot show it yet. Clearing those made
    /// the `crash` scenario's p99 arrivals per window 1.36x fair share
    /// against 1.27x; with the settle time it stays at 1.27x, and
    /// predictions of sessions that never came still go after a few
    /// landing times instead of lingering.
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
        let Some(queue) = self.by_member.get_mut(&member) else { return };
        while let Some(entry) = queue.first_entry() {
            let settled = self.landing.is_some_and(|l| entry.get().made_at + l * SETTLE_FACTOR < asked_at);
            if landed == 0 && !settled {
                break;
            }
            landed = landed.saturating_sub(1);
            let reservation = entry.remove();
            self.by_conn.remove(&reservation.conn);
        }
        if queue.is_empty() {
            self.by_member.remove(&member);
        }
    }

    /// A session landed on `member` (this instance) at `now`: the oldest
    /// live prediction came true, and its age teaches how long landing
    /// takes. Expired ones go first (counted): they never came true, and
    /// learning from them would stretch the landing time past the ttl.
    pub(super) fn consume_oldest(
        &mut self,
        member: InstanceId,
        now: Instant,
        ttl: Duration,
        stats: &mut InstanceStats,
    ) {
        self.live(member, now, ttl, stats);
        let oldest = self.by_member.get(&member).and_then(|queue| queue.keys().next().copied());
        if let Some(reservation) = oldest.and_then(|seq| self.remove(member, seq)) {
            let took = now.saturating_duration_since(reservation.made_at);
            self.landing = Some(self.landing.map_or(took, |l| (l * 7 + took) / 8));
        }
    }

    /// Records that `member` headed a reply now.
    pub(super) fn headed(&mut self, member: InstanceId) {
        self.headed_replies += 1;
        self.last_headed.insert(member, self.headed_replies);
    }

    /// When `member` last headed a reply, as a count of replies (0: never).
    /// The key [`least_recently_headed_first`](Self::least_recently_headed_first) sorts by.
    pub(super) fn last_headed(&self, member: InstanceId) -> u64 {
        self.last_headed.get(&member).copied().unwrap_or(0)
    }

    /// Forgets members that left (`current`, sorted by id) once the record
    /// outgrows `max_members`.
    pub(super) fn forget_departed(&mut self, current: &[(InstanceId, impl Copy)], max_members: usize) {
        if self.last_headed.len() > max_members {
            self.last_headed.retain(|id, _| current.binary_search_by_key(id, |&(s, _)| s).is_ok());
        }
    }

    /// Orders the head's tie group (equal predicted workload, hence equal
    /// free sessions) least recently headed first (SPEC 2.5); members that
    /// never headed a reply come first, and equal records keep the salt's
    /// order (the sort is stable). Only the head's group: it decides who is
    /// reserved, and sorting every group would cost a lookup per member.
    pub(super) fn least_recently_headed_first<S>(
        &self,
        candidates: &[Candidate],
        sources: &[(InstanceId, S)],
        order: &mut [usize],
    ) {
        let Some(&head) = order.first() else { return };
        let tied = order.iter().take_while(|&&i| candidates[i].workload == candidates[head].workload).count();
        if tied > 1 {
            order[..tied].sort_by_key(|&i| self.last_headed.get(&sources[i].0).copied().unwrap_or(0));
        }
    }

    /// Heap bytes held, for [`Instance::memory_footprint`](super::Instance::memory_footprint).
    pub(super) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        // A BTreeMap entry costs about its key and value plus node overhead;
        // twice the payload is a fair estimate.
        let reservation = 2 * (size_of::<u64>() + size_of::<Reservation>());
        let conn = 2 * (size_of::<ConnectionId>() + size_of::<(InstanceId, u64)>());
        let member = 2 * (size_of::<InstanceId>() + size_of::<BTreeMap<u64, Reservation>>());
        self.total() * (reservation + conn)
            + self.by_member.len() * member
            + self.last_headed.len() * 2 * (size_of::<InstanceId>() + size_of::<u64>())
    }
}
