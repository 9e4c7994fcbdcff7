//! Helpers shared by the behaviour tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// Every file of `fuzz/corpus/<target>/`, sorted by name so replays are
/// deterministic. Panics if the corpus is missing or empty: a replay that
/// replays nothing must not pass.
pub fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files.into_iter().map(|p| (p.clone(), std::fs::read(&p).expect("corpus file"))).collect()
}

pub mod client;
pub mod instance;
pub mod pair;

/// The tests' one clock read: machines and fuzz bodies only see offsets from it.
#[allow(clippy::disallowed_methods)]
pub fn base() -> std::time::Instant {
    std::time::Instant::now()
}
