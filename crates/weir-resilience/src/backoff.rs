//! Exponential backoff with full jitter: before retry `n` (1 for the first retry) wait a random time
//! between zero and `min(max, base * 2^(n-1))`. Full jitter spreads a burst of failed requests over
//! the whole window, so their retries do not arrive together.

use std::time::Duration;

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The ceiling of the wait before retry `retry` (1-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(30);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }

    /// The wait before retry `retry`, given a uniform random `fraction` in `[0, 1)`.
    pub fn delay(&self, retry: u32, fraction: f64) -> Duration {
        self.ceiling(retry).mul_f64(fraction.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff { base: Duration::from_millis(25), max: Duration::from_millis(250) };

    #[test]
    fn the_ceiling_doubles_up_to_the_maximum() {
        let ceilings: Vec<u128> = (1..=6).map(|n| BACKOFF.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, vec![25, 50, 100, 200, 250, 250]);
        assert_eq!(BACKOFF.ceiling(1000), Duration::from_millis(250));
    }

    #[test]
    fn delays_spread_over_the_whole_window() {
        assert_eq!(BACKOFF.delay(3, 0.0), Duration::ZERO);
        assert_eq!(BACKOFF.delay(3, 0.5), Duration::from_millis(50));
        assert!(BACKOFF.delay(3, 0.999) < Duration::from_millis(100));
    }
}
