//! Fuzz body `herd_read`: herd control's reservations, releases and reports
//! drawn from bytes, then every candidate's live reservations read in one
//! walk (`Herd::live_each`, what a round does) and one member at a time
//! (`Herd::live`): the counts, the expiries counted and the state left
//! behind must be the same.

use std::time::Instant;

/// Runs one input; `base` is the epoch every drawn time is an offset from.
pub fn herd_read(data: &[u8], base: Instant) {
    aos_cluster::instance::live_each_matches_live(data, base);
}
