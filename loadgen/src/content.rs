//! Deterministic upload content: bytes computed from a seed and their offset, so an upload never
//! exists in memory or on disk, and a downloaded range can be checked by recomputing just that
//! slice.
//!
//! Content is cut into 64 KiB blocks. Block `b` of seed `s` is a fixed table of PRNG bytes
//! (`TABLE`, SplitMix64 output, computed at compile time) XORed with an 8-byte key
//! `mix(s ^ b·φ)` repeated, where `mix` is SplitMix64's finaliser. So:
//! - any slice is computed directly, in any order, with no state carried between pieces;
//! - every 64 KiB block differs between seeds and between positions of one upload, so content
//!   served from the wrong entry or the wrong offset (a swapped chunk) does not verify;
//! - filling is a table copy and an XOR, at memory speed. A per-word hash (one SplitMix64
//!   finaliser per 8 bytes) ran at ~3 GB/s here, slower than SHA-256 (~1.8 GB/s) plus the
//!   socket together, and made content generation a third of loadgen's CPU time.

/// Bytes per content block; also the size of `TABLE` (64 KiB, in the binary's read-only data).
pub const BLOCK: usize = 64 * 1024;

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

    /// The key XORed over block `block`, as little-endian bytes.
    fn key(self, block: u64) -> u64 {
        mix(self.seed ^ block.wrapping_mul(GOLDEN))
    }

    /// Writes content bytes `offset .. offset + out.len()` into `out`.
    pub fn fill(self, offset: u64, out: &mut [u8]) {
        let mut pos = offset;
        let mut rest = out;
        while !rest.is_empty() {
            let in_block = (pos % BLOCK as u64) as usize;
            let take = rest.len().min(BLOCK - in_block);
            let (now, later) = rest.split_at_mut(take);
            xor_table(now, in_block, self.key(pos / BLOCK as u64));
            pos += take as u64;
            rest = later;
        }
    }
}

/// `out[i] = TABLE[start + i] ^ key byte (start + i) % 8`, eight bytes at a time.
fn xor_table(out: &mut [u8], start: usize, key: u64) {
    let table = &TABLE[start..start + out.len()];
    // `start % 8` is also the output's phase in the key: rotate the key to line up with `out`.
    let key = key.rotate_right(8 * (start % 8) as u32);
    let mut outs = out.chunks_exact_mut(8);
    let mut ins = table.chunks_exact(8);
    for (o, t) in (&mut outs).zip(&mut ins) {
        let mut word = [0; 8];
        word.copy_from_slice(t);
        o.copy_from_slice(&(u64::from_le_bytes(word) ^ key).to_le_bytes());
    }
    let key = key.to_le_bytes();
    for ((o, t), k) in outs
        .into_remainder()
        .iter_mut()
        .zip(ins.remainder())
        .zip(key)
    {
        *o = t ^ k;
    }
}

/// 64 KiB of SplitMix64 output, the same in every build.
static TABLE: [u8; BLOCK] = table();

const fn table() -> [u8; BLOCK] {
    let mut table = [0; BLOCK];
    let mut state: u64 = 0x005E_ED0F_10AD_6E11;
    let mut i = 0;
    while i < BLOCK {
        state = state.wrapping_add(GOLDEN);
        let word = mix(state).to_le_bytes();
        let mut j = 0;
        while j < 8 {
            table[i + j] = word[j];
            j += 1;
        }
        i += 8;
    }
    table
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
    pub const CHURN: u64 = 3;
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
        let all = whole(p, 300_000);
        for (start, len) in [
            (0, 1),
            (1, 7),
            (3, 8),
            (5, 100),
            (8, 16),
            (999, 1),
            (13, 0),
            (65_530, 20),
            (65_536, 8),
            (3, 200_000),
        ] {
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

#[cfg(test)]
mod layout_tests {
    use super::*;

    #[test]
    fn blocks_differ_by_seed_and_position() {
        let mut a = vec![0; 2 * BLOCK];
        let mut b = vec![0; 2 * BLOCK];
        Pattern::new(1).fill(0, &mut a);
        Pattern::new(2).fill(0, &mut b);
        let (a0, a1) = a.split_at(BLOCK);
        assert_ne!(a0, a1, "two blocks of one upload");
        let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert!(differing > 2 * BLOCK * 9 / 10, "two seeds: {differing}");
    }
}
