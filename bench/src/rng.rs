//! Deterministic xorshift RNG so every allocator sees the exact same request stream.

/// xorshift64* generator; tiny, fast and good enough to pick sizes and slots.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Creates a generator; the seed is mixed so small seeds (0, 1, 2 per thread) diverge at once.
    pub fn new(seed: u64) -> Self {
        // splitmix64 finaliser: xorshift must never hold 0, and nearby seeds should not correlate.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(z | 1)
    }

    /// Next raw 64-bit value.
    #[inline(always)]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform value in `0..n` (n > 0).
    #[inline(always)]
    pub fn below(&mut self, n: usize) -> usize {
        // Multiply-high instead of `%`: no division in the hot loop and no modulo bias worth caring about.
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Uniform value in `lo..=hi`.
    #[inline(always)]
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `1 / n`.
    #[inline(always)]
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn same_seed_same_stream() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn range_stays_in_bounds() {
        let mut r = Rng::new(1);
        for _ in 0..10_000 {
            let v = r.range(8, 1024);
            assert!((8..=1024).contains(&v));
        }
    }
}
