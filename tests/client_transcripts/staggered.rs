//! Staggered handshakes (RFC 8305): concurrent seeds, the earlier seed wins a tie.

use std::time::Duration;

use aos_cluster::client::AttemptOutcome;

use crate::common::client::*;

fn staggered(n: usize) -> Transcript {
    let mut cfg = config(n);
    cfg.attempt_delay = Some(Duration::from_millis(250));
    Transcript::new(cfg)
}

/// Staggered: s0 is slow, s1 wins; s0 is cancelled and its late reply ignored.
#[test]
fn staggered_slow_first_seed_loses_and_its_late_reply_is_ignored() {
    let mut t = staggered(3);
    let a0 = t.expect_attempt(Want::Handshake(0), at(0));
    t.expect_idle(at(249));
    let a1 = t.expect_attempt(Want::Handshake(1), at(250));
    t.event(ranked(a1, &[("b", 1, 10)]), at(300));
    // s0 is still pending, so the reply waits for its instant to close.
    t.expect_idle(at(300).checked_sub(Duration::from_millis(1)).unwrap_or(at(0)));
    assert_eq!(t.c.poll_timeout(), Some(at(300)));
    t.expect(Want::Close(a0), at(300));
    let s = t.expect_attempt(Want::Session("b"), at(300));
    t.expect_idle(at(300));
    t.event(ranked(a0, &[("c", 0, 10)]), at(400));
    t.expect_idle(at(400));
    assert_eq!(t.c.stats().ignored, 1);
    assert_eq!(t.c.stats().handshakes, 2, "s2 never started");
    t.event(accepted(s, 3), at(410));
    t.expect(Want::Close(a1), at(410));
    t.expect(Want::Connected("b"), at(410));
    assert_eq!(t.c.attempts()[0].outcome, AttemptOutcome::Cancelled);
}

/// Two replies at the same instant: the earlier seed wins in either delivery order.
#[test]
fn staggered_earlier_seed_wins_when_ready_together() {
    for earlier_first in [false, true] {
        let mut t = staggered(3);
        let a0 = t.expect_attempt(Want::Handshake(0), at(0));
        let a1 = t.expect_attempt(Want::Handshake(1), at(250));
        let (first, second) = if earlier_first { (a0, a1) } else { (a1, a0) };
        let list = |a| if a == a0 { ranked(a, &[("a", 0, 10)]) } else { ranked(a, &[("b", 0, 10)]) };
        t.event(list(first), at(300));
        t.event(list(second), at(300));
        // Either s0 answered with nothing earlier pending and won at once (s1
        // cancelled), or s1's held reply was superseded by s0's: s1's
        // transport closes; s0's stays open while its list is walked.
        let loser = if earlier_first { AttemptOutcome::Cancelled } else { AttemptOutcome::Superseded };
        t.expect(Want::Close(a1), at(300));
        t.expect(Want::Session("a"), at(300));
        t.expect_idle(at(300));
        let outcomes: Vec<_> = t.c.attempts().iter().take(2).map(|r| r.outcome.clone()).collect();
        assert_eq!(outcomes, vec![AttemptOutcome::Ranked { entries: 1, stale: false }, loser]);
        assert_eq!(t.c.stats().ignored, u64::from(earlier_first));
    }
}

/// A later seed's reply is decided once its instant closes: a reply from an
/// earlier seed one tick later arrives too late.
#[test]
fn staggered_instant_closes_at_a_later_now() {
    let mut t = staggered(2);
    let a0 = t.expect_attempt(Want::Handshake(0), at(0));
    let a1 = t.expect_attempt(Want::Handshake(1), at(250));
    t.event(ranked(a1, &[("b", 0, 10)]), at(300));
    t.event(ranked(a0, &[("a", 0, 10)]), at(301));
    t.expect(Want::Close(a0), at(301));
    t.expect(Want::Session("b"), at(301));
    t.expect_idle(at(301));
    assert_eq!(t.c.stats().ignored, 1);
}

/// A failure starts the next seed at once; the stagger restarts from there.
#[test]
fn staggered_failure_starts_the_next_seed_at_once() {
    let mut t = staggered(4);
    let a0 = t.expect_attempt(Want::Handshake(0), at(0));
    t.event(refused(a0), at(100));
    t.expect(Want::Close(a0), at(100));
    t.expect(Want::Handshake(1), at(100));
    t.expect_idle(at(349));
    let a2 = t.expect_attempt(Want::Handshake(2), at(350));
    // s1 and s2 pending; s2 refuses: s3 starts at once, s1 keeps waiting.
    t.event(refused(a2), at(360));
    t.expect(Want::Close(a2), at(360));
    t.expect(Want::Handshake(3), at(360));
    t.expect_idle(at(4999));
    assert_eq!(t.c.poll_timeout(), Some(at(5100)));
}
