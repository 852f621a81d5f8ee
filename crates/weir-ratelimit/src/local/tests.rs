use std::collections::HashMap;

use super::*;

const SECOND: u64 = 1_000_000_000;

fn limiter(count: u64, burst: u32, max_keys: usize) -> LocalLimiter {
    LocalLimiter::new(Quota::new(count, SECOND, burst), max_keys, LocalMetrics::default())
}

#[test]
fn keys_have_their_own_buckets() {
    let limiter = limiter(1, 2, 1000);
    let (a, b) = (limiter.hash_key("a"), limiter.hash_key("b"));
    let allowed = |key| (0..5).filter(|_| limiter.check(key, SECOND).allowed).count();
    assert_eq!(allowed(a), 2);
    assert_eq!(allowed(b), 2);
    assert_eq!(limiter.len(), 2);
}

#[test]
fn a_full_shard_forgets_only_keys_whose_bucket_is_whole() {
    let limiter = limiter(1, 1, SHARDS);
    let metrics = limiter.metrics.clone();
    // Fill every slot with busy keys (one request each: their buckets refill in 1 s).
    let mut key = 0u64;
    while limiter.len() < limiter.max_keys() {
        limiter.check(limiter.hash_key(key), 10 * SECOND);
        key += 1;
    }
    assert_eq!(metrics.evictions.get(), 0);
    // A second later every bucket is whole: new keys take the slots of old ones.
    for fresh in key..key + 1000 {
        assert!(limiter.check(limiter.hash_key(fresh), 11 * SECOND).allowed || metrics.overflowed.get() > 0);
    }
    assert!(metrics.evictions.get() > 0);
    assert!(limiter.len() <= limiter.max_keys());
    assert_eq!(metrics.keys.get() as usize, limiter.len());
}

/// The room the shards' tables have: it never changes if they never grow.
fn table_capacity(limiter: &LocalLimiter) -> usize {
    (0..SHARDS).map(|i| limiter.lock(i).tats.capacity()).sum()
}

/// Counts, per key, the requests the limiter allowed.
struct Tally {
    allowed: HashMap<u64, u32>,
}

impl Tally {
    fn send(&mut self, limiter: &LocalLimiter, key: u64, now: u64) {
        if limiter.check(limiter.hash_key(key), now).allowed {
            *self.allowed.entry(key).or_default() += 1;
        }
    }
}

/// A million distinct keys against a budget of ten thousand: the limiter never remembers more than
/// its bound, and with a rate so slow that no bucket refills during the test, no key (evicted,
/// overflowed or remembered) is allowed more than its burst in total.
#[test]
fn a_million_keys_stay_within_the_bound_and_never_exceed_their_burst() {
    let burst = 3;
    let limiter = LocalLimiter::new(Quota::new(1, 3600 * SECOND, burst), 10_000, LocalMetrics::default());
    let metrics = limiter.metrics.clone();
    let tables = table_capacity(&limiter);
    let mut tally = Tally { allowed: HashMap::new() };
    let start = 1000 * SECOND;
    for key in 0..1_000_000u64 {
        let now = start + key * 1000;
        for _ in 0..2 {
            tally.send(&limiter, key, now);
        }
        // Every tenth key, come back to an older key: it must not find a fresh budget.
        if key % 10 == 0 {
            let old = key / 2;
            for _ in 0..burst + 2 {
                tally.send(&limiter, old, now);
            }
        }
        assert!(limiter.len() <= limiter.max_keys());
    }
    assert!(metrics.keys.get() as usize <= limiter.max_keys());
    assert_eq!(table_capacity(&limiter), tables, "a table grew");
    assert!(metrics.overflowed.get() > 0, "the bound never bit");
    let worst = tally.allowed.values().max().copied().unwrap_or(0);
    assert!(worst <= burst, "a key was allowed {worst} requests with a burst of {burst}");
}

/// The same flood with a fast rate: buckets refill, the limiter forgets whole ones to make room, and
/// a key is still never allowed more than its burst plus what refilled over the test's span.
#[test]
fn evicted_keys_come_back_with_no_more_than_their_burst() {
    let burst = 2;
    let limiter = LocalLimiter::new(Quota::new(1, SECOND, burst), 4_096, LocalMetrics::default());
    let metrics = limiter.metrics.clone();
    let mut tally = Tally { allowed: HashMap::new() };
    let start = 1000 * SECOND;
    let step = 100_000; // 100 µs between keys: 10,000 keys a second
    let keys = 1_000_000u64;
    for key in 0..keys {
        let now = start + key * step;
        tally.send(&limiter, key, now);
        // Hammer a key from 5,000 keys ago: it may have been evicted, but only once whole.
        let old = key.saturating_sub(5_000);
        for _ in 0..3 {
            tally.send(&limiter, old, now);
        }
        assert!(limiter.len() <= limiter.max_keys());
    }
    assert!(metrics.evictions.get() > 0, "nothing was evicted");
    // Each key is active over at most 0.5 s (5,000 keys at 100 µs), so it may refill one request.
    let worst = tally.allowed.values().max().copied().unwrap_or(0);
    assert!(worst <= burst + 1, "a key was allowed {worst} requests");
}
