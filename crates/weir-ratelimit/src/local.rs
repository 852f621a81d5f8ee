//! The local limiter: one GCRA bucket per key, in memory, for one rule. Keys are spread over
//! shards, each a small mutex'd map, so concurrent requests for different keys rarely meet on a
//! lock and no lock is global.
//!
//! Memory is bounded: a shard holds at most its share of `max_keys` and never grows past it. When a
//! new key arrives at a full shard, the shard forgets every key whose bucket is already whole (its
//! TAT is in the past): such a key loses nothing by being forgotten, since it would start from a
//! whole burst anyway. When no key can be forgotten, the new key is decided on the shard's one
//! shared *overflow* bucket, which has the rule's own rate and burst. A key that later finds room
//! starts from the overflow bucket's TAT, not from a whole burst, so whatever it was allowed while
//! untracked is still charged to it. The result: no key ever gets more than its rate and burst;
//! under eviction pressure new keys may get less (they share one budget per shard).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::Mutex;

use crate::gcra::{self, Decision, Quota};
use crate::metrics::LocalMetrics;

/// Shards per limiter: enough that two workers rarely contend, few enough to stay small.
const SHARDS: usize = 64;

/// A GCRA limiter over keys hashed in process, with a bound on how many it remembers.
pub struct LocalLimiter {
    quota: Quota,
    /// Keys are hashed with a per-process random seed, so clients cannot aim at one shard or slot.
    seed: RandomState,
    shards: Box<[Mutex<Shard>]>,
    metrics: LocalMetrics,
}

/// One shard: key hashes to TATs, the overflow bucket, and when a sweep could next free room.
struct Shard {
    tats: HashMap<u64, u64, BuildHasherDefault<PassThrough>>,
    capacity: usize,
    overflow_tat: u64,
    /// No key's bucket is whole before this instant, so sweeping earlier frees nothing.
    next_sweep: u64,
}

impl LocalLimiter {
    /// A limiter remembering at most `max_keys` keys (rounded up to a multiple of the shard count).
    pub fn new(quota: Quota, max_keys: usize, metrics: LocalMetrics) -> LocalLimiter {
        let capacity = max_keys.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::new(capacity))).collect();
        metrics.capacity.set((capacity * SHARDS) as i64);
        metrics.memory_bytes.set(table_bytes(capacity).saturating_mul(SHARDS) as i64);
        LocalLimiter { quota, seed: RandomState::new(), shards, metrics }
    }

    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// The most keys this limiter remembers.
    pub fn max_keys(&self) -> usize {
        self.shards.len() * self.lock(0).capacity
    }

    /// Keys remembered right now.
    pub fn len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).tats.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A hasher for one key; feed it the key's parts and pass `finish()` to [`Self::check`].
    pub fn key_hasher(&self) -> impl Hasher {
        self.seed.build_hasher()
    }

    /// Hashes a whole key in one go.
    pub fn hash_key(&self, key: impl Hash) -> u64 {
        self.seed.hash_one(key)
    }

    /// Decides one request for the key with hash `key` at `now` (nanoseconds, monotonic).
    pub fn check(&self, key: u64, now: u64) -> Decision {
        let index = (key >> 58) as usize % self.shards.len();
        let mut shard = self.lock(index);
        if let Some(tat) = shard.tats.get_mut(&key) {
            let (decision, next) = gcra::decide(*tat, now, &self.quota);
            *tat = next;
            return decision;
        }
        if shard.tats.len() >= shard.capacity {
            let freed = shard.sweep(now);
            if freed > 0 {
                self.metrics.evictions.inc_by(freed as u64);
                self.metrics.keys.dec_by(freed as i64);
            }
        }
        let start = shard.overflow_tat;
        let (decision, next) = gcra::decide(start, now, &self.quota);
        if shard.tats.len() < shard.capacity {
            shard.tats.insert(key, next);
            shard.next_sweep = shard.next_sweep.min(next);
            self.metrics.keys.inc();
        } else {
            shard.overflow_tat = next;
            self.metrics.overflowed.inc();
        }
        decision
    }

    fn lock(&self, index: usize) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while holding a shard cannot leave a TAT half-written: the map stays usable.
        self.shards[index].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Shard {
    fn new(capacity: usize) -> Shard {
        Shard {
            tats: HashMap::with_capacity_and_hasher(capacity, Default::default()),
            capacity,
            overflow_tat: 0,
            next_sweep: 0,
        }
    }

    /// Forgets every key whose bucket is whole at `now`; returns how many. Remembers the earliest
    /// TAT left so a full shard of busy keys is not rescanned before one of them can go.
    fn sweep(&mut self, now: u64) -> usize {
        if now < self.next_sweep {
            return 0;
        }
        let before = self.tats.len();
        let mut earliest = u64::MAX;
        self.tats.retain(|_, tat| {
            let keep = !gcra::is_full(*tat, now);
            if keep {
                earliest = earliest.min(*tat);
            }
            keep
        });
        self.next_sweep = earliest;
        before - self.tats.len()
    }
}

/// The bytes a shard's table takes: the map keeps a slot (key hash and TAT) and a control byte per
/// bucket, with buckets a power of two at most 7/8 full.
fn table_bytes(capacity: usize) -> usize {
    let buckets = (capacity.saturating_mul(8) / 7).next_power_of_two();
    buckets * (std::mem::size_of::<(u64, u64)>() + 1)
}

/// Key hashes are already uniformly random (seeded SipHash), but every key in a shard shares its top
/// bits (they chose the shard). One multiplication by an odd constant spreads the rest over the whole
/// word, which the map's slot and tag bits need.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 << 8) | u64::from(*byte);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[cfg(test)]
mod tests;
