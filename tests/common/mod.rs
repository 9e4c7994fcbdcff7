//! Helpers shared by the behaviour tests.
#![allow(dead_code)]

pub mod client;
pub mod instance;
pub mod pair;

/// The tests' one clock read: machines and fuzz bodies only see offsets from it.
#[allow(clippy::disallowed_methods)]
pub fn base() -> std::time::Instant {
    std::time::Instant::now()
}
