//! Replays the committed `client_ops` fuzz corpus through the fuzz body, and
//! random op sequences through it as a property (no event sequence panics).
#![cfg(feature = "fuzzing")]

mod common;

use proptest::prelude::*;

#[test]
fn corpus_replays_cleanly() {
    let corpus = common::corpus("client_ops");
    assert!(corpus.len() >= 10, "the corpus is too small to mean much");
    for (path, data) in corpus {
        let outcome = std::panic::catch_unwind(|| aos_cluster::fuzzing::client_ops(&data, common::base()));
        assert!(outcome.is_ok(), "{} broke an invariant", path.display());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_op_sequences_keep_the_invariants(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        aos_cluster::fuzzing::client_ops(&data, common::base());
    }
}
