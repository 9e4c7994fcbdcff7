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
//! or gave up. A fresh workload report from a member clears the reservations
//! on it that the report shows (see [`Herd::cover`]); an admitted session
//! here consumes this instance's oldest own reservation; the rest expire
//! unused.
//!
//! A reservation predicts a session only as often as reservations come true:
//! each weighs the recent share of this instance's reservations on itself
//! that became sessions here (see [`Herd::predicted_sessions`]), so a flood
//! of handshakes that never become sessions cannot fill the prediction.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::event::{ConnectionId, InstanceStats};
use crate::workload::{Candidate, InstanceId};

/// Released reservations waiting for figures that show them are counted in
/// buckets this wide (per member), so their memory does not grow with the
/// arrival rate.
const UNSHOWN_BUCKET: Duration = Duration::from_millis(100);

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
    /// How long a reserved client takes to land its session, learned from
    /// this instance's own admissions (a moving average); unknown until the
    /// first one.
    landing: Option<Duration>,
    /// Each peer's `connected` in its last valid report.
    last_reported: BTreeMap<InstanceId, u32>,
    /// This instance's id, to tell its own reservations apart.
    own: InstanceId,
    /// How many of this instance's reservations on itself came true: both
    /// counts decay (halve) together, so this is a recent ratio.
    own_reserved: u32,
    own_landed: u32,
    /// Per member ranked on registry figures: reservations released since
    /// those figures were measured, as `(bucket start, count)`, oldest first.
    /// The client landed or gave up; until figures measured after the
    /// release arrive nothing shows which, so they stay predicted.
    unshown: BTreeMap<InstanceId, VecDeque<(Instant, u32)>>,
    /// The share every reservation weighs in the current round, as
    /// `(landed, reserved)`: read once when a round finishes, so the replies
    /// of one round rank on one scale (only the head moves between them).
    weight: (u32, u32),
}

/// Below this many own reservations the landing ratio is not trusted: every
/// reservation counts whole.
const MIN_RATIO_SAMPLES: u32 = 64;
/// The window of the landing ratio, in own reservations.
const RATIO_WINDOW: u32 = 2_048;
/// The landing ratio never counts a reservation below `1 / MAX_DISCOUNT`,
/// so a flood that never lands cannot switch herd control off.
const MAX_DISCOUNT: u32 = 16;

impl Herd {
    pub(super) fn new(own: InstanceId) -> Self {
        Herd {
            by_member: BTreeMap::new(),
            by_conn: BTreeMap::new(),
            next_seq: 0,
            last_headed: BTreeMap::new(),
            headed_replies: 0,
            landing: None,
            last_reported: BTreeMap::new(),
            own,
            own_reserved: 0,
            own_landed: 0,
            weight: (1, 1),
            unshown: BTreeMap::new(),
        }
    }

    /// What `live` reservations on one member predict, in sessions: each
    /// counts as the share of this instance's reservations on itself that
    /// became sessions here (rounded to nearest, at least one in
    /// [`MAX_DISCOUNT`]). Handshakes that never become sessions (a flood)
    /// then weigh what they are worth: counted whole, they fill every member
    /// with predictions equally, and real clients land wherever the flood
    /// left a gap, which is no better than chance.
    pub(super) fn predicted_sessions(&self, live: u32) -> u32 {
        let (landed, reserved) = (u64::from(self.weight.0), u64::from(self.weight.1));
        let predicted = (u64::from(live) * landed + reserved / 2) / reserved;
        u32::try_from(predicted).unwrap_or(u32::MAX)
    }

    /// Reads the share reservations weigh for the round finishing now.
    pub(super) fn fix_weight(&mut self) {
        self.weight = if self.own_reserved < MIN_RATIO_SAMPLES {
            (1, 1)
        } else {
            let landed = self.own_landed.max(self.own_reserved / MAX_DISCOUNT).min(self.own_reserved);
            (landed, self.own_reserved)
        };
    }

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
        let Some(queue) = self.by_member.get_mut(&id) else { return unshown };
        let live = expire(queue, &mut self.by_conn, now, ttl, stats);
        if queue.is_empty() {
            self.by_member.remove(&id);
        }
        live.saturating_add(unshown)
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
        stats: &mut InstanceStats,
        out: &mut Vec<u32>,
    ) {
        out.clear();
        let walk = self.by_member.len() + self.unshown.len();
        if walk > ids.len().saturating_mul(8) {
            for &(id, _) in ids {
                let live = self.live(id, now, ttl, stats);
                out.push(live);
            }
            return;
        }
        out.resize(ids.len(), 0);
        let mut emptied = Vec::new();
        let mut at = 0;
        for (&id, queue) in &mut self.by_member {
            let Some(k) = position_from(ids, &mut at, id) else { continue };
            out[k] = expire(queue, &mut self.by_conn, now, ttl, stats);
            if queue.is_empty() {
                emptied.push(id);
            }
        }
        for id in emptied.drain(..) {
            self.by_member.remove(&id);
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
        if member == self.own {
            self.own_reserved += 1;
            if self.own_reserved >= RATIO_WINDOW {
                self.own_reserved /= 2;
                self.own_landed /= 2;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_member.entry(member).or_default().insert(seq, Reservation { conn, made_at: now });
        self.by_conn.insert(conn, (member, seq));
        stats.reservations_made += 1;
        (replaced, true)
    }

    /// The client connection `conn` closed: its reservation, if any, is no
    /// longer a client on its way. A client keeps the connection of the
    /// handshake it follows open until its walk down the list ends, so this
    /// is when it landed or gave up; a handshake flood that closes after
    /// each reply leaves nothing behind.
    ///
    /// With `until_shown` (the member may be ranked on registry figures, which
    /// do not show the landing for seconds), the prediction stays, as a
    /// count, until figures measured after the release arrive; otherwise (every
    /// member is asked live each round, or it is this instance) it goes now.
    pub(super) fn release(
        &mut self,
        conn: ConnectionId,
        now: Instant,
        until_shown: bool,
        stats: &mut InstanceStats,
    ) {
        let Some((member, seq)) = self.by_conn.get(&conn).copied() else { return };
        self.remove(member, seq);
        stats.reservations_released += 1;
        if until_shown && member != self.own {
            let buckets = self.unshown.entry(member).or_default();
            match buckets.back_mut() {
                Some((start, n)) if *start + UNSHOWN_BUCKET > now => *n = n.saturating_add(1),
                _ => buckets.push_back((now, 1)),
            }
        }
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
        // A look-up, not an insert: almost every report is from a member
        // reported before, and this runs once per report.
        let previous = match self.last_reported.get_mut(&member) {
            Some(last) => Some(std::mem::replace(last, connected)),
            None => {
                if self.last_reported.len() < max_members {
                    self.last_reported.insert(member, connected);
                }
                None
            }
        };
        let mut landed = previous.map_or(0, |p| connected.saturating_sub(p) as usize);
        // Releases wholly before the figures were measured: they show them
        // (and a rise they explain is not a landing of anyone still reserved).
        if let Some(buckets) = self.unshown.get_mut(&member) {
            while let Some(&(start, n)) = buckets.front() {
                if start + UNSHOWN_BUCKET > asked_at {
                    break;
                }
                buckets.pop_front();
                landed = landed.saturating_sub(n as usize);
            }
            if buckets.is_empty() {
                self.unshown.remove(&member);
            }
        }
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
        self.own_landed = self.own_landed.saturating_add(1);
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
    }
}

/// Expires the reservations of one member's `queue` made `ttl` or more
/// before `now` (and their connections' entries); returns how many live.
fn expire(
    queue: &mut BTreeMap<u64, Reservation>,
    by_conn: &mut BTreeMap<ConnectionId, (InstanceId, u64)>,
    now: Instant,
    ttl: Duration,
    stats: &mut InstanceStats,
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

/// Released reservations in one member's `buckets` still waiting to be
/// shown, after dropping those older than the reservation ttl (a
/// prediction lasts no longer than the reservation it came from).
fn unshown_live(buckets: &mut VecDeque<(Instant, u32)>, now: Instant, ttl: Duration) -> u32 {
    while buckets.front().is_some_and(|&(start, _)| start + ttl <= now) {
        buckets.pop_front();
    }
    buckets.iter().fold(0u32, |sum, &(_, n)| sum.saturating_add(n))
}

/// Where `id` is in `ids` (sorted by id), searching forward from `*at`,
/// which it advances: for walking `ids` beside a map in id order.
fn position_from<S>(ids: &[(InstanceId, S)], at: &mut usize, id: InstanceId) -> Option<usize> {
    while ids.get(*at).is_some_and(|&(other, _)| other < id) {
        *at += 1;
    }
    (ids.get(*at).map(|&(other, _)| other) == Some(id)).then_some(*at)
}

#[cfg(any(fuzzing, feature = "fuzzing"))]
#[path = "herd_check.rs"]
pub(crate) mod check;
