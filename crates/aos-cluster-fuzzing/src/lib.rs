//! Fuzz bodies and reference models of the `aos-cluster` machines: the code
//! behind each target of the repository's `fuzz/` crate, in a crate of its
//! own so ordinary (stable) builds type-check it and `cargo test` replays the
//! committed corpus through it (`tests/replay/`). Each body takes raw bytes
//! and panics only when an invariant is broken (that is the bug a fuzzer
//! reports).
//!
//! Each body lives in its own module and is re-exported under the same name
//! (modules and functions live in different namespaces), so a target calls
//! `aos_cluster_fuzzing::NAME(data)`. The few internals of the core the bodies
//! check are reached through its `test-support` feature.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// Endpoint text parsing.
pub mod endpoint;
pub use self::endpoint::endpoint;

/// Frame decoding from arbitrary splits under arbitrary limits.
pub mod decode;
pub use self::decode::decode;

/// Encoding arbitrary messages under arbitrary limits, against the decoder.
pub mod encode;
pub use self::encode::encode;

/// The Connector under arbitrary events and time advances.
pub mod client_ops;
pub use self::client_ops::client_ops;

/// The Instance under arbitrary events and time advances.
pub mod instance_ops;
pub use self::instance_ops::instance_ops;

/// The Instance's bounded fan-out in clusters of 20 to 80 peers, against
/// invariants rather than a reference model.
pub mod bounded_ops;
pub use self::bounded_ops::bounded_ops;

/// Herd control's one-walk read of every candidate against a look-up each.
pub mod herd_read;
pub use self::herd_read::herd_read;

use arbitrary::{Arbitrary, Unstructured};

use aos_cluster::instance::{Action, ConnectionId};
use aos_cluster::wire::SessionId;

/// The stateful bodies' loop: decodes ops from `u` one at a time and hands
/// each to `step`, until the bytes run out, an op does not decode, or `max`
/// ops ran.
fn each_op<'a, Op: Arbitrary<'a>>(u: &mut Unstructured<'a>, max: usize, mut step: impl FnMut(&Op)) {
    for _ in 0..max {
        match Op::arbitrary(u) {
            Ok(op) => step(&op),
            Err(_) => break,
        }
        if u.is_empty() {
            break;
        }
    }
}

/// An instance announces a session it accepted with `SessionOpened` as the
/// very next action. When one is `due`, checks that `action` is it and
/// returns `true` (the caller has nothing more to check in it).
fn session_opened_follows(due: &mut Option<(ConnectionId, SessionId)>, action: &Action) -> bool {
    let Some((conn, session_id)) = due.take() else { return false };
    assert_eq!(*action, Action::SessionOpened { conn, session_id }, "SessionOpened after acceptance");
    true
}
