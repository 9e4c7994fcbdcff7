//! Which figures an instance publishes in its registry row: in steps while
//! they move at every beat, exactly once they settle.
//!
//! Every change of a row's figures is a write, and every balancing
//! instance reads it back (a row in its incremental read, an event on its
//! etcd watch). In a login storm every member's `connected` changes at every
//! beat: a thousand members would write two hundred times a second, and
//! etcd spends about half a millisecond of CPU on each. Balancers rank on
//! registry figures only to choose which members to ask live, and admission
//! is the authority, so figures that lag by less than a step while they move
//! rank as well; the first beat after they stop publishes them exactly, and
//! a change after a steady beat is published at once.

use aos_cluster::Workload;

/// A member's figures move in steps of `max_sessions / FIGURE_STEPS` (at
/// least one session) while they change at every beat.
pub const FIGURE_STEPS: u32 = 16;

/// The smallest change of `connected` that a moving member publishes.
pub fn figure_step(max_sessions: u32) -> u32 {
    (max_sessions / FIGURE_STEPS).max(1)
}

/// What a heartbeat writer has published of one member's figures, and how
/// they moved at its last beat: the rule the server's writer follows, for
/// any loop that heartbeats a [`Registry`](super::Registry) itself.
///
/// ```
/// use aos_cluster::Workload;
/// use aos_cluster_tokio::registry::FigureSteps;
///
/// // Registered with 0 of 100; then one more session at every beat.
/// let mut steps = FigureSteps::new(Workload::new(0, 100));
/// let mut shown = Vec::new();
/// for connected in [1, 2, 3, 7, 8, 8] {
///     let live = Workload::new(connected, 100);
///     let publishes = steps.publishes(live);
///     steps.beat(live, publishes);
///     // The heartbeat carries `steps.published()`.
///     shown.push(steps.published().connected);
/// }
/// // At once after a steady beat, then steps of 6 while moving, exact when settled.
/// assert_eq!(shown, [1, 1, 1, 7, 7, 8]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FigureSteps {
    published: Workload,
    last_beat: Workload,
    /// The last beat's figures differed from the beat before it (or from
    /// the registration).
    moving: bool,
}

impl FigureSteps {
    /// Just published `workload` (a registration, or a beat with nothing
    /// known before it).
    pub fn new(workload: Workload) -> Self {
        FigureSteps { published: workload, last_beat: workload, moving: false }
    }

    /// The figures in the row.
    pub fn published(&self) -> Workload {
        self.published
    }

    /// Whether a beat whose live figures are `now` publishes them (else it
    /// carries [`published`](Self::published) again). Always, unless the
    /// figures are moving and this beat neither settles them (the same as
    /// the last beat), changes `max_sessions`, crosses between free and full
    /// (balancers drop full members), nor moves `connected` a whole step from
    /// what is published.
    pub fn publishes(&self, now: Workload) -> bool {
        let published = self.published;
        if now == published {
            return false;
        }
        !self.moving
            || now == self.last_beat
            || now.max_sessions != published.max_sessions
            || now.is_full() != published.is_full()
            || now.connected.abs_diff(published.connected) >= figure_step(now.max_sessions)
    }

    /// Notes a beat whose live figures were `now`, and whether it published
    /// them.
    pub fn beat(&mut self, now: Workload, published: bool) {
        self.moving = now != self.last_beat;
        self.last_beat = now;
        if published {
            self.published = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(connected: u32, max_sessions: u32) -> Workload {
        Workload::new(connected, max_sessions)
    }

    /// Runs beats through `FigureSteps` as the heartbeat writer does; the figures
    /// published after each.
    fn publish(registered: Workload, beats: &[Workload]) -> Vec<Workload> {
        let mut steps = FigureSteps::new(registered);
        beats
            .iter()
            .map(|&now| {
                let publishes = steps.publishes(now);
                steps.beat(now, publishes);
                steps.published()
            })
            .collect()
    }

    #[test]
    fn steps_are_a_sixteenth_of_capacity_and_at_least_one_session() {
        assert_eq!(figure_step(1), 1);
        assert_eq!(figure_step(31), 1);
        assert_eq!(figure_step(32), 2);
        assert_eq!(figure_step(100), 6);
        assert_eq!(figure_step(65_535), 4_095);
    }

    #[test]
    fn an_isolated_change_is_published_at_once() {
        assert_eq!(publish(w(3, 100), &[w(4, 100)]), [w(4, 100)]);
        // Steady, then one change.
        assert_eq!(publish(w(3, 100), &[w(3, 100), w(3, 100), w(4, 100)]).last(), Some(&w(4, 100)));
    }

    #[test]
    fn a_storm_publishes_every_step_and_the_settled_figures() {
        // One more session at every beat from 0 of 100: steps of 6.
        let mut beats: Vec<Workload> = (1..=20).map(|c| w(c, 100)).collect();
        beats.push(w(20, 100));
        let published = publish(w(0, 100), &beats);
        let connected: Vec<u32> = published.iter().map(|p| p.connected).collect();
        assert_eq!(connected, [1, 1, 1, 1, 1, 1, 7, 7, 7, 7, 7, 7, 13, 13, 13, 13, 13, 13, 19, 19, 20]);
    }

    #[test]
    fn a_moving_member_that_becomes_full_or_free_says_so_at_once() {
        let published = publish(w(7, 10), &[w(8, 10), w(9, 10), w(10, 10), w(9, 10)]);
        assert_eq!(published, [w(8, 10), w(9, 10), w(10, 10), w(9, 10)]);
        let published = publish(w(90, 100), &[w(95, 100), w(97, 100), w(100, 100), w(98, 100)]);
        assert_eq!(published, [w(95, 100), w(95, 100), w(100, 100), w(98, 100)]);
    }

    #[test]
    fn a_new_capacity_is_published_at_once() {
        let published = publish(w(0, 100), &[w(1, 100), w(2, 100), w(2, 200)]);
        assert_eq!(published, [w(1, 100), w(1, 100), w(2, 200)]);
    }

    fn workload() -> impl Strategy<Value = Workload> {
        (1u32..300).prop_flat_map(|max| (0..=max, Just(max)).prop_map(|(c, m)| w(c, m)))
    }

    fn beats() -> impl Strategy<Value = Vec<Workload>> {
        // Mostly small moves on one capacity, as sessions come and go; some jumps.
        (workload(), prop::collection::vec((-3i64..=3, prop::bool::weighted(0.05), workload()), 0..80))
            .prop_map(|(start, moves)| {
                let mut now = start;
                moves
                    .into_iter()
                    .map(|(delta, jump, to)| {
                        now = if jump {
                            to
                        } else {
                            let connected =
                                (i64::from(now.connected) + delta).clamp(0, i64::from(now.max_sessions));
                            w(u32::try_from(connected).unwrap_or(0), now.max_sessions)
                        };
                        now
                    })
                    .collect()
            })
    }

    proptest! {
        /// After every beat the published figures are within a step of the
        /// truth, with the truth's capacity and fullness; once a beat repeats
        /// the one before (figures settled), they are exact.
        #[test]
        fn published_figures_stay_within_a_step_and_settle_exactly(
            registered in workload(),
            beats in beats(),
        ) {
            let published = publish(registered, &beats);
            for (i, (&now, &shown)) in beats.iter().zip(&published).enumerate() {
                prop_assert_eq!(shown.max_sessions, now.max_sessions);
                prop_assert_eq!(shown.is_full(), now.is_full());
                prop_assert!(shown.connected.abs_diff(now.connected) < figure_step(now.max_sessions));
                let previous = if i == 0 { registered } else { beats[i - 1] };
                let before_previous = match i {
                    0 | 1 => registered,
                    _ => beats[i - 2],
                };
                if now == previous || previous == before_previous {
                    // Settled, or the first change after a steady beat.
                    prop_assert_eq!(shown, now);
                }
            }
        }

        /// What is published only ever changes to the live figures of that
        /// beat: never to figures the member did not have.
        #[test]
        fn published_figures_change_only_to_that_beats_figures(registered in workload(), beats in beats()) {
            let published = publish(registered, &beats);
            let mut last = registered;
            for (&now, &shown) in beats.iter().zip(&published) {
                if shown != last {
                    prop_assert_eq!(shown, now);
                }
                last = shown;
            }
        }
    }
}
