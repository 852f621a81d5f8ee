//! What operators can read about a breaker at one moment: its state and for how long, the calls in
//! its window, its trips, when it will let probes through, and how often it entered each state. Read
//! from the live atomics (the admin API's `/breakers` and the transition counters in `/metrics`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::{BreakerSettings, BreakerState, CircuitBreaker};

/// A breaker as it stands at the moment of reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerReport {
    pub state: BreakerState,
    /// How long the breaker has been in `state` (since it was made, for a breaker never changed).
    pub in_state_for: Duration,
    /// Calls, failed calls and slow calls counted in the current window (closed state).
    pub window_calls: u32,
    pub window_failures: u32,
    pub window_slow: u32,
    pub trips_total: u64,
    /// While open: how long until probes are let through.
    pub half_open_in: Option<Duration>,
    /// Changes into `closed`, `open` and `half_open`, in [`BreakerState`] order.
    pub entered: [u64; 3],
    pub settings: BreakerSettings,
}

impl BreakerReport {
    /// The share of failed calls in the window, in percent; `None` before any call.
    pub fn failure_percent(&self) -> Option<f64> {
        (self.window_calls > 0).then(|| f64::from(self.window_failures) * 100.0 / f64::from(self.window_calls))
    }
}

impl CircuitBreaker {
    /// The breaker as it stands at `now`.
    pub fn report(&self, now: Instant) -> BreakerReport {
        let state = self.state();
        let since_epoch = now.saturating_duration_since(self.epoch);
        let changed_at = Duration::from_nanos(self.changed_at_nanos.load(Ordering::Relaxed));
        let (window_calls, window_failures, window_slow) = self.totals(now);
        let half_open_in = (state == BreakerState::Open).then(|| {
            let until = Duration::from_nanos(self.open_until_nanos.load(Ordering::Acquire));
            until.saturating_sub(since_epoch)
        });
        BreakerReport {
            state,
            in_state_for: since_epoch.saturating_sub(changed_at),
            window_calls,
            window_failures,
            window_slow,
            trips_total: self.trips_total(),
            half_open_in,
            entered: self.entered.each_ref().map(|count| count.load(Ordering::Relaxed)),
            settings: self.settings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CallResult, CircuitBreaker};
    use super::*;

    const SETTINGS: BreakerSettings = BreakerSettings {
        failure_rate: 50,
        slow_call_rate: 0,
        slow_call_duration: Duration::from_secs(1),
        window: Duration::from_secs(10),
        min_calls: 4,
        open_for: Duration::from_secs(5),
        max_open_for: Duration::from_secs(30),
        half_open_probes: 1,
    };

    fn call(breaker: &CircuitBreaker, result: CallResult) {
        let permit = breaker.admit(Instant::now()).unwrap();
        breaker.record(permit, result, Duration::from_millis(1), Instant::now());
    }

    #[tokio::test(start_paused = true)]
    async fn reports_follow_the_state_machine() {
        let breaker = CircuitBreaker::new(SETTINGS);
        call(&breaker, CallResult::Success);
        call(&breaker, CallResult::Failure);
        let closed = breaker.report(Instant::now());
        assert_eq!((closed.state, closed.window_calls, closed.window_failures), (BreakerState::Closed, 2, 1));
        assert_eq!(closed.failure_percent(), Some(50.0));
        assert_eq!((closed.half_open_in, closed.entered), (None, [0, 0, 0]));
        call(&breaker, CallResult::Failure);
        call(&breaker, CallResult::Failure);
        tokio::time::advance(Duration::from_secs(2)).await;
        let open = breaker.report(Instant::now());
        assert_eq!((open.state, open.trips_total, open.entered), (BreakerState::Open, 1, [0, 1, 0]));
        assert_eq!(open.in_state_for, Duration::from_secs(2));
        assert_eq!(open.half_open_in, Some(Duration::from_secs(3)));
        tokio::time::advance(Duration::from_secs(3)).await;
        call(&breaker, CallResult::Success);
        let closed = breaker.report(Instant::now());
        assert_eq!((closed.state, closed.entered), (BreakerState::Closed, [1, 1, 1]));
        assert_eq!((closed.in_state_for, closed.window_calls), (Duration::ZERO, 0));
    }
}
