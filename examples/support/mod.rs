//! Driver code shared by the examples and the integration tests: everything that
//! touches a runtime, a socket or a database, which the library itself never does.
//!
//! Examples include it as `#[path = "support/mod.rs"] mod support;`, integration
//! tests as `#[path = "../examples/support/mod.rs"] mod support;`.
// Each example or test uses only part of the support code, so the rest would
// otherwise be reported as dead in that crate.
#![allow(dead_code)]

pub mod registry;
