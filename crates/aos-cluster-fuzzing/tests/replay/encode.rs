//! Replays the committed `encode` fuzz corpus through the fuzz body on stable.

use aos_cluster::wire::{encode_with_limits, EncodeError, HandshakeOutcome, Message};
use aos_cluster_fuzzing::encode::EncodeCase;

#[test]
fn encode_corpus_replays_cleanly() {
    let corpus = crate::corpus("encode");
    for (path, data) in &corpus {
        let outcome = std::panic::catch_unwind(|| aos_cluster_fuzzing::encode(data));
        assert!(outcome.is_ok(), "corpus file {} broke an invariant", path.display());
    }
}

#[test]
fn the_corpus_reaches_every_outcome_of_the_encoder() {
    // The replay is only worth something if the corpus holds messages that
    // encode and messages refused for each reason.
    let mut encoded = 0;
    let mut ranked = 0;
    let mut refused: Vec<&'static str> = Vec::new();
    for (_, data) in crate::corpus("encode") {
        let Ok(case) = EncodeCase::parse(&data) else { continue };
        if let Message::HandshakeReply(reply) = &case.message {
            ranked +=
                usize::from(matches!(&reply.outcome, HandshakeOutcome::Ranked(l) if l.entries.len() > 1));
        }
        let reason = match encode_with_limits(&case.message, &case.limits, &mut Vec::new()) {
            Ok(()) => {
                encoded += 1;
                continue;
            }
            Err(EncodeError::FrameTooLarge { .. }) => "FrameTooLarge",
            Err(EncodeError::ListTooLong { .. }) => "ListTooLong",
            Err(EncodeError::ClusterNameTooLong { .. }) => "ClusterNameTooLong",
            Err(EncodeError::DuplicateEntry { .. }) => "DuplicateEntry",
            Err(EncodeError::ConnectedAboveMax { .. }) => "ConnectedAboveMax",
            Err(other) => panic!("an error this test does not know: {other}"),
        };
        if !refused.contains(&reason) {
            refused.push(reason);
        }
    }
    assert!(encoded >= 10, "only {encoded} corpus messages encode");
    assert!(ranked >= 5, "only {ranked} corpus messages are ranked lists of two or more");
    refused.sort_unstable();
    assert_eq!(
        refused,
        ["ClusterNameTooLong", "ConnectedAboveMax", "DuplicateEntry", "FrameTooLarge", "ListTooLong"],
        "the corpus misses some refusals"
    );
}
