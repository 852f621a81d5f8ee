//! A circuit breaker for one upstream. Closed, it counts calls over a sliding time window; when at
//! least `min_calls` were made and the share of failures (or of slow calls) passes its threshold, it
//! opens. Open, it refuses calls at once for `open_for`, twice as long for each trip in a row, up to
//! `max_open_for`. Then it lets `half_open_probes` calls through: if they all succeed it closes, if
//! one fails it opens again.
//!
//! Counting in the closed state is lock-free (slotted atomic counters, like the retry budget); the
//! state changes, which are rare, happen under a mutex.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

const SLOTS: u64 = 10;

/// Breaker settings. A rate of 0 turns its rule off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Percentage of failed calls that opens the breaker.
    pub failure_rate: u32,
    /// Percentage of calls slower than `slow_call_duration` that opens the breaker.
    pub slow_call_rate: u32,
    pub slow_call_duration: Duration,
    pub window: Duration,
    pub min_calls: u32,
    pub open_for: Duration,
    pub max_open_for: Duration,
    pub half_open_probes: u32,
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

/// How a call went, as the breaker judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    Success,
    Failure,
    /// Says nothing of the upstream (the gateway's own refusal, a client that went away).
    Ignored,
}

/// Leave to make one call; give it back through [`CircuitBreaker::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Permit {
    Closed,
    Probe,
}

/// The breaker refused: the upstream is given time to recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// When calls are let through again (as probes), from now.
    pub retry_after: Duration,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    settings: BreakerSettings,
    epoch: Instant,
    state: AtomicU8,
    slots: [Slot; SLOTS as usize],
    transitions: Mutex<Transitions>,
    /// Half-open probes let through, and how many of them succeeded.
    probes_out: AtomicU32,
    probes_passed: AtomicU32,
    trips_total: AtomicU64,
    /// While open: when probes may start, in nanoseconds since `epoch` (readable without the lock).
    open_until_nanos: AtomicU64,
    /// When the state last changed, in nanoseconds since `epoch`; and changes into each state.
    changed_at_nanos: AtomicU64,
    entered: [AtomicU64; 3],
}

#[derive(Debug, Default)]
struct Slot {
    /// The slot's period number plus one; 0 for never used.
    period: AtomicU64,
    calls: AtomicU32,
    failures: AtomicU32,
    slow: AtomicU32,
}

#[derive(Debug, Default)]
struct Transitions {
    open_until: Option<Instant>,
    /// Trips since the breaker last closed.
    trips_in_a_row: u32,
}

impl CircuitBreaker {
    pub fn new(settings: BreakerSettings) -> Self {
        CircuitBreaker {
            settings,
            epoch: Instant::now(),
            state: AtomicU8::new(BreakerState::Closed as u8),
            slots: Default::default(),
            transitions: Mutex::default(),
            probes_out: AtomicU32::new(0),
            probes_passed: AtomicU32::new(0),
            trips_total: AtomicU64::new(0),
            open_until_nanos: AtomicU64::new(0),
            changed_at_nanos: AtomicU64::new(0),
            entered: Default::default(),
        }
    }

    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            0 => BreakerState::Closed,
            1 => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    /// Times the breaker opened.
    pub fn trips_total(&self) -> u64 {
        self.trips_total.load(Ordering::Relaxed)
    }

    /// Whether a call asked for now would be refused (open, and not yet time for probes). Takes no
    /// permit: for choosing a fallback before a request is prepared.
    pub fn is_refusing(&self, now: Instant) -> bool {
        self.state() == BreakerState::Open
            && now.saturating_duration_since(self.epoch).as_nanos()
                < u128::from(self.open_until_nanos.load(Ordering::Acquire))
    }

    /// Asks to make a call.
    pub fn admit(&self, now: Instant) -> Result<Permit, Refused> {
        match self.state() {
            BreakerState::Closed => Ok(Permit::Closed),
            BreakerState::Open => {
                let mut transitions = self.lock();
                let until = transitions.open_until.unwrap_or(now);
                if now < until {
                    return Err(Refused { retry_after: until - now });
                }
                if self.state() == BreakerState::Open {
                    transitions.open_until = None;
                    self.probes_out.store(0, Ordering::Relaxed);
                    self.probes_passed.store(0, Ordering::Relaxed);
                    self.enter(BreakerState::HalfOpen, now);
                }
                drop(transitions);
                self.admit_probe()
            }
            BreakerState::HalfOpen => self.admit_probe(),
        }
    }

    fn admit_probe(&self) -> Result<Permit, Refused> {
        let probes = self.settings.half_open_probes.max(1);
        let admitted =
            self.probes_out.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < probes).then_some(n + 1));
        admitted.map(|_| Permit::Probe).map_err(|_| Refused { retry_after: Duration::from_secs(1) })
    }

    /// Records how a permitted call went.
    pub fn record(&self, permit: Permit, result: CallResult, took: Duration, now: Instant) {
        match (permit, result) {
            (Permit::Probe, CallResult::Ignored) => {
                self.probes_out.fetch_sub(1, Ordering::AcqRel);
            }
            (Permit::Probe, CallResult::Failure) => self.trip(now),
            (Permit::Probe, CallResult::Success) => {
                let passed = self.probes_passed.fetch_add(1, Ordering::AcqRel) + 1;
                if passed >= self.settings.half_open_probes.max(1) {
                    self.close(now);
                }
            }
            (Permit::Closed, CallResult::Ignored) => {}
            (Permit::Closed, result) => self.count(result == CallResult::Failure, took, now),
        }
    }

    /// Gives back a permit whose call never happened.
    pub fn release(&self, permit: Permit) {
        if permit == Permit::Probe {
            self.probes_out.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn count(&self, failed: bool, took: Duration, now: Instant) {
        let slot = self.slot(now);
        slot.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            slot.failures.fetch_add(1, Ordering::Relaxed);
        }
        if self.settings.slow_call_rate > 0 && took >= self.settings.slow_call_duration {
            slot.slow.fetch_add(1, Ordering::Relaxed);
        }
        let (calls, failures, slow) = self.totals(now);
        if calls < self.settings.min_calls.max(1) {
            return;
        }
        let over = |count: u32, rate: u32| rate > 0 && u64::from(count) * 100 >= u64::from(rate) * u64::from(calls);
        if over(failures, self.settings.failure_rate) || over(slow, self.settings.slow_call_rate) {
            self.trip(now);
        }
    }

    fn trip(&self, now: Instant) {
        let mut transitions = self.lock();
        if self.state() == BreakerState::Open {
            return;
        }
        transitions.trips_in_a_row += 1;
        let doublings = (transitions.trips_in_a_row - 1).min(16);
        let wait = self
            .settings
            .open_for
            .saturating_mul(1 << doublings)
            .min(self.settings.max_open_for.max(self.settings.open_for));
        transitions.open_until = Some(now + wait);
        let until = (now + wait).saturating_duration_since(self.epoch).as_nanos() as u64;
        self.open_until_nanos.store(until, Ordering::Release);
        self.trips_total.fetch_add(1, Ordering::Relaxed);
        self.enter(BreakerState::Open, now);
    }

    fn close(&self, now: Instant) {
        let mut transitions = self.lock();
        if self.state() != BreakerState::HalfOpen {
            return;
        }
        transitions.trips_in_a_row = 0;
        for slot in &self.slots {
            slot.period.store(0, Ordering::Relaxed);
        }
        self.enter(BreakerState::Closed, now);
    }

    /// Moves to `state` (under the transitions lock), noting when and counting the change.
    fn enter(&self, state: BreakerState, now: Instant) {
        let at = now.saturating_duration_since(self.epoch).as_nanos();
        self.changed_at_nanos.store(u64::try_from(at).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.entered[state as usize].fetch_add(1, Ordering::Relaxed);
        self.state.store(state as u8, Ordering::Release);
    }

    fn totals(&self, now: Instant) -> (u32, u32, u32) {
        let current = self.period(now);
        self.slots
            .iter()
            .filter(|slot| {
                let period = slot.period.load(Ordering::Relaxed);
                period != 0 && period - 1 + SLOTS > current
            })
            .fold((0, 0, 0), |(calls, failures, slow), slot| {
                (
                    calls + slot.calls.load(Ordering::Relaxed),
                    failures + slot.failures.load(Ordering::Relaxed),
                    slow + slot.slow.load(Ordering::Relaxed),
                )
            })
    }

    fn slot(&self, now: Instant) -> &Slot {
        let period = self.period(now);
        let slot = &self.slots[(period % SLOTS) as usize];
        let seen = slot.period.load(Ordering::Relaxed);
        if seen != period + 1
            && slot.period.compare_exchange(seen, period + 1, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            for counter in [&slot.calls, &slot.failures, &slot.slow] {
                counter.store(0, Ordering::Relaxed);
            }
        }
        slot
    }

    fn period(&self, now: Instant) -> u64 {
        let slot_nanos = (self.settings.window.as_nanos() / u128::from(SLOTS)).max(1);
        (now.saturating_duration_since(self.epoch).as_nanos() / slot_nanos) as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Transitions> {
        self.transitions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[path = "breaker_report.rs"]
mod report;
pub use report::BreakerReport;

#[cfg(test)]
#[path = "breaker_tests.rs"]
mod tests;
