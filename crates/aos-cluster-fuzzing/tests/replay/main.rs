//! Replays the committed `fuzz/corpus/` through every fuzz body on stable,
//! so every input the fuzzer found interesting stays checked, and runs the
//! bodies on proptest's random bytes so their invariants are checked even
//! without a corpus. One module per fuzz body, one test binary; proptest
//! keeps each module's failure seeds in `tests/proptest-regressions/`.

mod bounded_ops;
mod client_ops;
mod decode;
mod encode;
mod endpoint;
mod herd_read;
mod instance_ops;

use std::path::PathBuf;

/// Every file of `fuzz/corpus/<target>/`, sorted by name so replays are
/// deterministic. Panics if the corpus is missing or empty: a replay that
/// replays nothing must not pass.
pub fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files.into_iter().map(|p| (p.clone(), std::fs::read(&p).expect("corpus file"))).collect()
}

/// The tests' one clock read: the fuzz bodies only see offsets from it.
#[allow(clippy::disallowed_methods)]
pub fn base() -> std::time::Instant {
    std::time::Instant::now()
}
