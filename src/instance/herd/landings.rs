//! Landings: how herd control learns that reserved clients arrived, from
//! their connections' closes, this instance's admissions and the figures
//! peers and registry rows show.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Herd;
use crate::instance::event::ConnectionId;
use crate::workload::InstanceId;

/// Released reservations waiting for figures that show them are counted in
/// buckets this wide (per member), at most [`UNSHOWN_BUCKETS`] per member, so
/// their memory does not grow with the arrival rate. A report shows only
/// the buckets wholly before it was asked for: wider buckets keep a flood's
/// releases predicted longer, and narrower ones did no better in the
/// simulator's `handshake-flood` scenarios (figures: the README's "What the
/// simulator shows").
const UNSHOWN_BUCKET: Duration = Duration::from_millis(20);
/// Past this many buckets on one member, releases join its newest.
const UNSHOWN_BUCKETS: usize = 64;

/// Which released clients a member's figures show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::instance) enum Shown {
    /// A registry row measured at this instant: every release before it
    /// (counted in buckets: those wholly before it).
    Row {
        /// When its figures were measured.
        measured_at: Instant,
    },
    /// A live report asked for at this instant: every release before the
    /// question (its client landed before, or gave up), and, of the releases
    /// while the question was out, as many as the rest of the rise, oldest
    /// first. When in the round trip the peer measured is not known, so such
    /// a release may or may not be in the figures: one the rise does not
    /// explain was of a client that landed after, still to be shown.
    Report {
        /// When the question was sent.
        asked_at: Instant,
    },
}

impl Herd {
    /// The client connection `conn` closed: its reservation, if any, is no
    /// longer a client on its way. A client keeps the connection of the
    /// handshake it follows open until its walk down the list ends, so this
    /// is when it landed or gave up; a handshake flood that closes after
    /// each reply leaves nothing behind.
    ///
    /// A peer's landing that no figures showed yet stays predicted, as a
    /// count, until figures measured after the release arrive (a live report
    /// or a registry row); dropping it now would leave it out until the next
    /// report, and that report's rise would then count it against a client
    /// still on its way. On this instance its admission already counted it.
    pub(in crate::instance) fn release(&mut self, conn: ConnectionId, now: Instant) {
        let Some((member, seq)) = self.by_conn.get(&conn).copied() else { return };
        self.remove(member, seq);
        self.stats.reservations_released += 1;
        if let Some(arrived) = self.arrived.get_mut(&member) {
            // Usually the client whose landing was counted: the two meet
            // now, and the figures that counted it already show it.
            *arrived -= 1;
            if *arrived == 0 {
                self.arrived.remove(&member);
            }
            return;
        }
        if member != self.own {
            let buckets = self.unshown.entry(member).or_default();
            let buckets_full = buckets.len() >= UNSHOWN_BUCKETS;
            match buckets.back_mut() {
                Some((start, n)) if *start + UNSHOWN_BUCKET > now || buckets_full => *n = n.saturating_add(1),
                _ => buckets.push_back((now, 1)),
            }
        }
    }

    /// A fresh report from `member`, asked for at `asked_at`, saying it
    /// holds `connected` sessions. As many sessions as `connected` rose
    /// since its last report landed there; less those whose clients already
    /// released their reservations (waiting in `unshown` for figures that
    /// show them), they are clients still holding one: counted in
    /// `arrived`, each cancels one live reservation until a close releases
    /// one. Reservations of clients still on their way stay predicted until
    /// their clients close or they expire; none is cleared for its age alone:
    /// under load the clients of one member land many times slower than
    /// another's (this instance's own land fastest), so no learned landing
    /// time says when a client had ample time.
    pub(in crate::instance) fn cover(
        &mut self,
        member: InstanceId,
        connected: u32,
        shown: Shown,
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
        // Released clients the figures show: a rise they explain is not a
        // landing of anyone still reserved.
        if let Some(buckets) = self.unshown.get_mut(&member) {
            let (Shown::Row { measured_at: before } | Shown::Report { asked_at: before }) = shown;
            while buckets.front().is_some_and(|&(start, _)| start + UNSHOWN_BUCKET <= before) {
                if let Some((_, n)) = buckets.pop_front() {
                    landed = landed.saturating_sub(n as usize);
                }
            }
            if let Shown::Report { .. } = shown {
                while landed > 0 {
                    let Some((_, n)) = buckets.front_mut() else { break };
                    let taken = (*n as usize).min(landed);
                    landed -= taken;
                    *n -= taken as u32;
                    if *n == 0 {
                        buckets.pop_front();
                    }
                }
            }
            if buckets.is_empty() {
                self.unshown.remove(&member);
            }
        }
        let Some(queue) = self.by_member.get(&member) else {
            self.arrived.remove(&member);
            return;
        };
        let before = self.arrived.get(&member).map_or(0, |&a| a as usize);
        let arrived = before.saturating_add(landed).min(queue.len());
        if arrived == 0 {
            self.arrived.remove(&member);
        } else {
            self.arrived.insert(member, arrived as u32);
        }
    }

    /// A session was admitted here at `now` on `conn`: one live reservation
    /// on this instance came true. Where the session came on the connection
    /// of the handshake it follows, it is that connection's, and goes;
    /// otherwise (the usual case: a session on a connection of its own)
    /// which one is not known, so one stays cancelled until the close of its
    /// client's handshake connection releases it, or it expires.
    pub(in crate::instance) fn landed_here(&mut self, conn: ConnectionId, now: Instant, ttl: Duration) {
        self.share.landed(now, ttl);
        let own = self.own;
        if let Some(&(member, seq)) = self.by_conn.get(&conn) {
            if member == own {
                self.remove(own, seq);
                return;
            }
        }
        if self.live(own, now, ttl) > 0 {
            *self.arrived.entry(own).or_insert(0) += 1;
        }
    }
}

/// Released reservations in one member's `buckets` still waiting to be
/// shown, after dropping those older than the reservation ttl (a
/// prediction lasts no longer than the reservation it came from).
pub(super) fn unshown_live(buckets: &mut VecDeque<(Instant, u32)>, now: Instant, ttl: Duration) -> u32 {
    while buckets.front().is_some_and(|&(start, _)| start + ttl <= now) {
        buckets.pop_front();
    }
    buckets.iter().fold(0u32, |sum, &(_, n)| sum.saturating_add(n))
}
