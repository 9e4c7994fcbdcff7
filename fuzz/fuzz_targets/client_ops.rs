#![no_main]
// The target owns the clock (the library never reads one); each input's
// times are offsets from this instant.
#[allow(clippy::disallowed_methods)]
fn base() -> std::time::Instant {
    std::time::Instant::now()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| aos_cluster_fuzzing::client_ops(data, base()));
