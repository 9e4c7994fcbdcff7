//! Driver code shared by the examples and the integration tests: everything that
//! touches a runtime, a socket or a database, which the library itself never does:
//! the tokio instance server, the tokio client, framed I/O over the wire codec,
//! a local cluster, and the registry backends.
//!
//! Examples include it as `#[path = "support/mod.rs"] mod support;`, integration
//! tests as `#[path = "../examples/support/mod.rs"] mod support;`.
// Each example or test uses only part of the support code, so the rest would
// otherwise be reported as dead in that crate.
#![allow(dead_code)]

pub mod client;
pub mod cluster;
pub mod connection;
pub mod frames;
pub mod outbound;
pub mod registry;
pub mod server;

/// The driver's clock. The crate never reads a clock; the driver reads tokio's
/// (so paused-time tests would see the same time the timers use) and passes
/// it in as `now`.
pub fn now() -> std::time::Instant {
    // The one place the drivers read the clock; the ban in clippy.toml is for `src/`.
    #[allow(clippy::disallowed_methods)]
    tokio::time::Instant::now().into_std()
}

/// Logs through `tracing` to stderr, filtered by `RUST_LOG` (else `default`,
/// such as `"info"`).
pub fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
