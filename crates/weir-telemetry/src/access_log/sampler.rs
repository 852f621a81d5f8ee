//! Which requests get an access-log line when only a share of them should. A counter run through a
//! mixing function gives each request an independent-looking draw at the cost of one atomic add; a
//! fixed seed makes the sequence of decisions repeatable.

use std::sync::atomic::{AtomicU64, Ordering};

/// Keeps a configured share of requests.
#[derive(Debug)]
pub struct Sampler {
    /// A draw below this keeps the request; `u64::MAX` with `keep_all` keeps everything.
    threshold: u64,
    keep_all: bool,
    seed: u64,
    counter: AtomicU64,
}

impl Sampler {
    /// Keeps `ratio` (0 to 1) of requests, drawing from `seed`.
    pub fn new(ratio: f64, seed: u64) -> Sampler {
        let ratio = ratio.clamp(0.0, 1.0);
        Sampler {
            threshold: (ratio * u64::MAX as f64) as u64,
            keep_all: ratio >= 1.0,
            seed,
            counter: AtomicU64::new(0),
        }
    }

    /// A seed that differs between processes and starts.
    pub fn random_seed() -> u64 {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        mix(nanos as u64 ^ u64::from(std::process::id()).rotate_left(32))
    }

    /// Whether this request is kept.
    pub fn keep(&self) -> bool {
        if self.keep_all {
            return true;
        }
        if self.threshold == 0 {
            return false;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        mix(self.seed.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15))) < self.threshold
    }
}

/// SplitMix64's finalizer: a counter in, well-spread bits out.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(sampler: &Sampler, draws: usize) -> usize {
        (0..draws).filter(|_| sampler.keep()).count()
    }

    #[test]
    fn keeps_about_the_ratio_and_repeats_with_a_seed() {
        for ratio in [0.01, 0.1, 0.5, 0.9] {
            let n = kept(&Sampler::new(ratio, 42), 100_000);
            let expected = ratio * 100_000.0;
            // Five standard deviations of a binomial draw: a seeded run is fixed anyway.
            let tolerance = 5.0 * (100_000.0 * ratio * (1.0 - ratio)).sqrt();
            assert!((n as f64 - expected).abs() < tolerance, "ratio {ratio}: kept {n}");
        }
        assert_eq!(kept(&Sampler::new(0.3, 7), 1000), kept(&Sampler::new(0.3, 7), 1000));
    }

    #[test]
    fn zero_and_one_are_exact() {
        assert_eq!(kept(&Sampler::new(0.0, 1), 10_000), 0);
        assert_eq!(kept(&Sampler::new(1.0, 1), 10_000), 10_000);
    }
}
