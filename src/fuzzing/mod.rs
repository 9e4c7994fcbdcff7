//! Fuzz bodies: the code behind each `fuzz/` target, kept in the library so
//! ordinary builds type-check it and `cargo test` replays the committed corpus
//! through it on stable. Each body takes raw bytes and panics only when an
//! invariant is broken (that is the bug a fuzzer reports).

pub mod instance_ops;

mod client_ops;
mod decode;
pub use client_ops::client_ops;
pub use decode::decode;
