//! Herd control (SPEC 2.5, 2.6): reservations that make the next handshake
//! rank by predicted load, and the tie rule that turns levels into a round
//! robin.
//!
//! A reservation is a provisional session counted on the head of a reply, for
//! `reservation_ttl`. It belongs to the client connection whose handshake
//! made it, and a connection holds at most one: a new handshake on it
//! replaces the old reservation, so handshakes that never become sessions
//! cannot pile predictions up. A client keeps that connection open while it
//! walks the list, so its close releases the reservation: the client landed
//! or gave up. Sessions that figures show landed (a report's rise, an
//! admission here) cancel as many live reservations on their member until
//! their clients' closes release them (see [`Herd::cover`]); the rest expire
//! unused.
//!
//! A reservation predicts a session only as often as reservations come true:
//! each weighs the recent share of this instance's reservations on itself
//! that became sessions here (`share.rs`), so a flood of handshakes that
//! never become sessions cannot fill the prediction.
//!
//! A released reservation on a peer stays predicted until figures show it
//! ([`Shown`]): a report asked for after the release (or, of the releases
//! while the question was out, as many as the report's rise), or a registry
//! row measured after it. No reservation is cleared for its age alone,
//! where SPEC 2.6 also covers those older than three learned landing times:
//! under load a balancer's own clients land fastest, so no learned landing
//! time says when a peer's client had ample time (see [`Herd::cover`]).
//! Releases and unused expiries are counted in
//! [`HerdStats::reservations_released`] and
//! [`HerdStats::reservations_expired_unused`].
//!
//! A member only *predicted* full is listed after all others, never
//! dropped, so handshakes that never become sessions cannot empty the lists
//! (SPEC 2.4).
//!
//! The tie rule (SPEC 2.5): among the members tied with the head of a list
//! (equal predicted load and free sessions), the ones that headed a reply
//! least recently go first; the request's salt still orders members that
//! never headed one. Once every tied member has taken one arrival the
//! predicted loads tie again and carry no trace of who went last, so the
//! salt alone could hand the next arrival straight back to the member that
//! just took one (a 1-in-k chance at every level of k members). Least
//! recently headed first turns the levels into a round robin, the most even
//! spread one balancer can give.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use self::landings::unshown_live;
pub(super) use self::landings::Shown;
use super::event::ConnectionId;
use super::share::{LandingShare, Weight};
use super::stats::HerdStats;
use crate::workload::{Candidate, InstanceId};

#[derive(Debug, Clone, Copy)]
struct Reservation {
    conn: ConnectionId,
    made_at: Instant,
}

/// Every live reservation, reachable by member (oldest first) and by
/// connection. Counts are derived from these maps, never kept beside them.
#[derive(Debug)]
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
    /// Each peer's `connected` in its last valid report.
    last_reported: BTreeMap<InstanceId, u32>,
    /// This instance's id, to tell its own reservations apart.
    own: InstanceId,
    /// How many of this instance's reservations on itself came true: both
    /// counts decay (halve) together, so this is a recent ratio.
    share: LandingShare,
    /// Per member: sessions known to have landed there (admitted here, or a
    /// report's rise) whose clients' handshake connections have not closed
    /// yet. Each cancels one live reservation on that member until a close
    /// releases one. Neither an admission (the session comes on a
    /// connection of its own) nor a rise tells whose reservation came true:
    /// removing the oldest then and the closing client's own at its close
    /// would count every landing twice whenever clients land out of order,
    /// as they do under load, and send the next clients to that member.
    arrived: BTreeMap<InstanceId, u32>,
    /// Per member ranked on registry figures: reservations released since
    /// those figures were measured, as `(bucket start, count)`, oldest first.
    /// The client landed or gave up; until figures measured after the
    /// release arrive nothing shows which, so they stay predicted.
    unshown: BTreeMap<InstanceId, VecDeque<(Instant, u32)>>,
    /// The share every reservation weighs in the current round, as
    /// `(landed, reserved)`: read once when a round finishes, so the replies
    /// of one round rank on one scale (only the head moves between them).
    weight: Weight,
    stats: HerdStats,
}

impl Herd {
    pub(super) fn new(own: InstanceId) -> Self {
        Herd {
            by_member: BTreeMap::new(),
            by_conn: BTreeMap::new(),
            next_seq: 0,
            last_headed: BTreeMap::new(),
            headed_replies: 0,
            last_reported: BTreeMap::new(),
            own,
            share: LandingShare::default(),
            arrived: BTreeMap::new(),
            weight: Weight::WHOLE,
            unshown: BTreeMap::new(),
            stats: HerdStats::default(),
        }
    }

    pub(super) fn stats(&self) -> &HerdStats {
        &self.stats
    }

    /// `reported` figures with `live` reservations at this round's weight.
    pub(super) fn predict(&self, reported: Candidate, live: u32) -> Candidate {
        self.weight.predict(reported, live)
    }

    /// Reads the share reservations weigh for the round finishing at `now`,
    /// so the replies of one round rank on one scale.
    pub(super) fn fix_weight(&mut self, now: Instant, ttl: Duration) {
        self.weight = self.share.weight(now, ttl);
    }

    /// Live reservations (expired ones may linger until the next ranking).
    pub(super) fn total(&self) -> usize {
        self.by_conn.len()
    }

    /// Live reservations on `id` at `now`, after expiring the old ones.
    pub(super) fn live(&mut self, id: InstanceId, now: Instant, ttl: Duration) -> u32 {
        let unshown = match self.unshown.get_mut(&id) {
            Some(buckets) => {
                let unshown = unshown_live(buckets, now, ttl);
                if buckets.is_empty() {
                    self.unshown.remove(&id);
                }
                unshown
            }
            None => 0,
        };
        let Some(queue) = self.by_member.get_mut(&id) else {
            self.arrived.remove(&id);
            return unshown;
        };
        let live = expire(queue, &mut self.by_conn, now, ttl, &mut self.stats);
        if queue.is_empty() {
            self.by_member.remove(&id);
        }
        self.unmatched(id, live).saturating_add(unshown)
    }

    /// `live` reservations on `id` less those its known landings cancel
    /// (capped at `live`: the rest expired).
    fn unmatched(&mut self, id: InstanceId, live: u32) -> u32 {
        let Some(arrived) = self.arrived.get_mut(&id) else { return live };
        *arrived = (*arrived).min(live);
        let left = live - *arrived;
        if *arrived == 0 {
            self.arrived.remove(&id);
        }
        left
    }

    /// [`live`](Self::live) for each of `ids` (sorted by id, each once),
    /// into `out` in the same order. A round asks this for every candidate:
    /// one walk of the maps in id order beside `ids` instead of a look-up
    /// each, unless the maps are so much larger than `ids` that look-ups
    /// are cheaper.
    pub(super) fn live_each<S>(
        &mut self,
        ids: &[(InstanceId, S)],
        now: Instant,
        ttl: Duration,
        out: &mut Vec<u32>,
    ) {
        out.clear();
        let walk = self.by_member.len() + self.unshown.len();
        if walk > ids.len().saturating_mul(8) {
            for &(id, _) in ids {
                let live = self.live(id, now, ttl);
                out.push(live);
            }
            return;
        }
        out.resize(ids.len(), 0);
        let mut emptied = Vec::new();
        let mut at = 0;
        for (&id, queue) in &mut self.by_member {
            let Some(k) = position_from(ids, &mut at, id) else { continue };
            out[k] = expire(queue, &mut self.by_conn, now, ttl, &mut self.stats);
            if queue.is_empty() {
                emptied.push(id);
            }
        }
        for id in emptied.drain(..) {
            self.by_member.remove(&id);
        }
        let mut at = 0;
        for (&id, arrived) in &mut self.arrived {
            let Some(k) = position_from(ids, &mut at, id) else { continue };
            *arrived = (*arrived).min(out[k]);
            out[k] -= *arrived;
            if *arrived == 0 {
                emptied.push(id);
            }
        }
        for id in emptied.drain(..) {
            self.arrived.remove(&id);
        }
        let mut at = 0;
        for (&id, buckets) in &mut self.unshown {
            let Some(k) = position_from(ids, &mut at, id) else { continue };
            out[k] = out[k].saturating_add(unshown_live(buckets, now, ttl));
            if buckets.is_empty() {
                emptied.push(id);
            }
        }
        for id in emptied {
            self.unshown.remove(&id);
        }
    }

    fn expire_all(&mut self, now: Instant, ttl: Duration) {
        let ids: Vec<InstanceId> = self.by_member.keys().copied().collect();
        for id in ids {
            self.live(id, now, ttl);
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
    ) -> (Option<InstanceId>, bool) {
        let replaced = self.by_conn.get(&conn).copied().and_then(|(old, seq)| {
            self.remove(old, seq)?;
            self.stats.reservations_replaced += 1;
            Some(old)
        });
        if self.total() >= limit {
            self.expire_all(now, ttl);
            if self.total() >= limit {
                self.stats.reservations_dropped += 1;
                return (replaced, false);
            }
        }
        if member == self.own {
            self.share.reserved(now, ttl);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_member.entry(member).or_default().insert(seq, Reservation { conn, made_at: now });
        self.by_conn.insert(conn, (member, seq));
        self.stats.reservations_made += 1;
        (replaced, true)
    }

    /// Records that `member` headed a reply now.
    pub(super) fn headed(&mut self, member: InstanceId) {
        self.headed_replies += 1;
        self.last_headed.insert(member, self.headed_replies);
    }

    /// `member`'s `connected` as herd control last took it from a report.
    pub(super) fn last_reported(&self, member: InstanceId) -> Option<u32> {
        self.last_reported.get(&member).copied()
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
        let unshown: usize = self.unshown.values().map(VecDeque::capacity).sum();
        self.total() * (reservation + conn)
            + unshown * size_of::<(Instant, u32)>()
            + self.unshown.len() * 2 * (size_of::<InstanceId>() + size_of::<VecDeque<(Instant, u32)>>())
            + self.by_member.len() * member
            + self.last_headed.len() * 2 * (size_of::<InstanceId>() + size_of::<u64>())
            + self.arrived.len() * 2 * (size_of::<InstanceId>() + size_of::<u32>())
            + self.share.heap_bytes()
    }
}

/// Expires the reservations of one member's `queue` made `ttl` or more
/// before `now` (and their connections' entries); returns how many live.
fn expire(
    queue: &mut BTreeMap<u64, Reservation>,
    by_conn: &mut BTreeMap<ConnectionId, (InstanceId, u64)>,
    now: Instant,
    ttl: Duration,
    stats: &mut HerdStats,
) -> u32 {
    while let Some(entry) = queue.first_entry() {
        if entry.get().made_at + ttl > now {
            break;
        }
        let reservation = entry.remove();
        by_conn.remove(&reservation.conn);
        stats.reservations_expired_unused += 1;
    }
    u32::try_from(queue.len()).unwrap_or(u32::MAX)
}

/// Where `id` is in `ids` (sorted by id), searching forward from `*at`,
/// which it advances: for walking `ids` beside a map in id order.
fn position_from<S>(ids: &[(InstanceId, S)], at: &mut usize, id: InstanceId) -> Option<usize> {
    while ids.get(*at).is_some_and(|&(other, _)| other < id) {
        *at += 1;
    }
    (ids.get(*at).map(|&(other, _)| other) == Some(id)).then_some(*at)
}

#[cfg(feature = "test-support")]
pub(crate) mod check;
mod landings;
