//! Peak-EWMA latency: an exponentially weighted moving average that jumps up at once to any
//! observation above it and decays back slowly, so an endpoint that turns slow (or starts failing)
//! is avoided at once and trusted again only gradually. It also decays toward zero while nothing is
//! observed, so an endpoint that was avoided is tried again in time rather than starved for good.
//!
//! Kept in two atomics: a lost update between two concurrent observations only loses one sample.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How fast old observations fade: after `DECAY` an observation weighs 1/e.
pub const DECAY: Duration = Duration::from_secs(10);
/// What a new endpoint is assumed to take before anything is known.
pub const INITIAL: Duration = Duration::from_millis(10);
/// What a failure (5xx, 429, connect error, reset, timeout) counts as at least, so an endpoint that
/// fails fast does not attract traffic by answering quickly.
pub const FAILURE_PENALTY: Duration = Duration::from_secs(1);

/// A peak-EWMA latency estimate in nanoseconds.
#[derive(Debug)]
pub struct PeakEwma {
    epoch: Instant,
    /// The estimate, as `f64` bits.
    value: AtomicU64,
    /// When `value` was last updated, in nanoseconds since `epoch`.
    stamp: AtomicU64,
}

impl PeakEwma {
    pub fn new(epoch: Instant) -> Self {
        let stamp = Instant::now().saturating_duration_since(epoch).as_nanos() as u64;
        PeakEwma { epoch, value: AtomicU64::new((INITIAL.as_nanos() as f64).to_bits()), stamp: AtomicU64::new(stamp) }
    }

    /// Records one latency. Above the estimate it becomes the estimate; below, it is blended in.
    pub fn observe(&self, latency: Duration, now: Instant) {
        let sample = latency.as_nanos() as f64;
        let now_ns = self.nanos(now);
        let (current, elapsed) = self.load(now_ns);
        let next = if sample > current {
            sample
        } else {
            let keep = (-(elapsed as f64) / DECAY.as_nanos() as f64).exp();
            current * keep + sample * (1.0 - keep)
        };
        self.value.store(next.to_bits(), Ordering::Relaxed);
        self.stamp.store(now_ns, Ordering::Relaxed);
    }

    /// The estimate at `now`, in nanoseconds, decayed toward zero for the time nothing was observed.
    pub fn estimate(&self, now: Instant) -> f64 {
        let (current, elapsed) = self.load(self.nanos(now));
        current * (-(elapsed as f64) / DECAY.as_nanos() as f64).exp()
    }

    fn load(&self, now_ns: u64) -> (f64, u64) {
        let current = f64::from_bits(self.value.load(Ordering::Relaxed));
        (current, now_ns.saturating_sub(self.stamp.load(Ordering::Relaxed)))
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: f64) -> f64 {
        value / 1e6
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_observation_is_taken_at_once() {
        let ewma = PeakEwma::new(Instant::now());
        ewma.observe(Duration::from_millis(200), Instant::now());
        assert_eq!(ms(ewma.estimate(Instant::now())), 200.0);
    }

    #[tokio::test(start_paused = true)]
    async fn fast_observations_pull_the_estimate_down_gradually() {
        let ewma = PeakEwma::new(Instant::now());
        ewma.observe(Duration::from_millis(200), Instant::now());
        for _ in 0..100 {
            tokio::time::advance(Duration::from_millis(100)).await;
            ewma.observe(Duration::from_millis(2), Instant::now());
        }
        // Ten seconds of fast answers: the peak has faded to about 1/e of its excess.
        let estimate = ms(ewma.estimate(Instant::now()));
        assert!((70.0..80.0).contains(&estimate), "{estimate}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unused_estimate_decays_toward_zero() {
        let ewma = PeakEwma::new(Instant::now());
        ewma.observe(FAILURE_PENALTY, Instant::now());
        tokio::time::advance(DECAY * 5).await;
        assert!(ms(ewma.estimate(Instant::now())) < 7.0);
    }
}
