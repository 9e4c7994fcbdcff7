//! A fast hasher for the world's lookup maps.
//!
//! The maps it serves are looked up on every message and never iterated, so
//! their order cannot leak; SipHash's flood resistance buys nothing against
//! the simulator's own keys, and costs a large share of a step.

use std::hash::{BuildHasherDefault, Hasher};

/// The maps' hasher.
pub(super) type FastHash = BuildHasherDefault<MultiplyHasher>;

/// A multiply-rotate hasher (the Fx scheme): a few cycles per word.
#[derive(Default)]
pub(super) struct MultiplyHasher(u64);

impl MultiplyHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for MultiplyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        for &byte in chunks.remainder() {
            self.mix(u64::from(byte));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.mix(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
}
