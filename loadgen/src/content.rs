//! Deterministic upload content: bytes computed from a seed and their offset, so an upload never
//! exists in memory or on disk, and a downloaded range can be checked by recomputing just that
//! slice.
//!
//! Each 8-byte word at offset `8 * w` is `mix(seed, w)` (SplitMix64's finaliser), little-endian.
//! A word depends only on the seed and its index, so any slice is computed directly, in any
//! order, at several GB/s, with no state to carry between pieces.

/// Content identified by its seed. Byte `i` of the content is the same for every size: a
/// shorter upload is a prefix of a longer one with the same seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern {
    seed: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijection that scatters every input bit.
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Pattern {
    pub const fn new(seed: u64) -> Self {
        Pattern { seed }
    }

    pub const fn seed(self) -> u64 {
        self.seed
    }

    fn word(self, index: u64) -> [u8; 8] {
        mix(self.seed ^ index.wrapping_mul(GOLDEN)).to_le_bytes()
    }

    /// Writes content bytes `offset .. offset + out.len()` into `out`.
    pub fn fill(self, offset: u64, out: &mut [u8]) {
        let mut pos = offset;
        let mut rest = out;
        // A partial first word when `offset` is not word-aligned.
        let head = (pos % 8) as usize;
        if head != 0 && !rest.is_empty() {
            let word = self.word(pos / 8);
            let take = (8 - head).min(rest.len());
            let (first, tail) = rest.split_at_mut(take);
            first.copy_from_slice(&word[head..head + take]);
            pos += take as u64;
            rest = tail;
        }
        let mut index = pos / 8;
        let mut words = rest.chunks_exact_mut(8);
        for chunk in &mut words {
            chunk.copy_from_slice(&self.word(index));
            index += 1;
        }
        let tail = words.into_remainder();
        if !tail.is_empty() {
            let word = self.word(index);
            tail.copy_from_slice(&word[..tail.len()]);
        }
    }
}

/// A small seeded generator (SplitMix64) for choices that must repeat from run to run:
/// content seeds and Range positions.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix {
    state: u64,
}

impl SplitMix {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix { state: seed }
    }

    /// A generator for one (base seed, purpose, user, iteration): distinct inputs give
    /// unrelated streams.
    pub(crate) fn derive(base: u64, purpose: u64, user: usize, iteration: usize) -> Self {
        let mut rng = SplitMix::new(base);
        for part in [purpose, user as u64, iteration as u64] {
            rng.state = mix(rng.next_u64() ^ part);
        }
        rng
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is below 2^-40 for the sizes used here.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// What a derived generator is for, so the content seed and the range choices of one user and
/// iteration are unrelated.
pub(crate) mod purpose {
    pub const CONTENT: u64 = 1;
    pub const RANGES: u64 = 2;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(p: Pattern, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        p.fill(0, &mut v);
        v
    }

    #[test]
    fn any_slice_equals_the_same_bytes_of_the_whole() {
        let p = Pattern::new(42);
        let all = whole(p, 1000);
        for (start, len) in [(0, 1), (1, 7), (3, 8), (5, 100), (8, 16), (999, 1), (13, 0)] {
            let mut slice = vec![0; len];
            p.fill(start as u64, &mut slice);
            assert_eq!(slice, all[start..start + len], "{start}+{len}");
        }
    }

    #[test]
    fn seeds_differ_and_repeat() {
        assert_eq!(whole(Pattern::new(1), 64), whole(Pattern::new(1), 64));
        assert_ne!(whole(Pattern::new(1), 64), whole(Pattern::new(2), 64));
    }

    #[test]
    fn derived_generators_are_distinct_and_repeatable() {
        let a = SplitMix::derive(1, purpose::CONTENT, 0, 0).next_u64();
        assert_eq!(a, SplitMix::derive(1, purpose::CONTENT, 0, 0).next_u64());
        assert_ne!(a, SplitMix::derive(1, purpose::CONTENT, 1, 0).next_u64());
        assert_ne!(a, SplitMix::derive(1, purpose::CONTENT, 0, 1).next_u64());
        assert_ne!(a, SplitMix::derive(1, purpose::RANGES, 0, 0).next_u64());
        assert_ne!(a, SplitMix::derive(2, purpose::CONTENT, 0, 0).next_u64());
    }
}
