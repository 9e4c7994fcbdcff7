//! Replays the committed `instance_ops` fuzz corpus through the fuzz body on
//! stable, so every input the fuzzer found interesting stays checked.

#[test]
fn instance_ops_corpus_replays_clean() {
    let corpus = crate::corpus("instance_ops");
    for (path, data) in &corpus {
        let outcome =
            std::panic::catch_unwind(|| aos_cluster_fuzzing::instance_ops::instance_ops(data, crate::base()));
        assert!(outcome.is_ok(), "corpus file {} broke an invariant", path.display());
    }
}
