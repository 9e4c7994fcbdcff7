//! Transcripts of the seed's story and its variations, step by step: the
//! walks here, direct mode, staggering and the rest of a connection's life
//! in `client_transcripts/`.

mod common;

/// The transcripts by theme (files under `tests/client_transcripts/`).
mod client_transcripts {
    mod direct;
    mod lifecycle;
    mod staggered;
}

use std::time::Duration;

use aos_cluster::client::{Action, AttemptOutcome, Connector, Event, FailReason, Malformation, Phase, State};
use aos_cluster::wire::{HandshakeOutcome, RankedList, RejectReason, SessionId};
use aos_cluster::RetryPolicy;
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
