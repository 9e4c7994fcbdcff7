//! The virtual clock and the event queue.
//!
//! Events are ordered by time, then by the order they were scheduled, so two
//! events at the same instant always run in the same order and a run replays
//! exactly. Time is a `Duration` since the run's epoch.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

/// The heap holds only the ordering key and a slot number: events are large
/// (replies carry ranked lists), and a heap moves its entries on every push
/// and pop, so the events themselves stay put in `slots`.
#[derive(Clone, Copy)]
struct Entry {
    at: Duration,
    seq: u64,
    slot: usize,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: `BinaryHeap` is a max-heap and the earliest event must pop first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A min-queue of events with a virtual clock that only moves forward.
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry>,
    /// Queued events by slot; `None` is a free slot, listed in `free`.
    slots: Vec<Option<E>>,
    free: Vec<usize>,
    seq: u64,
    now: Duration,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
            now: Duration::ZERO,
        }
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
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                self.slots.len() - 1
            }
        };
        self.heap.push(Entry { at, seq: self.seq, slot });
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
        let event = self.slots[entry.slot].take()?;
        self.free.push(entry.slot);
        Some((entry.at, event))
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

    #[test]
    fn reused_slots_keep_time_then_schedule_order() {
        let mut q = EventQueue::default();
        let ms = Duration::from_millis;
        let mut popped = Vec::new();
        for round in 0..50u64 {
            // Interleave pushes and pops so freed slots are reused out of order.
            q.push(ms(round * 7 % 11 + round), round);
            q.push(ms(round), 1000 + round);
            popped.push(q.pop().unwrap());
        }
        while let Some(p) = q.pop() {
            popped.push(p);
        }
        assert_eq!(popped.len(), 100);
        assert!(popped.windows(2).all(|w| w[0].0 <= w[1].0), "{popped:?}");
        assert!(q.slots.len() <= 51, "slots are reused: {}", q.slots.len());
    }
}
