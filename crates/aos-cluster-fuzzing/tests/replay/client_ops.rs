//! Replays the committed `client_ops` fuzz corpus through the fuzz body, and
//! random op sequences through it as a property (no event sequence panics).

use proptest::prelude::*;

#[test]
fn corpus_replays_cleanly() {
    let corpus = crate::corpus("client_ops");
    assert!(corpus.len() >= 10, "the corpus is too small to mean much");
    for (path, data) in corpus {
        let outcome = std::panic::catch_unwind(|| aos_cluster_fuzzing::client_ops(&data, crate::base()));
        assert!(outcome.is_ok(), "{} broke an invariant", path.display());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_op_sequences_keep_the_invariants(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        aos_cluster_fuzzing::client_ops(&data, crate::base());
    }
}

/// Found by this target: a reply held (an earlier seed still pending) when
/// the overall deadline passes used to win in `handle_timeout` and start a
/// session request at the deadline, cancelled in the same call. The deadline
/// overrides the held reply: it is superseded and nothing starts.
#[test]
fn a_reply_held_at_the_overall_deadline_starts_nothing() {
    use std::time::Duration;

    use aos_cluster::client::{Action, AttemptOutcome, Connector, Event, FailReason};
    use aos_cluster::wire::{HandshakeOutcome, HandshakeReply, RankedEntry, RankedList};
    use aos_cluster::{ClientConfig, Endpoint, InstanceId, Workload};

    let at = |host: &str| Endpoint::new(host, 2712).expect("valid");
    let mut config = ClientConfig::with_seeds(vec![at("aos1"), at("aos2")]);
    config.attempt_delay = Some(Duration::from_millis(10));
    config.overall_deadline = Some(Duration::from_millis(100));
    let t0 = crate::base();
    let mut c = Connector::new(config, t0, 1).expect("valid");
    let drain = |c: &mut Connector| std::iter::from_fn(|| c.poll_action()).collect::<Vec<_>>();
    assert!(matches!(drain(&mut c)[..], [Action::SendHandshake { seed_index: 0, .. }]));
    let t1 = t0 + Duration::from_millis(10);
    c.handle_timeout(t1);
    let second = match drain(&mut c)[..] {
        [Action::SendHandshake { attempt, seed_index: 1, .. }] => attempt,
        ref other => panic!("{other:?}"),
    };
    // Seed 1 answers while seed 0 is pending: the reply is held.
    let entry = RankedEntry { id: InstanceId(3), endpoint: at("aos3"), workload: Workload::new(0, 10) };
    let list = RankedList { stale: false, entries: vec![entry] };
    let reply = HandshakeReply { request_id: second.request_id(), outcome: HandshakeOutcome::Ranked(list) };
    c.handle_event(Event::HandshakeReply { attempt: second, reply }, t1).expect("a reply");
    assert!(drain(&mut c).is_empty(), "held while seed 0 is pending");
    // The driver's next timeout comes after the deadline.
    c.handle_timeout(t0 + Duration::from_millis(200));
    let actions = drain(&mut c);
    assert!(
        !actions.iter().any(|a| matches!(a, Action::SendSessionRequest { .. })),
        "a session request after the deadline: {actions:?}"
    );
    match &actions[..] {
        [Action::Close { .. }, Action::Close { .. }, Action::Failed(error)] => {
            assert_eq!(error.reason, FailReason::DeadlineExceeded);
            let outcomes: Vec<_> = error.attempts.iter().map(|r| r.outcome.clone()).collect();
            assert_eq!(outcomes, [AttemptOutcome::Cancelled, AttemptOutcome::Superseded]);
        }
        other => panic!("{other:?}"),
    }
}
