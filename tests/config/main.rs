//! Configuration: SPEC.md defaults, TOML and JSON with human durations, and
//! `validate()` reporting every problem at once. One test binary, a module
//! per concern.

#![cfg(feature = "serde")]

mod attempt_delay;
mod durations;
mod fan_out;
mod files;
mod validation;

use std::time::Duration;

use aos_cluster::endpoint::Endpoint;

fn ep(text: &str) -> Endpoint {
    text.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
