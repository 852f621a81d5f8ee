//! A retry budget: retries may add at most `ratio` of the requests seen over a sliding window, plus
//! a small floor per second so a quiet route can still retry. When an upstream is down and every
//! request fails, the budget caps the load weir sends it at `(1 + ratio)` times the client's rate
//! (plus the floor) instead of multiplying it by the number of attempts.
//!
//! The window is ten one-second slots of atomic counters; a slot is cleared when the clock comes
//! round to it again. No lock: two requests racing on a slot change may lose a count, never block.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

const SLOTS: usize = 10;

/// Budget settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetSettings {
    /// Retries allowed per request seen, like `0.2` for 20%.
    pub ratio: f64,
    /// Retries allowed per second whatever the traffic.
    pub min_per_second: u32,
}

/// One upstream's (or route's) retry budget.
#[derive(Debug)]
pub struct RetryBudget {
    settings: BudgetSettings,
    epoch: Instant,
    slots: [Slot; SLOTS],
}

#[derive(Debug, Default)]
struct Slot {
    /// The second (since `epoch`) this slot counts, plus one; 0 for never used.
    second: AtomicU64,
    requests: AtomicU32,
    retries: AtomicU32,
}

impl RetryBudget {
    pub fn new(settings: BudgetSettings) -> Self {
        RetryBudget { settings, epoch: Instant::now(), slots: Default::default() }
    }

    /// Counts a request (a first attempt, not a retry).
    pub fn record_request(&self, now: Instant) {
        self.slot(now).requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn try_retry(&self, now: Instant) -> bool {
        let (requests, retries) = self.totals(now);
        let allowed =
            self.settings.ratio * f64::from(requests) + f64::from(self.settings.min_per_second) * SLOTS as f64;
        if f64::from(retries) + 1.0 > allowed {
            return false;
        }
        self.slot(now).retries.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Requests and retries counted in the window ending at `now`.
    fn totals(&self, now: Instant) -> (u32, u32) {
        let current = self.second(now);
        let live = |slot: &&Slot| {
            let second = slot.second.load(Ordering::Relaxed);
            second != 0 && second - 1 + SLOTS as u64 > current
        };
        self.slots.iter().filter(live).fold((0, 0), |(requests, retries), slot| {
            (requests + slot.requests.load(Ordering::Relaxed), retries + slot.retries.load(Ordering::Relaxed))
        })
    }

    /// The slot for `now`, cleared first if it last counted an older second.
    fn slot(&self, now: Instant) -> &Slot {
        let second = self.second(now);
        let slot = &self.slots[(second % SLOTS as u64) as usize];
        let stamp = second + 1;
        let seen = slot.second.load(Ordering::Relaxed);
        if seen != stamp && slot.second.compare_exchange(seen, stamp, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            slot.requests.store(0, Ordering::Relaxed);
            slot.retries.store(0, Ordering::Relaxed);
        }
        slot
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }
}

/// How long the window is, for documentation and tests.
pub const WINDOW: Duration = Duration::from_secs(SLOTS as u64);

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ratio: f64, min_per_second: u32) -> RetryBudget {
        RetryBudget::new(BudgetSettings { ratio, min_per_second })
    }

    /// Sends `per_second` requests a second for `seconds`, each wanting one retry; counts retries.
    async fn drive(budget: &RetryBudget, per_second: u32, seconds: u32) -> u32 {
        let mut granted = 0;
        for _ in 0..seconds {
            for _ in 0..per_second {
                budget.record_request(Instant::now());
                granted += u32::from(budget.try_retry(Instant::now()));
            }
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        granted
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_held_to_the_ratio_under_steady_failure() {
        let budget = budget(0.2, 0);
        let granted = drive(&budget, 100, 60).await;
        // 20% of 6,000 requests, give or take the window's edges.
        assert!((1150..=1250).contains(&granted), "{granted}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_lets_a_quiet_route_retry() {
        let budget = budget(0.2, 1);
        // One request a second: 20% alone would allow a retry every five seconds.
        let granted = drive(&budget, 1, 30).await;
        assert!(granted >= 25, "{granted}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_exhausted_budget_recovers_as_the_window_moves() {
        let budget = budget(0.1, 0);
        for _ in 0..100 {
            budget.record_request(Instant::now());
        }
        let burst: u32 = (0..50).map(|_| u32::from(budget.try_retry(Instant::now()))).sum();
        assert_eq!(burst, 10);
        assert!(!budget.try_retry(Instant::now()));
        tokio::time::advance(WINDOW).await;
        for _ in 0..10 {
            budget.record_request(Instant::now());
        }
        assert!(budget.try_retry(Instant::now()), "old retries left the window");
    }
}
