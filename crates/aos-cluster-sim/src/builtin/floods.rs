//! Hostile handshakes: a flood, and the clients that come after it.

use super::*;

impl Scenario {
    /// A 12 s handshake flood (500/s, never a session) on the first seed of
    /// three instances of 50, 100 and 150, then, once the flood's
    /// reservations expired and one snapshot later, 30 real clients at 10/s:
    /// they must split 5/10/15, as if no flood had been.
    pub fn flood_aftermath() -> Self {
        let mut s = Scenario::base(
            "flood-aftermath".into(),
            "12 s of 500 hostile handshakes/s on the first seed of 50/100/150, then 30 clients at 10/s",
            vec![
                InstanceGroup::serving(1, 50),
                InstanceGroup::serving(1, 100),
                InstanceGroup::serving(1, 150),
            ],
            vec![ArrivalGroup {
                start: FLOOD_LENGTH + AFTER_FLOOD,
                process: Process::Even { count: 30, within: Duration::from_secs(3) },
                session: SessionLength::Forever,
                measured: true,
            }],
        );
        s.floods.push(Flood {
            start: Duration::ZERO,
            duration: FLOOD_LENGTH,
            rate_per_sec: 500.0,
            targets: Vec::new(),
        });
        s
    }

    /// `login-storm` (1 000 clients within 1 s to 8 instances, 5 s stale
    /// snapshots) while hostile clients handshake at `factor` times the real
    /// clients' arrival rate (1 000/s), each on a new connection that it
    /// closes after the reply, never asking for a session. They all go to the
    /// first seed, the instance every real client handshakes with, so every
    /// hostile handshake runs a ranking there (and, with herd control,
    /// reserves the head of its list) among the real ones. The flood runs
    /// from the start for 5 s, past the storm and its stragglers.
    pub fn handshake_flood(factor: u32) -> Self {
        let mut s = Scenario::login_storm(8, 1000);
        let real_rate = f64::from(s.client_count()); // they arrive within 1 s
        s.name = format!("handshake-flood-{factor}x");
        s.description = format!(
            "login-storm while hostile clients handshake with the first seed at {factor}x the real \
             arrival rate and never ask for a session"
        );
        s.floods.push(Flood {
            start: Duration::ZERO,
            duration: Duration::from_secs(5),
            rate_per_sec: real_rate * f64::from(factor),
            targets: Vec::new(),
        });
        s
    }
}
