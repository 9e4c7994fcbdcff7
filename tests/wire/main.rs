//! The wire codec: round trips, split invariance, bounds and every typed error.
//! One test binary; a module per concern, with the strategies and helpers
//! they share. proptest keeps failure seeds in `tests/proptest-regressions/`.

mod codec_properties;
mod credential;
mod decode_errors;
mod duplicates;
mod encode_errors;
mod layout;
mod list_fit;
mod strategies;
mod support;
