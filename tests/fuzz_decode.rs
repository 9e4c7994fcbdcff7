//! Replays the committed `decode` fuzz corpus through the fuzz body on stable.
#![cfg(feature = "fuzzing")]

mod common;

#[test]
fn decode_corpus_replays_cleanly() {
    let corpus = common::corpus("decode");
    for (path, data) in &corpus {
        let outcome = std::panic::catch_unwind(|| aos_cluster::fuzzing::decode(data));
        assert!(outcome.is_ok(), "corpus file {} broke an invariant", path.display());
    }
}

#[test]
fn the_corpus_holds_decodable_messages() {
    // A corpus of only rejected bytes would replay without exercising the
    // re-encoding check; make sure valid frames are in it.
    use aos_cluster::wire::Decoder;
    let mut decoded = 0;
    for (_, data) in common::corpus("decode") {
        let Some((&first, rest)) = data.split_first() else { continue };
        let stream = &rest[usize::from(first % 8).min(rest.len())..];
        let mut decoder = Decoder::new();
        decoder.feed(stream);
        while let Ok(Some(_)) = decoder.next() {
            decoded += 1;
        }
    }
    assert!(decoded >= 10, "only {decoded} messages decode from the corpus");
}
