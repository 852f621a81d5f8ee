//! Leases for global rules: one round trip to Redis takes several requests' worth of a key's
//! bucket, and this instance serves the rest from memory. Requests are charged to the shared bucket
//! before they are served, so the instances together never admit more than the rule allows over
//! time; what a lease shifts is when: a request may be served up to [`LEASE_TTL`] after it was
//! charged. A lease not used up by then is dropped, its requests lost (charged, never served).
//!
//! Memory is bounded like the local limiter's: keys are spread over mutex'd shards, each holding at
//! most its share of the rule's `max_keys`. A full shard first forgets expired leases; when none
//! has expired, the new lease is not kept (its surplus is lost, the request that fetched it is still
//! served).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Mutex;

use crate::gcra::Decision;
use crate::local::PassThrough;
use crate::redis::Granted;

/// How long a lease's requests may be served after Redis granted them.
pub const LEASE_TTL: u64 = 1_000_000_000;

/// Shards per table, as many as the local limiter has.
const SHARDS: usize = 64;

/// One rule's leases, by key hash.
pub struct LeaseTable {
    size: u32,
    capacity: usize,
    shards: Box<[Mutex<Shard>]>,
}

type Shard = HashMap<u64, Lease, BuildHasherDefault<PassThrough>>;

/// What is left of one key's lease.
#[derive(Debug, Clone, Copy)]
struct Lease {
    left: u32,
    /// Redis's decision when the lease was granted; `remaining` excludes what the lease holds.
    decision: Decision,
    /// Monotonic nanoseconds after which the lease is void.
    expires: u64,
}

impl LeaseTable {
    /// A table for leases of `size` requests (at least 1), remembering at most `max_keys` keys
    /// (rounded up to a multiple of the shard count).
    pub fn new(size: u32, max_keys: usize) -> LeaseTable {
        let capacity = max_keys.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect();
        LeaseTable { size: size.max(1), capacity, shards }
    }

    /// Requests' worth one round trip asks Redis for.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Keys holding a lease right now (expired ones not yet forgotten included).
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|i| self.lock(i).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Serves one request for `key` (a hash) from its lease, if it holds a live one. `now` is
    /// monotonic nanoseconds ([`crate::monotonic_nanos`]).
    pub fn take(&self, key: u64, now: u64) -> Option<Decision> {
        let mut shard = self.lock(shard_of(key));
        let lease = shard.get_mut(&key)?;
        if lease.expires <= now || lease.left == 0 {
            shard.remove(&key);
            return None;
        }
        lease.left -= 1;
        let decision = Decision { remaining: lease.decision.remaining.saturating_add(lease.left), ..lease.decision };
        if lease.left == 0 {
            shard.remove(&key);
        }
        Some(decision)
    }

    /// Keeps what Redis granted for `key` beyond the one request that asked; returns that request's
    /// decision, its `remaining` counting the requests kept.
    pub fn keep(&self, key: u64, granted: Granted, now: u64) -> Decision {
        let extra = granted.count.saturating_sub(1);
        if extra == 0 || !granted.decision.allowed {
            return granted.decision;
        }
        let mut shard = self.lock(shard_of(key));
        if shard.len() >= self.capacity && !shard.contains_key(&key) {
            shard.retain(|_, lease| lease.expires > now);
            if shard.len() >= self.capacity {
                return granted.decision;
            }
        }
        let lease = shard.entry(key).or_insert(Lease { left: 0, decision: granted.decision, expires: 0 });
        // A lease fetched alongside this one (requests for the key that missed together) and still
        // live keeps its requests: they were charged too.
        let carried = if lease.expires > now { lease.left } else { 0 };
        *lease = Lease { left: carried.saturating_add(extra), decision: granted.decision, expires: now + LEASE_TTL };
        Decision { remaining: granted.decision.remaining.saturating_add(lease.left), ..granted.decision }
    }

    fn lock(&self, index: usize) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while holding a shard cannot leave a lease half-written: the map stays usable.
        self.shards[index].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The shard for a key hash: its top bits, which the hash spreads as well as the low ones.
fn shard_of(key: u64) -> usize {
    (key >> 58) as usize % SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(count: u32, remaining: u32) -> Granted {
        let decision = Decision { allowed: count > 0, remaining, retry_after: 0, reset_after: 5 };
        Granted { decision, count }
    }

    #[test]
    fn a_lease_serves_what_redis_granted_beyond_the_first_request_then_runs_out() {
        let table = LeaseTable::new(4, 100);
        assert_eq!(table.take(7, 0), None);
        let first = table.keep(7, granted(4, 10), 0);
        assert!(first.allowed);
        assert_eq!(first.remaining, 13, "Redis's remaining plus the three kept");
        let served: Vec<u32> = (0..3).map(|_| table.take(7, 1).expect("leased").remaining).collect();
        assert_eq!(served, [12, 11, 10]);
        assert_eq!(table.take(7, 1), None, "the lease is used up");
        assert!(table.is_empty());
    }

    #[test]
    fn a_lease_expires_and_a_refusal_or_a_single_grant_keeps_nothing() {
        let table = LeaseTable::new(4, 100);
        table.keep(1, granted(4, 0), 0);
        assert!(table.take(1, LEASE_TTL - 1).is_some());
        assert_eq!(table.take(1, LEASE_TTL), None, "expired");
        let refused = table.keep(2, granted(0, 0), 0);
        assert!(!refused.allowed);
        table.keep(3, granted(1, 9), 0);
        assert!(table.is_empty());
    }

    #[test]
    fn leases_fetched_together_add_up() {
        let table = LeaseTable::new(3, 100);
        table.keep(5, granted(3, 4), 0);
        table.keep(5, granted(3, 1), 10);
        let served = std::iter::from_fn(|| table.take(5, 20)).count();
        assert_eq!(served, 4, "two from each lease");
    }

    #[test]
    fn a_full_shard_forgets_expired_leases_and_otherwise_keeps_no_new_one() {
        // One key per shard: keys that differ in their top bits land in different shards.
        let table = LeaseTable::new(2, 1);
        let key = |n: u64| n << 58;
        table.keep(key(0), granted(2, 0), 0);
        table.keep(key(0) | 1, granted(2, 0), 0);
        assert_eq!(table.len(), 1, "the shard is full");
        assert!(table.take(key(0) | 1, 1).is_none(), "no room: its surplus was not kept");
        table.keep(key(0) | 2, granted(2, 0), LEASE_TTL);
        assert!(table.take(key(0) | 2, LEASE_TTL + 1).is_some(), "the expired lease made room");
        assert!(table.len() <= SHARDS);
    }
}
