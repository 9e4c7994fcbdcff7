//! Around the walk: sessions ending, reconnects, time, deadlines, bad
//! configurations, stray events and what requests carry.

use std::time::Duration;

use aos_cluster::client::{Action, Connector, Event, FailReason, State};
use aos_cluster::wire::{Message, RejectReason};
use aos_cluster::{ClientConfig, RetryPolicy, UsageError};

use crate::common::client::*;

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
