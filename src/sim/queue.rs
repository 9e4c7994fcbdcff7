//! The virtual clock and the event queue.
//!
//! Events are ordered by time, then by the order they were scheduled, so two
//! events at the same instant always run in the same order and a run replays
//! exactly. Time is a `Duration` since the run's epoch.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

struct Entry<E> {
    at: Duration,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    // Reversed: `BinaryHeap` is a max-heap and the earliest event must pop first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A min-queue of events with a virtual clock that only moves forward.
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
    now: Duration,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue { heap: BinaryHeap::new(), seq: 0, now: Duration::ZERO }
    }
}

impl<E> EventQueue<E> {
    /// The current virtual time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Schedules `event` at `at`; a time in the past runs at the current time.
    pub fn push(&mut self, at: Duration, event: E) {
        let at = at.max(self.now);
        self.heap.push(Entry { at, seq: self.seq, event });
        self.seq += 1;
    }

    /// Schedules `event` after `delay`.
    pub fn push_in(&mut self, delay: Duration, event: E) {
        self.push(self.now + delay, event);
    }

    /// When the next event is due.
    pub fn peek_time(&self) -> Option<Duration> {
        self.heap.peek().map(|e| e.at)
    }

    /// Pops the earliest event, jumping the clock to its time.
    pub fn pop(&mut self) -> Option<(Duration, E)> {
        let entry = self.heap.pop()?;
        self.now = entry.at;
        Some((entry.at, entry.event))
    }

    /// Events still queued.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// No event is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_then_schedule_order_and_never_goes_back() {
        let mut q = EventQueue::default();
        let ms = Duration::from_millis;
        q.push(ms(5), "b");
        q.push(ms(1), "a");
        q.push(ms(5), "c");
        assert_eq!(q.pop(), Some((ms(1), "a")));
        q.push(ms(0), "late");
        assert_eq!(q.pop(), Some((ms(1), "late")));
        assert_eq!(q.pop(), Some((ms(5), "b")));
        assert_eq!(q.pop(), Some((ms(5), "c")));
        assert!(q.pop().is_none());
        assert_eq!(q.now(), ms(5));
    }
}
