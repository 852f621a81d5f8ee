//! Leases for global rules: one round trip to Redis takes several requests' worth of a key's
//! bucket, and this instance serves the rest from memory. Requests are charged to the shared bucket
//! before they are served, so the instances together never admit more than the rule allows over
//! time; what a lease shifts is when: a lease lives [`LEASE_TTL`] from its last fetch (a refill
//! carries what was left over). A lease not used up by then is dropped, its requests lost
//! (charged, never served).
//!
//! One lease at a time is fetched per key, and requests that find the key's lease dry while one is
//! on its way wait for it ([`LeaseTable::fetched`]) rather than asking Redis themselves: a burst on
//! a cold key neither takes many leases at once (starving the other instances) nor turns into a
//! round trip per request. A busy key does not run dry in the first place: the request that leaves
//! a lease at a quarter of its size or less (and is served from it) fetches the next one. When Redis
//! refuses a key, the refusal is kept for as long as it says to wait (`retry_after`): no token can
//! come back sooner, so requests meanwhile are refused from memory too.
//!
//! Memory is bounded like the local limiter's: keys are spread over mutex'd shards, each holding at
//! most its share of the rule's `max_keys`. A full shard first forgets expired leases; when none
//! has expired, the new lease is not kept (its surplus is lost, the request that fetched it is still
//! served).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Mutex;

use tokio::sync::Notify;

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
    /// Per shard: a fetch for one of its keys ended.
    fetched: Box<[Notify]>,
}

type Shard = HashMap<u64, Lease, BuildHasherDefault<PassThrough>>;

/// What is known of one key: what is left of its lease, or a refusal to repeat, and whether a
/// fetch is under way.
#[derive(Debug, Clone, Copy)]
struct Lease {
    left: u32,
    /// Redis's last decision; `remaining` excludes what the lease holds.
    decision: Decision,
    /// Monotonic nanoseconds after which the lease is void.
    expires: u64,
    /// A lease for the key is being fetched until then (0: none is).
    fetching_until: u64,
    /// Redis refused the key; no request can be allowed before then.
    refused_until: u64,
    /// When that refusal said the key's bucket would be whole again.
    refused_reset_at: u64,
}

impl Lease {
    fn live(&self, now: u64) -> bool {
        self.expires > now && self.left > 0
    }

    fn forgettable(&self, now: u64) -> bool {
        !self.live(now) && self.fetching_until <= now && self.refused_until <= now
    }
}

/// What a request for a key takes from the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Decided from memory: served from the key's lease, or refused as Redis refused it last. With
    /// `refill`, this request fetches the key's next lease too, then hands it to
    /// [`LeaseTable::refill`] (or [`LeaseTable::abandon`]).
    Decided { decision: Decision, refill: bool },
    /// No lease: ask Redis for one, then [`LeaseTable::keep`] (or [`LeaseTable::abandon`]).
    Fetch,
    /// A lease is on its way: wait for [`LeaseTable::fetched`] and take again.
    Wait,
}

impl LeaseTable {
    /// A table for leases of `size` requests (at least 1), remembering at most `max_keys` keys
    /// (rounded up to a multiple of the shard count).
    pub fn new(size: u32, max_keys: usize) -> LeaseTable {
        let capacity = max_keys.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect();
        let fetched = (0..SHARDS).map(|_| Notify::new()).collect();
        LeaseTable { size: size.max(1), capacity, shards, fetched }
    }

    /// Requests' worth one round trip asks Redis for.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Keys known right now (expired ones not yet forgotten included).
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|i| self.lock(i).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Woken whenever a fetch for `key`'s shard ends. Enable the `Notified` before [`Self::take`],
    /// so an end in between is not missed.
    pub fn fetched(&self, key: u64) -> &Notify {
        &self.fetched[shard_of(key)]
    }

    /// Decides one request for `key` (a hash) from memory when its lease or last refusal allows,
    /// otherwise says whether this request fetches the key's next lease or waits for one. `now` is
    /// monotonic nanoseconds ([`crate::monotonic_nanos`]).
    pub fn take(&self, key: u64, now: u64) -> Take {
        let mut shard = self.lock(shard_of(key));
        if let Some(lease) = shard.get_mut(&key) {
            if lease.live(now) {
                lease.left -= 1;
                let refill = lease.left <= self.size / 4 && lease.fetching_until <= now && lease.refused_until <= now;
                if refill {
                    lease.fetching_until = now + LEASE_TTL;
                }
                let remaining = lease.decision.remaining.saturating_add(lease.left);
                return Take::Decided { decision: Decision { remaining, ..lease.decision }, refill };
            }
            if lease.refused_until > now {
                let decision = Decision {
                    allowed: false,
                    remaining: 0,
                    retry_after: lease.refused_until - now,
                    reset_after: lease.refused_reset_at.saturating_sub(now),
                };
                return Take::Decided { decision, refill: false };
            }
            if lease.fetching_until > now {
                return Take::Wait;
            }
            lease.fetching_until = now + LEASE_TTL;
            return Take::Fetch;
        }
        if self.make_room(&mut shard, now) {
            shard.insert(key, Lease { fetching_until: now + LEASE_TTL, ..Lease::EMPTY });
        }
        Take::Fetch
    }

    /// Keeps what Redis granted for `key` beyond the one request that asked, and ends the fetch;
    /// returns that request's decision, its `remaining` counting the requests kept.
    pub fn keep(&self, key: u64, granted: Granted, now: u64) -> Decision {
        let extra = if granted.decision.allowed { granted.count.saturating_sub(1) } else { 0 };
        self.store(key, granted.decision, extra, now)
    }

    /// Adds all that Redis granted for `key` to its lease (fetched by a request already served from
    /// it), and ends the fetch.
    pub fn refill(&self, key: u64, granted: Granted, now: u64) {
        let extra = if granted.decision.allowed { granted.count } else { 0 };
        self.store(key, granted.decision, extra, now);
    }

    /// Ends a fetch for `key` that got no answer, so the next request fetches again.
    pub fn abandon(&self, key: u64) {
        if let Some(lease) = self.lock(shard_of(key)).get_mut(&key) {
            lease.fetching_until = 0;
        }
        self.fetched(key).notify_waiters();
    }

    fn store(&self, key: u64, decision: Decision, extra: u32, now: u64) -> Decision {
        let kept = self.store_locked(key, decision, extra, now);
        self.fetched(key).notify_waiters();
        kept
    }

    fn store_locked(&self, key: u64, decision: Decision, extra: u32, now: u64) -> Decision {
        let mut shard = self.lock(shard_of(key));
        let refusal = !decision.allowed;
        if !shard.contains_key(&key) && ((extra == 0 && !refusal) || !self.make_room(&mut shard, now)) {
            return decision;
        }
        let lease = shard.entry(key).or_insert(Lease::EMPTY);
        lease.fetching_until = 0;
        if refusal {
            // What is left of the lease is still served; the refusal answers once it is gone.
            lease.refused_until = now.saturating_add(decision.retry_after);
            lease.refused_reset_at = now.saturating_add(decision.reset_after);
            return decision;
        }
        if extra == 0 {
            return decision;
        }
        // Requests left of a lease still live were charged too: they are kept with the new ones.
        let carried = if lease.expires > now { lease.left } else { 0 };
        lease.left = carried.saturating_add(extra);
        lease.decision = decision;
        lease.expires = now + LEASE_TTL;
        Decision { remaining: decision.remaining.saturating_add(lease.left), ..decision }
    }

    /// Whether the shard can take one more key, forgetting expired leases when it is full.
    fn make_room(&self, shard: &mut Shard, now: u64) -> bool {
        if shard.len() >= self.capacity {
            shard.retain(|_, lease| !lease.forgettable(now));
        }
        shard.len() < self.capacity
    }

    fn lock(&self, index: usize) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while holding a shard cannot leave a lease half-written: the map stays usable.
        self.shards[index].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Lease {
    const EMPTY: Lease = Lease {
        left: 0,
        decision: Decision { allowed: false, remaining: 0, retry_after: 0, reset_after: 0 },
        expires: 0,
        fetching_until: 0,
        refused_until: 0,
        refused_reset_at: 0,
    };
}

/// The shard for a key hash: its top bits, which the hash spreads as well as the low ones.
fn shard_of(key: u64) -> usize {
    (key >> 58) as usize % SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(count: u32, remaining: u32) -> Granted {
        let decision =
            Decision { allowed: count > 0, remaining, retry_after: if count > 0 { 0 } else { 500 }, reset_after: 5 };
        Granted { decision, count }
    }

    fn served(take: Take) -> Option<u32> {
        match take {
            Take::Decided { decision, .. } if decision.allowed => Some(decision.remaining),
            _ => None,
        }
    }

    #[test]
    fn a_lease_serves_what_redis_granted_beyond_the_first_request_then_runs_out() {
        let table = LeaseTable::new(4, 100);
        assert_eq!(table.take(7, 0), Take::Fetch);
        let first = table.keep(7, granted(4, 10), 0);
        assert!(first.allowed);
        assert_eq!(first.remaining, 13, "Redis's remaining plus the three kept");
        let remaining: Vec<Option<u32>> = (0..3).map(|_| served(table.take(7, 1))).collect();
        assert_eq!(remaining, [Some(12), Some(11), Some(10)]);
        assert_eq!(table.take(7, 1), Take::Wait, "used up, and the refill the last quarter started is on its way");
        table.abandon(7);
        assert_eq!(table.take(7, 1), Take::Fetch);
    }

    #[test]
    fn the_request_that_leaves_a_quarter_fetches_the_next_lease_once() {
        let table = LeaseTable::new(8, 100);
        table.take(9, 0);
        table.keep(9, granted(8, 0), 0);
        let refills: Vec<bool> = (0..7)
            .map(|_| match table.take(9, 1) {
                Take::Decided { refill, .. } => refill,
                other => panic!("{other:?}"),
            })
            .collect();
        // Left 6, 5, 4, 3, 2 (a quarter: fetch), 1, 0 (a fetch is under way).
        assert_eq!(refills, [false, false, false, false, true, false, false]);
        assert_eq!(table.take(9, 1), Take::Wait, "dry while the lease is on its way");
        table.refill(9, granted(8, 0), 2);
        assert_eq!(std::iter::from_fn(|| served(table.take(9, 3))).count(), 8, "all eight are kept");
    }

    #[tokio::test]
    async fn a_waiting_request_is_woken_when_the_fetch_ends() {
        let table = std::sync::Arc::new(LeaseTable::new(4, 100));
        assert_eq!(table.take(5, 0), Take::Fetch);
        let waiter = {
            let table = table.clone();
            tokio::spawn(async move {
                loop {
                    let notified = table.fetched(5).notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    match table.take(5, 1) {
                        Take::Wait => notified.await,
                        other => return other,
                    }
                }
            })
        };
        tokio::task::yield_now().await;
        table.keep(5, granted(4, 0), 1);
        let taken = tokio::time::timeout(std::time::Duration::from_secs(10), waiter).await.unwrap().unwrap();
        assert_eq!(served(taken), Some(2), "served from the lease the other request fetched");
    }

    #[test]
    fn a_refusal_is_repeated_from_memory_until_redis_said_to_retry() {
        let table = LeaseTable::new(4, 100);
        assert_eq!(table.take(1, 0), Take::Fetch);
        let refused = table.keep(1, granted(0, 0), 100);
        assert!(!refused.allowed);
        match table.take(1, 400) {
            Take::Decided { decision, refill: false } => {
                assert!(!decision.allowed);
                assert_eq!(decision.retry_after, 200, "what is left of Redis's 500");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(table.take(1, 600), Take::Fetch, "then Redis is asked again");

        // A refill Redis refuses leaves the lease's last requests to be served, without asking again.
        table.keep(2, granted(4, 0), 0);
        assert!(matches!(table.take(2, 1), Take::Decided { refill: false, .. }));
        assert!(matches!(table.take(2, 1), Take::Decided { refill: true, .. }));
        table.refill(2, granted(0, 0), 2);
        assert!(matches!(table.take(2, 3), Take::Decided { refill: false, decision } if decision.allowed));
        assert!(matches!(table.take(2, 3), Take::Decided { refill: false, decision } if !decision.allowed));
    }

    #[test]
    fn a_lease_expires_and_a_single_grant_keeps_nothing() {
        let table = LeaseTable::new(4, 100);
        table.take(1, 0);
        table.keep(1, granted(4, 0), 0);
        assert!(served(table.take(1, LEASE_TTL - 1)).is_some());
        assert_eq!(table.take(1, LEASE_TTL), Take::Fetch, "expired");
        table.keep(1, granted(1, 9), LEASE_TTL);
        assert_eq!(table.take(1, LEASE_TTL), Take::Fetch);
    }

    #[test]
    fn one_fetch_at_a_time_per_key_and_an_abandoned_one_is_retried() {
        let table = LeaseTable::new(4, 100);
        assert_eq!(table.take(3, 0), Take::Fetch);
        assert_eq!(table.take(3, 1), Take::Wait, "a lease is on its way");
        assert_eq!(table.take(3, LEASE_TTL + 1), Take::Fetch, "a fetch that never ended is given up");
        table.abandon(3);
        assert_eq!(table.take(3, LEASE_TTL + 2), Take::Fetch);
        table.keep(3, granted(4, 0), LEASE_TTL + 3);
        assert!(served(table.take(3, LEASE_TTL + 4)).is_some());
    }

    #[test]
    fn leases_fetched_together_add_up() {
        let table = LeaseTable::new(3, 100);
        table.keep(5, granted(3, 4), 0);
        table.keep(5, granted(3, 1), 10);
        let count = std::iter::from_fn(|| served(table.take(5, 20))).count();
        assert_eq!(count, 4, "two from each lease");
    }

    #[test]
    fn a_full_shard_forgets_expired_leases_and_otherwise_keeps_no_new_one() {
        // One key per shard: keys that differ only in their low bits share a shard.
        let table = LeaseTable::new(2, 1);
        assert_eq!(table.take(0, 0), Take::Fetch);
        table.keep(0, granted(2, 0), 0);
        assert_eq!(table.len(), 1, "the shard is full");
        assert_eq!(table.take(1, 0), Take::Fetch);
        assert_eq!(table.take(1, 0), Take::Fetch, "no room to mark the fetch");
        table.keep(1, granted(2, 0), 0);
        assert_eq!(table.take(1, 1), Take::Fetch, "no room: its surplus was not kept");
        table.keep(2, granted(2, 0), LEASE_TTL);
        assert!(served(table.take(2, LEASE_TTL + 1)).is_some(), "the expired lease made room");
        assert_eq!(table.len(), 1);
    }
}
