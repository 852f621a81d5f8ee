//! A small shared random source for balancing decisions: a splitmix64 sequence advanced by one
//! atomic add, so picks from many workers never wait on each other. Seeded explicitly in tests so
//! distributions can be checked exactly.

use std::sync::atomic::{AtomicU64, Ordering};

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// Random numbers for balancers. Not for anything secret.
#[derive(Debug)]
pub struct BalanceRng {
    state: AtomicU64,
}

impl BalanceRng {
    pub fn seeded(seed: u64) -> Self {
        BalanceRng { state: AtomicU64::new(seed) }
    }

    /// Seeded from the clock and the address of a local, different for every cluster and process.
    pub fn from_entropy() -> Self {
        let local = 0u8;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        BalanceRng::seeded(mix(nanos as u64 ^ (&local as *const u8 as u64)))
    }

    pub fn next_u64(&self) -> u64 {
        mix(self.state.fetch_add(GOLDEN_GAMMA, Ordering::Relaxed).wrapping_add(GOLDEN_GAMMA))
    }

    /// A number in `0..n`, for `n > 0` (multiply-shift: no division, negligible bias for small `n`).
    pub fn below(&self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// The splitmix64 finaliser: spreads the bits of `x` over the whole word.
pub fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A stable 64-bit hash of bytes (FNV-1a, then mixed): the same on every node and every version, so
/// consistent hashing sends a key to the same endpoint from every gateway.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let rng = BalanceRng::seeded(7);
        let mut seen = [0usize; 5];
        for _ in 0..5000 {
            seen[rng.below(5)] += 1;
        }
        assert!(seen.iter().all(|count| (800..1200).contains(count)), "{seen:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let (a, b) = (BalanceRng::seeded(42), BalanceRng::seeded(42));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
    }

    #[test]
    fn stable_hash_is_stable() {
        assert_eq!(stable_hash(b"user-1"), stable_hash(b"user-1"));
        assert_ne!(stable_hash(b"user-1"), stable_hash(b"user-2"));
    }
}
