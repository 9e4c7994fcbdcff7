//! Transcripts of the seed's story and its variations, step by step.

mod common;

use std::time::Duration;

use aos_cluster::client::{Action, AttemptOutcome, Connector, Event, FailReason, Malformation, Phase, State};
use aos_cluster::wire::{HandshakeOutcome, Message, RankedList, RejectReason, SessionId};
use aos_cluster::{ClientConfig, RetryPolicy, UsageError};
use common::client::*;

/// The seed's story: s0 silent, s1 answers [B 1/10, A 3/10, C 5/10], B admits.
#[test]
fn first_seed_silent_second_answers_session_with_b() {
    let mut t = Transcript::new(config(3));
    let a1 = t.expect_attempt(Want::Handshake(0), at(0));
    t.expect_idle(at(0));
    assert_eq!(t.c.poll_timeout(), Some(at(5000)));
    t.expect_idle(at(4999));
    t.expect(Want::Close(a1), at(5000));
    let a2 = t.expect_attempt(Want::Handshake(1), at(5000));
    t.expect_idle(at(5000));
    t.event(ranked(a2, &[("b", 1, 10), ("a", 3, 10), ("c", 5, 10)]), at(5020));
    let a3 = t.expect_attempt(Want::Session("b"), at(5020));
    t.expect_idle(at(5020));
    assert_eq!(t.c.state(), State::Connecting);
    assert_eq!(t.c.poll_timeout(), Some(at(10_020)));
    t.event(accepted(a3, 77), at(5030));
    // The handshake's transport stays open while its list is walked.
    t.expect(Want::Close(a2), at(5030));
    let connected = t.expect(Want::Connected("b"), at(5030));
    assert_eq!(
        connected,
        Action::Connected {
            attempt: a3,
            endpoint: ep("b"),
            instance: Some(id_of("b")),
            session_id: SessionId(77)
        }
    );
    t.expect_idle(at(5030));
    assert_eq!(t.c.state(), State::Connected);
    assert_eq!(t.c.poll_timeout(), None);
    let session = t.c.session().expect("session");
    assert_eq!(
        (session.endpoint.clone(), session.instance, session.session_id),
        (ep("b"), Some(id_of("b")), SessionId(77))
    );

    let log = t.c.attempts();
    let summary: Vec<_> =
        log.iter().map(|r| (r.phase, r.index, r.endpoint.to_string(), r.outcome.clone())).collect();
    assert_eq!(
        summary,
        vec![
            (Phase::Handshake, 0, "s0:2712".into(), AttemptOutcome::TimedOut),
            (Phase::Handshake, 1, "s1:2712".into(), AttemptOutcome::Ranked { entries: 3, stale: false }),
            (Phase::Session, 0, "b:2712".into(), AttemptOutcome::Accepted { session_id: SessionId(77) }),
        ]
    );
    assert_eq!(log[0].started, Duration::ZERO);
    assert_eq!(log[0].ended, Some(Duration::from_secs(5)));
    assert_eq!(log[2].ended, Some(Duration::from_millis(5030)));

    // Connected is final: time passing and late replies start nothing.
    t.event(ranked(a1, &[("c", 0, 10)]), at(6000));
    t.expect_idle(at(60_000));
    assert_eq!(t.c.stats().ignored, 1);
}

/// B full, A draining, C times out, D admits: the list is walked in order.
#[test]
fn rejections_and_timeouts_walk_the_ranked_list() {
    let mut t = Transcript::new(config(1));
    let h = t.expect_attempt(Want::Handshake(0), at(0));
    t.event(ranked(h, &[("b", 1, 10), ("a", 3, 10), ("c", 5, 10), ("d", 6, 10), ("e", 7, 10)]), at(10));
    let b = t.expect_attempt(Want::Session("b"), at(10));
    t.event(rejected(b, RejectReason::Full), at(20));
    t.expect(Want::Close(b), at(20));
    let a = t.expect_attempt(Want::Session("a"), at(20));
    t.event(rejected(a, RejectReason::Draining), at(30));
    t.expect(Want::Close(a), at(30));
    let c = t.expect_attempt(Want::Session("c"), at(30));
    t.expect_idle(at(5029));
    t.expect(Want::Close(c), at(5030));
    let d = t.expect_attempt(Want::Session("d"), at(5030));
    t.event(accepted(d, 1), at(5040));
    t.expect(Want::Close(h), at(5040));
    t.expect(Want::Connected("d"), at(5040));
    t.expect_idle(at(5040));
    assert_eq!(t.c.stats().session_requests, 4, "e is never tried");
    let outcomes: Vec<_> = t.c.attempts().iter().skip(1).map(|r| r.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        vec![
            AttemptOutcome::Rejected(RejectReason::Full),
            AttemptOutcome::Rejected(RejectReason::Draining),
            AttemptOutcome::TimedOut,
            AttemptOutcome::Accepted { session_id: SessionId(1) },
        ]
    );
}

/// Every seed silent in every round: backoffs, then `Failed` with the full log.
#[test]
fn every_seed_silent_fails_with_the_full_attempt_log() {
    let mut cfg = config(3);
    cfg.retry = RetryPolicy { base: Duration::from_secs(1), cap: Duration::from_secs(30), max_rounds: 3 };
    let mut t = Transcript::new(cfg);
    let mut now = at(0);
    for round in 0..3u32 {
        for seed in 0..3 {
            let a = t.expect_attempt(Want::Handshake(seed), now);
            t.expect_idle(now);
            now += Duration::from_secs(5);
            t.expect(Want::Close(a), now);
        }
        if round < 2 {
            let Action::RoundFailed { round: r, retry_at } = t.expect(Want::RoundFailed(round), now) else {
                unreachable!()
            };
            assert_eq!(r, round);
            // Full jitter: rand(0, min(cap, base * 2^round)).
            assert!(retry_at >= now && retry_at <= now + Duration::from_secs(1 << round));
            t.expect_idle(now);
            assert_eq!(t.c.state(), State::Backoff);
            assert_eq!(t.c.poll_timeout(), Some(retry_at));
            now = retry_at;
        }
    }
    let Action::Failed(error) = t.expect(Want::Failed, now) else { unreachable!() };
    t.expect_idle(now);
    assert_eq!(t.c.state(), State::Failed);
    assert_eq!(t.c.poll_timeout(), None);
    assert_eq!(error.reason, FailReason::RoundsExhausted);
    assert_eq!(error.rounds, 3);
    assert_eq!(error.attempts.len(), 9);
    for (i, record) in error.attempts.iter().enumerate() {
        assert_eq!((record.round, record.phase, record.index), (i as u32 / 3, Phase::Handshake, i % 3));
        assert_eq!(record.outcome, AttemptOutcome::TimedOut);
        assert_eq!(record.ended, Some(record.started + Duration::from_secs(5)));
    }
    let text = error.to_string();
    assert_eq!(text.lines().count(), 10, "{text}");
    for seed in ["s0:2712", "s1:2712", "s2:2712"] {
        assert_eq!(text.matches(seed).count(), 3, "{text}");
    }
    assert!(text.contains("timed out") && text.contains("every round failed"), "{text}");
    assert_eq!(error.attempts, t.c.attempts());
}

/// Refusals, transport failures, empty lists and mismatched ids move the walk on.
#[test]
fn every_kind_of_handshake_failure_moves_to_the_next_seed() {
    let mut t = Transcript::new(config(5));
    let a0 = t.expect_attempt(Want::Handshake(0), at(0));
    t.event(refused(a0), at(1));
    t.expect(Want::Close(a0), at(1));
    let a1 = t.expect_attempt(Want::Handshake(1), at(1));
    t.event(transport_failed(a1), at(2));
    t.expect(Want::Close(a1), at(2));
    let a2 = t.expect_attempt(Want::Handshake(2), at(2));
    t.event(handshake(a2, HandshakeOutcome::Ranked(RankedList::default())), at(3));
    t.expect(Want::Close(a2), at(3));
    let a3 = t.expect_attempt(Want::Handshake(3), at(3));
    t.event(wrong_id(a3), at(4));
    t.expect(Want::Close(a3), at(4));
    let a4 = t.expect_attempt(Want::Handshake(4), at(4));
    t.event(accepted(a4, 9), at(5));
    t.expect(Want::Close(a4), at(5));
    // A session reply to a handshake is malformed; the round has no seed left.
    t.expect(Want::RoundFailed(0), at(5));
    t.expect_idle(at(5));
    let outcomes: Vec<_> = t.c.attempts().iter().map(|r| r.outcome.clone()).collect();
    assert_eq!(outcomes[0], AttemptOutcome::Refused(aos_cluster::wire::RefuseReason::Busy));
    assert_eq!(outcomes[1], AttemptOutcome::TransportFailed("connection refused".into()));
    assert_eq!(outcomes[2], AttemptOutcome::EmptyList);
    assert_eq!(
        outcomes[3],
        AttemptOutcome::Malformed(Malformation::RequestIdMismatch { got: a3.request_id() + 1000 })
    );
    assert_eq!(outcomes[4], AttemptOutcome::Malformed(Malformation::WrongReplyKind));
}

/// Direct mode (`-loadbalance=0`): the seed that answers is the session target.
#[test]
fn direct_mode_connects_to_the_answering_seed() {
    let mut cfg = config(3);
    cfg.load_balance = false;
    let mut t = Transcript::new(cfg);
    let Action::SendHandshake { attempt: a0, message: Message::HandshakeRequest(request), .. } =
        t.expect(Want::Handshake(0), at(0))
    else {
        unreachable!()
    };
    assert!(!request.load_balance);
    assert_eq!(request.request_id, a0.request_id());
    t.event(refused(a0), at(10));
    t.expect(Want::Close(a0), at(10));
    let a1 = t.expect_attempt(Want::Handshake(1), at(10));
    // Any non-empty list counts as an answer, even one naming other instances.
    t.event(ranked(a1, &[("b", 0, 10), ("s1", 4, 10)]), at(20));
    let Action::SendSessionRequest { attempt: s, rank, endpoint, .. } = t.expect(Want::Session("s1"), at(20))
    else {
        unreachable!()
    };
    assert_eq!((rank, endpoint), (0, ep("s1")));
    t.event(accepted(s, 5), at(30));
    t.expect(Want::Close(a1), at(30));
    let connected = t.expect(Want::Connected("s1"), at(30));
    assert_eq!(
        connected,
        Action::Connected {
            attempt: s,
            endpoint: ep("s1"),
            instance: Some(id_of("s1")),
            session_id: SessionId(5)
        }
    );
    assert_eq!(t.c.attempts()[1].outcome, AttemptOutcome::Answered);
}

/// Direct mode (SPEC 1.4): an answering seed with an empty list cannot take
/// a session, which is a refusal: the walk moves on. A rejection by the
/// target that did answer ends the round (no other target is known).
#[test]
fn direct_mode_empty_list_is_a_refusal_and_rejection_ends_the_round() {
    let mut cfg = config(2);
    cfg.load_balance = false;
    let mut t = Transcript::new(cfg);
    let a0 = t.expect_attempt(Want::Handshake(0), at(0));
    t.event(handshake(a0, HandshakeOutcome::Ranked(RankedList::default())), at(1));
    t.expect(Want::Close(a0), at(1));
    let a1 = t.expect_attempt(Want::Handshake(1), at(1));
    t.event(ranked(a1, &[("s1", 0, 10)]), at(2));
    let s = t.expect_attempt(Want::Session("s1"), at(2));
    t.event(rejected(s, RejectReason::Full), at(3));
    t.expect(Want::Close(s), at(3));
    t.expect(Want::Close(a1), at(3));
    t.expect(Want::RoundFailed(0), at(3));
    assert_eq!(t.c.attempts()[0].outcome, AttemptOutcome::EmptyList);
    assert_eq!(t.c.stats().handshakes, 2, "direct mode walks on after an empty answer only");
}

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

/// After `SessionLost` the Connector reports it and starts over on request.
#[test]
fn session_lost_then_reconnect_balances_again() {
    let mut t = Transcript::new(config(2));
    let h = t.expect_attempt(Want::Handshake(0), at(0));
    t.event(ranked(h, &[("b", 0, 10)]), at(1));
    let s = t.expect_attempt(Want::Session("b"), at(1));
    t.event(accepted(s, 1), at(2));
    t.expect(Want::Close(h), at(2));
    t.expect(Want::Connected("b"), at(2));
    assert_eq!(t.c.reconnect(at(3)), Err(UsageError::OutOfState { event: "reconnect", state: "connected" }));
    t.event(Event::SessionLost { reason: "reset".into() }, at(100));
    let Action::SessionClosed { endpoint, lost } = t.expect(Want::SessionClosed { lost: true }, at(100))
    else {
        unreachable!()
    };
    assert_eq!((endpoint, lost.as_deref()), (ep("b"), Some("reset")));
    t.expect_idle(at(100_000));
    assert_eq!(t.c.state(), State::Closed);
    assert!(t.c.handle_event(Event::SessionEnded, at(100_001)).is_err());
    t.c.reconnect(at(200_000)).expect("reconnect from closed");
    let h2 = t.expect_attempt(Want::Handshake(0), at(200_000));
    assert!(h2 > s, "attempt ids are never reused");
    assert_eq!(t.c.attempts().len(), 1, "a new effort has a new log");
    t.event(ranked(h2, &[("c", 0, 10), ("b", 1, 10)]), at(200_001));
    t.expect(Want::Session("c"), at(200_001));
}

/// Session end and loss events outside a session are usage errors that change nothing.
#[test]
fn session_events_outside_a_session_are_usage_errors() {
    let mut t = Transcript::new(config(1));
    t.expect(Want::Handshake(0), at(0));
    let before = t.c.poll_timeout();
    assert_eq!(
        t.c.handle_event(Event::SessionEnded, at(1)),
        Err(UsageError::OutOfState { event: "session ended", state: "handshaking" })
    );
    assert!(t.c.handle_event(Event::SessionLost { reason: "x".into() }, at(1)).is_err());
    assert_eq!(t.c.poll_timeout(), before);
    t.expect_idle(at(1));
}

/// Duplicates are tried once; a list longer than `max_list_len` is cut.
#[test]
fn duplicates_are_tried_once_and_long_lists_are_cut() {
    let mut cfg = config(1);
    cfg.max_list_len = 4;
    let mut t = Transcript::new(cfg);
    let h = t.expect_attempt(Want::Handshake(0), at(0));
    t.event(
        ranked(h, &[("a", 0, 9), ("b", 0, 9), ("a", 1, 9), ("c", 0, 9), ("d", 0, 9), ("e", 0, 9)]),
        at(1),
    );
    let mut now = 1;
    for name in ["a", "b", "c"] {
        let s = t.expect_attempt(Want::Session(name), at(now));
        now += 1;
        t.event(rejected(s, RejectReason::Full), at(now));
        t.expect(Want::Close(s), at(now));
    }
    t.expect(Want::Close(h), at(now));
    t.expect(Want::RoundFailed(0), at(now));
    assert_eq!(t.c.attempts()[0].outcome, AttemptOutcome::Ranked { entries: 3, stale: false });
}

/// A stale list is still used.
#[test]
fn stale_lists_are_used() {
    let mut t = Transcript::new(config(1));
    let h = t.expect_attempt(Want::Handshake(0), at(0));
    let Event::HandshakeReply { attempt, mut reply } = ranked(h, &[("b", 0, 9)]) else { unreachable!() };
    if let HandshakeOutcome::Ranked(list) = &mut reply.outcome {
        list.stale = true;
    }
    t.event(Event::HandshakeReply { attempt, reply }, at(1));
    t.expect(Want::Session("b"), at(1));
    assert_eq!(t.c.attempts()[0].outcome, AttemptOutcome::Ranked { entries: 1, stale: true });
}

/// Time going backwards is clamped: deadlines stay where they were.
#[test]
fn time_going_backwards_is_clamped() {
    let mut t = Transcript::new(config(2));
    let a0 = t.expect_attempt(Want::Handshake(0), at(0));
    t.c.handle_timeout(at(1000));
    t.c.handle_timeout(at(500));
    t.event(refused(a0), at(200));
    assert_eq!(t.c.stats().clamped, 2);
    t.expect(Want::Close(a0), at(1000));
    t.expect(Want::Handshake(1), at(1000));
    assert_eq!(t.c.poll_timeout(), Some(at(6000)), "the next handshake starts at the clamped now");
    assert_eq!(t.c.attempts()[1].started, Duration::from_millis(1000));
}

/// The overall deadline cuts a backoff short and fails with the log.
#[test]
fn overall_deadline_fails_during_backoff() {
    let mut cfg = config(1);
    cfg.overall_deadline = Some(Duration::from_secs(6));
    cfg.retry = RetryPolicy { base: Duration::from_secs(30), cap: Duration::from_secs(30), max_rounds: 10 };
    let mut t = Transcript::new(cfg);
    let a = t.expect_attempt(Want::Handshake(0), at(0));
    t.expect(Want::Close(a), at(5000));
    let Action::RoundFailed { retry_at, .. } = t.expect(Want::RoundFailed(0), at(5000)) else {
        unreachable!()
    };
    t.expect_idle(at(5000));
    let expected = retry_at.min(at(6000));
    assert_eq!(t.c.poll_timeout(), Some(expected));
    if retry_at < at(6000) {
        // The rare short jitter: the second round's handshake is cut by the deadline.
        let a2 = t.expect_attempt(Want::Handshake(0), retry_at);
        t.expect(Want::Close(a2), at(6000));
    }
    let Action::Failed(error) = t.expect(Want::Failed, at(6000)) else { unreachable!() };
    assert_eq!(error.reason, FailReason::DeadlineExceeded);
    assert!(error.to_string().contains("deadline"));
}

/// Seeded shuffles: the walk is a permutation, and the same seed gives the same walk.
#[test]
fn shuffled_walks_are_seeded_permutations() {
    let walk = |rng_seed| {
        let mut cfg = config(8);
        cfg.shuffle_seeds = true;
        let mut c = Connector::new(cfg, at(0), rng_seed).expect("valid");
        let mut order = Vec::new();
        while order.len() < 8 {
            match c.poll_action() {
                Some(Action::SendHandshake { seed_index, .. }) => order.push(seed_index),
                Some(_) => {}
                None => {
                    c.handle_timeout(c.poll_timeout().expect("waiting"));
                }
            }
        }
        order
    };
    let first = walk(1);
    assert_eq!(first, walk(1));
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(sorted, (0..8).collect::<Vec<_>>());
    assert!((2..20).any(|s| walk(s) != first), "different seeds shuffle differently");
}

/// Bad configurations are rejected up front.
#[test]
fn invalid_config_is_an_error() {
    assert!(Connector::new(ClientConfig::default(), at(0), 0).is_err());
    let mut cfg = config(1);
    cfg.retry.max_rounds = 0;
    assert!(Connector::new(cfg, at(0), 0).is_err());
}

/// Replies for unknown attempts and stray transport failures are ignored.
#[test]
fn unknown_attempts_are_ignored() {
    let mut t = Transcript::new(config(1));
    let a = t.expect_attempt(Want::Handshake(0), at(0));
    let unknown = {
        let mut other = Connector::new(config(2), at(0), 0).expect("valid");
        let _ = other.poll_action();
        other.handle_timeout(at(5000));
        let mut id = None;
        while let Some(action) = other.poll_action() {
            if let Action::SendHandshake { attempt, .. } = action {
                id = Some(attempt);
            }
        }
        id.expect("the second seed's handshake")
    };
    assert_ne!(unknown, a);
    t.event(ranked(unknown, &[("b", 0, 1)]), at(1));
    t.event(transport_failed(unknown), at(2));
    t.event(accepted(unknown, 1), at(3));
    t.expect_idle(at(3));
    assert_eq!(t.c.stats().ignored, 3);
    assert_eq!(t.c.state(), State::Handshaking);
}

/// The one conversion from a decoded message: replies become events for
/// their attempt; requests and reports are not replies.
#[test]
fn messages_become_events_only_when_they_are_replies() {
    use aos_cluster::wire::{QueryId, SessionRequest, WorkloadQuery};
    let mut t = Transcript::new(config(1));
    let h = t.expect_attempt(Want::Handshake(0), at(0));
    let Event::HandshakeReply { reply, .. } = ranked(h, &[("b", 0, 10)]) else { unreachable!() };
    let event = Event::from_message(h, Message::HandshakeReply(reply.clone())).expect("a reply");
    assert_eq!(event, Event::HandshakeReply { attempt: h, reply });
    t.event(event, at(1));
    let s = t.expect_attempt(Want::Session("b"), at(1));
    for wrong in [
        Message::SessionRequest(SessionRequest { request_id: s.request_id(), credential: None }),
        Message::WorkloadQuery(WorkloadQuery { query_id: QueryId(1) }),
    ] {
        let error = Event::from_message(s, wrong).expect_err("not a reply");
        assert!(error.to_string().contains("unexpected"), "{error}");
    }
    let Event::SessionReply { reply, .. } = accepted(s, 4) else { unreachable!() };
    t.event(Event::from_message(s, Message::SessionReply(reply)).expect("a reply"), at(2));
    t.expect(Want::Close(h), at(2));
    t.expect(Want::Connected("b"), at(2));
    t.expect_idle(at(2));
}

/// The credential set on the Connector rides on every session request, and
/// an `Unauthorized` rejection is a failed attempt like any other: the walk
/// goes on to the next entry.
#[test]
fn every_session_request_carries_the_credential_and_unauthorized_moves_on() {
    use aos_cluster::wire::Credential;
    let mut t = Transcript::new(config(1));
    assert_eq!(t.c.credential(), None);
    let token = Credential::new(*b"ticket-42").unwrap();
    t.c.set_credential(Some(token.clone()));
    let a = t.expect_attempt(Want::Handshake(0), at(0));
    t.event(ranked(a, &[("x", 0, 10), ("y", 1, 10)]), at(10));
    let Action::SendSessionRequest { attempt: s1, message: Message::SessionRequest(request), .. } =
        t.expect(Want::Session("x"), at(10))
    else {
        unreachable!()
    };
    assert_eq!(request.credential.as_ref(), Some(&token));
    t.event(rejected(s1, RejectReason::Unauthorized), at(20));
    t.expect(Want::Close(s1), at(20));
    let Action::SendSessionRequest { message: Message::SessionRequest(request), .. } =
        t.expect(Want::Session("y"), at(20))
    else {
        unreachable!()
    };
    assert_eq!(request.credential, Some(token));
    // Cleared, the requests carry none: the plain request of a client without one.
    t.c.set_credential(None);
    assert_eq!(t.c.credential(), None);
}
