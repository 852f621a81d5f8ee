//! Weighted round robin over a rotation's endpoints, lock-free: the order is computed once when the
//! rotation is built (smooth weighted round robin, so heavy endpoints are interleaved, not bunched),
//! and each pick advances one shared atomic cursor.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Longest precomputed schedule; larger weight sums are scaled down to fit.
const MAX_SCHEDULE: u64 = 4096;

/// Picks endpoint indexes in proportion to their weights.
#[derive(Debug)]
pub struct WeightedRoundRobin {
    schedule: Box<[u32]>,
    cursor: AtomicUsize,
}

impl WeightedRoundRobin {
    /// Builds the schedule for endpoints with these weights (each at least 1).
    pub fn new(weights: &[u32]) -> Self {
        let weights = scale_to_fit(weights);
        WeightedRoundRobin { schedule: smooth_schedule(&weights).into(), cursor: AtomicUsize::new(0) }
    }

    /// The next endpoint index. Never called with zero endpoints: clusters are validated non-empty.
    pub fn pick(&self) -> usize {
        let turn = self.cursor.fetch_add(1, Ordering::Relaxed);
        self.schedule[turn % self.schedule.len()] as usize
    }

    /// The endpoint at a given place in the schedule (a random place gives a weighted random pick).
    pub fn pick_at(&self, place: u64) -> usize {
        self.schedule[(place % self.schedule.len() as u64) as usize] as usize
    }
}

fn scale_to_fit(weights: &[u32]) -> Vec<u64> {
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let reduced: Vec<u64> = weights.iter().map(|w| u64::from((*w).max(1) / divisor)).collect();
    let total: u64 = reduced.iter().sum();
    if total <= MAX_SCHEDULE {
        return reduced;
    }
    reduced.iter().map(|w| (w * MAX_SCHEDULE / total).max(1)).collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// nginx-style smooth weighted round robin, run once for a whole cycle.
fn smooth_schedule(weights: &[u64]) -> Vec<u32> {
    let total: i64 = weights.iter().map(|w| *w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(weights) {
            *c += *w as i64;
        }
        let (best, _) = current.iter().enumerate().max_by_key(|(i, c)| (**c, -(*i as i64))).unwrap_or((0, &0));
        current[best] -= total;
        schedule.push(best as u32);
    }
    schedule
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(weights: &[u32], picks: usize) -> Vec<usize> {
        let wrr = WeightedRoundRobin::new(weights);
        let mut counts = vec![0; weights.len()];
        for _ in 0..picks {
            counts[wrr.pick()] += 1;
        }
        counts
    }

    #[test]
    fn picks_in_proportion_to_weights() {
        assert_eq!(counts(&[1, 1, 1], 300), vec![100, 100, 100]);
        assert_eq!(counts(&[5, 1, 1], 700), vec![500, 100, 100]);
        assert_eq!(counts(&[3000, 1000], 4000), vec![3000, 1000]);
    }

    #[test]
    fn heavy_endpoints_are_interleaved() {
        let wrr = WeightedRoundRobin::new(&[5, 1, 1]);
        let order: Vec<usize> = (0..7).map(|_| wrr.pick()).collect();
        assert_eq!(order, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn huge_weights_are_scaled_into_a_bounded_schedule() {
        let wrr = WeightedRoundRobin::new(&[10_000, 9_999, 1]);
        assert!(wrr.schedule.len() as u64 <= MAX_SCHEDULE + 3);
        assert!(wrr.schedule.contains(&2));
    }
}
