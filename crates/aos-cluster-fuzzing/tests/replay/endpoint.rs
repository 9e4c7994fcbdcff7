//! Replays the committed `endpoint` fuzz corpus through the fuzz body on stable.

use aos_cluster::endpoint::Endpoint;

#[test]
fn corpus_replays_without_a_broken_invariant() {
    let corpus = crate::corpus("endpoint");
    let mut parsed = 0;
    for (path, data) in &corpus {
        let outcome = std::panic::catch_unwind(|| aos_cluster_fuzzing::endpoint(data));
        assert!(outcome.is_ok(), "{} broke an endpoint invariant", path.display());
        parsed += usize::from(std::str::from_utf8(data).is_ok_and(|t| t.parse::<Endpoint>().is_ok()));
    }
    // The corpus must exercise both sides of the parser, not only rejections.
    assert!(parsed >= 5, "only {parsed} of {} corpus files are valid endpoints", corpus.len());
    assert!(corpus.len() - parsed >= 5, "too few invalid endpoints in the corpus");
}
