#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| aos_cluster_fuzzing::decode(data));
