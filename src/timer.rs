//! The fixed timer table both machines use: one slot per timer kind, so the
//! next deadline is a `min` over a small array with no allocation.

use std::time::Instant;

/// A kind of timer that indexes a [`TimerTable`].
pub(crate) trait TimerKind: Copy + 'static {
    /// Every kind, in index order.
    const ALL: &'static [Self];
    /// This kind's slot.
    fn index(self) -> usize;
}

/// `N` optional deadlines indexed by a [`TimerKind`].
#[derive(Debug, Clone)]
pub(crate) struct TimerTable<const N: usize> {
    deadlines: [Option<Instant>; N],
}

impl<const N: usize> Default for TimerTable<N> {
    fn default() -> Self {
        TimerTable { deadlines: [None; N] }
    }
}

impl<const N: usize> TimerTable<N> {
    pub(crate) fn set<K: TimerKind>(&mut self, kind: K, at: Instant) {
        self.deadlines[kind.index()] = Some(at);
    }

    pub(crate) fn stop<K: TimerKind>(&mut self, kind: K) {
        self.deadlines[kind.index()] = None;
    }

    pub(crate) fn get<K: TimerKind>(&self, kind: K) -> Option<Instant> {
        self.deadlines[kind.index()]
    }

    pub(crate) fn stop_all(&mut self) {
        self.deadlines = [None; N];
    }

    /// The earliest deadline, if any timer is running.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Stops and returns the kinds whose deadline is at or before `now`,
    /// earliest first (ties in index order), so expiry handling is deterministic.
    pub(crate) fn expire<K: TimerKind>(&mut self, now: Instant) -> Option<K> {
        let kind = K::ALL
            .iter()
            .copied()
            .filter(|k| self.deadlines[k.index()].is_some_and(|d| d <= now))
            .min_by_key(|k| (self.deadlines[k.index()], k.index()))?;
        self.deadlines[kind.index()] = None;
        Some(kind)
    }
}
