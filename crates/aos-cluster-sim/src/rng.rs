//! The simulator's seeded generator: the core's SplitMix64
//! ([`aos_cluster::rng`]), whose stream the core pins, so the simulator's own
//! draws (arrivals, latencies, faults, the baselines' list transforms) replay
//! across releases. The machines draw from their own generators, seeded by
//! the simulator at construction. Not for cryptography.

pub use aos_cluster::rng::Rng;
