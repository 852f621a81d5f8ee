//! Which requests are traced. A request whose caller sent a valid `traceparent` follows the caller's
//! `sampled` flag (parent-based), so a trace is whole or absent; a request that starts a trace is
//! sampled when its trace id falls under the configured ratio (the id is random, so the share of
//! sampled roots is the ratio, and every node deciding on the same id decides alike).

use crate::context::{Parent, TraceId};

/// The sampling decision, made once per request.
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    /// Roots whose id's low 64 bits are below this are sampled; `None` samples every root.
    threshold: Option<u64>,
}

impl Sampler {
    /// `ratio` from 0 (no root is sampled) to 1 (every root is).
    pub fn new(ratio: f64) -> Sampler {
        let ratio = ratio.clamp(0.0, 1.0);
        let threshold = (ratio < 1.0).then(|| (ratio * 2f64.powi(64)) as u64);
        Sampler { threshold }
    }

    /// Whether the request is sampled: the parent's flag when there is one, the ratio otherwise.
    pub fn sample(&self, parent: Option<&Parent>, trace_id: &TraceId) -> bool {
        match parent {
            Some(parent) => parent.sampled(),
            None => self.samples_root(trace_id),
        }
    }

    fn samples_root(&self, trace_id: &TraceId) -> bool {
        let Some(threshold) = self.threshold else { return true };
        let low: [u8; 8] = trace_id[8..].try_into().expect("eight bytes");
        u64::from_be_bytes(low) < threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SplitMix;

    fn share_sampled(ratio: f64, seed: u64, n: u32) -> f64 {
        let sampler = Sampler::new(ratio);
        let mut ids = SplitMix::new(seed);
        let sampled = (0..n).filter(|_| sampler.sample(None, &ids.trace_id())).count();
        sampled as f64 / f64::from(n)
    }

    #[test]
    fn roots_are_sampled_at_the_ratio() {
        for (ratio, seed) in [(0.1, 1), (0.25, 2), (0.5, 3), (0.9, 4)] {
            let share = share_sampled(ratio, seed, 100_000);
            // 100k Bernoulli draws: the standard deviation is under 0.0016; the seed fixes the draws.
            assert!((share - ratio).abs() < 0.01, "ratio {ratio}: sampled {share}");
        }
        assert_eq!(share_sampled(0.0, 5, 10_000), 0.0);
        assert_eq!(share_sampled(1.0, 6, 10_000), 1.0);
    }

    #[test]
    fn a_parent_decides_whatever_the_ratio() {
        let mut parent = Parent { trace_id: [7; 16], span_id: [1; 8], flags: 1 };
        assert!(Sampler::new(0.0).sample(Some(&parent), &parent.trace_id));
        parent.flags = 0;
        assert!(!Sampler::new(1.0).sample(Some(&parent), &parent.trace_id));
    }
}
