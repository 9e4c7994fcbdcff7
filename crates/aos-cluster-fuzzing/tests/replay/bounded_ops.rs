//! Replays the committed `bounded_ops` fuzz corpus through the fuzz body on
//! stable, and runs the same world from proptest's bytes so its invariants
//! are checked even without a corpus.

use proptest::prelude::*;

#[test]
fn bounded_ops_corpus_replays_clean() {
    let corpus = crate::corpus("bounded_ops");
    for (path, data) in &corpus {
        let outcome =
            std::panic::catch_unwind(|| aos_cluster_fuzzing::bounded_ops::bounded_ops(data, crate::base()));
        assert!(outcome.is_ok(), "corpus file {} broke an invariant", path.display());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random bytes decode into a setup, rows and ops like the fuzzer's.
    #[test]
    fn bounded_ops_holds_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..4096)) {
        aos_cluster_fuzzing::bounded_ops::bounded_ops(&data, crate::base());
    }
}
