//! A process start's name for its registry row.

use std::hash::{BuildHasher, Hasher};

/// One process start's name for its registry row: random, so a second
/// process with the same id is told apart from this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Incarnation(pub u64);

impl Incarnation {
    /// A fresh random incarnation, for one process start (or one server
    /// start within a process).
    pub fn random() -> Incarnation {
        // The standard library seeds every `RandomState` from the operating
        // system's randomness (and varies it per instance), which is all an
        // incarnation needs: no two starts may pick the same one by accident.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        hasher.write_u32(std::process::id());
        hasher.write_u64(STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        Incarnation(hasher.finish())
    }

    /// The value as stored in a database's signed 64-bit column (same bits).
    pub fn to_i64(self) -> i64 {
        i64::from_ne_bytes(self.0.to_ne_bytes())
    }

    /// The incarnation stored as `stored` by [`to_i64`](Self::to_i64).
    pub fn from_i64(stored: i64) -> Incarnation {
        Incarnation(u64::from_ne_bytes(stored.to_ne_bytes()))
    }
}

impl std::fmt::Display for Incarnation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}
