//! Direct mode (`-loadbalance=0`): the answering seed is the session target.

use aos_cluster::client::{Action, AttemptOutcome};
use aos_cluster::wire::{HandshakeOutcome, Message, RankedList, RejectReason, SessionId};

use crate::common::client::*;

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
