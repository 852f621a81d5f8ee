//! The balancers: how a cluster picks one endpoint of its current rotation for a request.
//!
//! - round robin: weighted, smooth, lock-free ([`WeightedRoundRobin`]);
//! - random: weighted, by picking a random place in the round-robin schedule;
//! - least request: power of two random choices, keeping the one with the lower peak-EWMA latency
//!   times requests in flight (failures count as slow, so a fast-failing endpoint is avoided);
//! - consistent hash: a Maglev table looked up by a key taken from the request ([`MaglevTable`]).

mod maglev;
mod round_robin;

use tokio::time::Instant;

pub use maglev::MaglevTable;
pub use round_robin::WeightedRoundRobin;

use crate::rng::BalanceRng;

/// Which balancer a cluster uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BalancePolicy {
    #[default]
    RoundRobin,
    Random,
    LeastRequest,
    ConsistentHash,
}

/// A balancer's tables for one rotation: built when the rotation changes, never per request.
#[derive(Debug)]
pub(crate) enum Table {
    RoundRobin(WeightedRoundRobin),
    Random(WeightedRoundRobin),
    LeastRequest,
    ConsistentHash { table: MaglevTable, fallback: WeightedRoundRobin },
}

impl Table {
    pub fn build(policy: BalancePolicy, names: &[String], weights: &[u32]) -> Table {
        match policy {
            BalancePolicy::RoundRobin => Table::RoundRobin(WeightedRoundRobin::new(weights)),
            BalancePolicy::Random => Table::Random(WeightedRoundRobin::new(weights)),
            BalancePolicy::LeastRequest => Table::LeastRequest,
            BalancePolicy::ConsistentHash => Table::ConsistentHash {
                table: MaglevTable::new(names, weights),
                fallback: WeightedRoundRobin::new(weights),
            },
        }
    }
}

/// What a pick may consult: the request's hash key, a random source, and each endpoint's cost.
pub(crate) struct PickInput<'a, C: Fn(usize, Instant) -> f64> {
    pub len: usize,
    pub key: Option<u64>,
    pub rng: &'a BalanceRng,
    pub cost: C,
}

impl Table {
    /// The index of the endpoint to use, for a rotation of `input.len > 0` endpoints.
    pub fn pick<C: Fn(usize, Instant) -> f64>(&self, input: PickInput<'_, C>) -> usize {
        match self {
            Table::RoundRobin(wrr) => wrr.pick(),
            Table::Random(wrr) => wrr.pick_at(input.rng.next_u64()),
            Table::LeastRequest => least_of_two(input),
            // A request without the key still goes somewhere: spread like round robin.
            Table::ConsistentHash { table, fallback } => match input.key {
                Some(hash) => table.pick(hash),
                None => fallback.pick(),
            },
        }
    }
}

/// Power of two choices: two distinct random endpoints, the cheaper one wins (the first on a tie).
fn least_of_two<C: Fn(usize, Instant) -> f64>(input: PickInput<'_, C>) -> usize {
    if input.len == 1 {
        return 0;
    }
    let first = input.rng.below(input.len);
    let second = (first + 1 + input.rng.below(input.len - 1)) % input.len;
    let now = Instant::now();
    if (input.cost)(second, now) < (input.cost)(first, now) { second } else { first }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick_counts(table: &Table, rng: &BalanceRng, costs: &[f64], picks: usize) -> Vec<usize> {
        let mut counts = vec![0; costs.len()];
        for _ in 0..picks {
            let input = PickInput { len: costs.len(), key: None, rng, cost: |i: usize, _| costs[i] };
            counts[table.pick(input)] += 1;
        }
        counts
    }

    #[test]
    fn random_follows_the_weights() {
        let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let table = Table::build(BalancePolicy::Random, &names, &[2, 1, 1]);
        let counts = pick_counts(&table, &BalanceRng::seeded(1), &[0.0; 3], 40_000);
        let shares: Vec<f64> = counts.iter().map(|c| *c as f64 / 40_000.0).collect();
        for (share, expected) in shares.iter().zip([0.5, 0.25, 0.25]) {
            assert!((share - expected).abs() < 0.01, "{shares:?}");
        }
    }

    #[test]
    fn least_request_avoids_the_costly_endpoint() {
        let table = Table::build(BalancePolicy::LeastRequest, &[], &[]);
        // The third endpoint is a hundred times as costly: it wins only when drawn against itself,
        // which two distinct choices never do.
        let counts = pick_counts(&table, &BalanceRng::seeded(3), &[1.0, 1.0, 100.0], 30_000);
        assert_eq!(counts[2], 0, "{counts:?}");
        assert!(counts[0].abs_diff(counts[1]) < 1_000, "{counts:?}");
    }

    #[test]
    fn least_request_spreads_equal_endpoints_evenly() {
        let table = Table::build(BalancePolicy::LeastRequest, &[], &[]);
        let counts = pick_counts(&table, &BalanceRng::seeded(5), &[1.0; 4], 40_000);
        assert!(counts.iter().all(|c| c.abs_diff(10_000) < 500), "{counts:?}");
    }
}
