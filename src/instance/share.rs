//! How much a reservation predicts: the recent share of this instance's
//! reservations on itself that became sessions here, as an exact fraction.
//!
//! Handshakes that never become sessions (a flood) must weigh what they are
//! worth: counted whole, they fill every member with predictions equally
//! and real clients land wherever the flood left a gap. The share is
//! recent in time as well as in count, so when a flood stops, balance
//! returns once the flood's reservations have left the window (one
//! `reservation_ttl`), not after hundreds of real sessions.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::workload::{Candidate, Workload};

/// Below this many own reservations in the window the share is not
/// trusted: every reservation counts whole.
const MIN_SAMPLES: u32 = 64;
/// A reservation never weighs less than `1 / MAX_DISCOUNT`, so a flood that
/// never lands cannot switch herd control off.
const MAX_DISCOUNT: u32 = 16;
/// The window (one `reservation_ttl`) is counted in this many buckets, so
/// its memory does not grow with the arrival rate.
const BUCKETS: u32 = 8;

/// Own reservations and own landings per time bucket, oldest first.
#[derive(Debug, Default)]
pub(super) struct LandingShare {
    /// `(bucket start, reserved, landed)`.
    buckets: VecDeque<(Instant, u32, u32)>,
}

impl LandingShare {
    /// A reservation on this instance was made at `now`.
    pub(super) fn reserved(&mut self, now: Instant, ttl: Duration) {
        *self.bucket(now, ttl).0 += 1;
    }

    /// A session was admitted here at `now`.
    pub(super) fn landed(&mut self, now: Instant, ttl: Duration) {
        *self.bucket(now, ttl).1 += 1;
    }

    fn bucket(&mut self, now: Instant, ttl: Duration) -> (&mut u32, &mut u32) {
        self.forget(now, ttl);
        let width = (ttl / BUCKETS).max(Duration::from_millis(1));
        if !self.buckets.back().is_some_and(|&(start, ..)| start + width > now) {
            self.buckets.push_back((now, 0, 0));
        }
        let (_, reserved, landed) = self.buckets.back_mut().expect("pushed above");
        (reserved, landed)
    }

    fn forget(&mut self, now: Instant, ttl: Duration) {
        while self.buckets.front().is_some_and(|&(start, ..)| start + ttl <= now) {
            self.buckets.pop_front();
        }
    }

    /// The weight of one reservation at `now`: landed over reserved within
    /// the last `ttl`, at least `1 / MAX_DISCOUNT`; whole below
    /// [`MIN_SAMPLES`].
    pub(super) fn weight(&mut self, now: Instant, ttl: Duration) -> Weight {
        self.forget(now, ttl);
        let (reserved, landed) = self
            .buckets
            .iter()
            .fold((0u32, 0u32), |(r, l), &(_, br, bl)| (r.saturating_add(br), l.saturating_add(bl)));
        if reserved < MIN_SAMPLES {
            return Weight::WHOLE;
        }
        let landed = landed.max(reserved.div_ceil(MAX_DISCOUNT)).min(reserved);
        Weight { landed, reserved }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<(Instant, u32, u32)>()
    }
}

/// What one reservation predicts, in sessions: `landed / reserved`, never
/// rounded. Predicted figures are scaled by `reserved`, so the ranking's
/// exact comparison of `connected / max_sessions` compares the fraction
/// exactly, and a live reservation always moves its member back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Weight {
    landed: u32,
    reserved: u32,
}

impl Weight {
    /// Every reservation a whole session.
    pub(super) const WHOLE: Weight = Weight { landed: 1, reserved: 1 };

    /// `reported` with `live` reservations added. Scaled by the weight's
    /// denominator (every candidate of a round alike, so equal figures stay
    /// equal); where that overflows, the sessions are rounded up instead, so
    /// a reservation still counts.
    pub(super) fn predict(self, reported: Candidate, live: u32) -> Candidate {
        let w = reported.workload;
        let (landed, reserved) = (u64::from(self.landed), u64::from(self.reserved));
        let scaled = (
            u64::from(w.connected) * reserved + u64::from(live) * landed,
            u64::from(w.max_sessions) * reserved,
        );
        let workload = match (u32::try_from(scaled.0), u32::try_from(scaled.1)) {
            (Ok(connected), Ok(max_sessions)) => Workload { connected, max_sessions },
            _ => {
                let extra = (u64::from(live) * landed).div_ceil(reserved);
                let extra = u32::try_from(extra).unwrap_or(u32::MAX);
                Workload { connected: w.connected.saturating_add(extra), ..w }
            }
        };
        Candidate { workload, ..reported }
    }

    /// Predicted figures as a reply shows them: unscaled, the predicted
    /// sessions rounded down (a member listed as not full shows so).
    pub(super) fn shown(predicted: Workload, reported: Workload) -> Workload {
        if reported.max_sessions == 0 || predicted.max_sessions == reported.max_sessions {
            return predicted;
        }
        let scale = predicted.max_sessions / reported.max_sessions;
        Workload { connected: predicted.connected / scale.max(1), max_sessions: reported.max_sessions }
    }
}
