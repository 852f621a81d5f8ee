//! Consistent hashing with a Maglev lookup table: every endpoint fills table slots in the order of
//! its own permutation, taking turns in proportion to its weight, until the table is full. A key's
//! hash picks a slot. When one of N endpoints leaves, about 1/N of the slots change hands (those it
//! held, and a few more), so most keys keep their endpoint.

use crate::rng::stable_hash;

/// Slots in the table: a prime well above any endpoint count, so permutations cover the table
/// evenly. 65,537 slots of 4 bytes: 256 KiB per consistent-hash rotation.
pub const TABLE_SIZE: usize = 65_537;

/// The lookup table of one rotation.
#[derive(Debug)]
pub struct MaglevTable {
    slots: Box<[u32]>,
}

impl MaglevTable {
    /// Builds the table for endpoints named by `names` (stable across nodes: their addresses), with
    /// these weights (each at least 1).
    pub fn new(names: &[String], weights: &[u32]) -> Self {
        MaglevTable { slots: populate(names, weights, TABLE_SIZE) }
    }

    /// The endpoint index for a key's hash.
    pub fn pick(&self, key_hash: u64) -> usize {
        self.slots[(key_hash % self.slots.len() as u64) as usize] as usize
    }
}

fn populate(names: &[String], weights: &[u32], size: usize) -> Box<[u32]> {
    const EMPTY: u32 = u32::MAX;
    let mut slots = vec![EMPTY; size];
    if names.is_empty() {
        return slots.into();
    }
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let turns: Vec<u32> = weights.iter().map(|w| (w / divisor).max(1)).collect();
    let permutations: Vec<(u64, u64)> = names
        .iter()
        .map(|name| {
            let offset = stable_hash(name.as_bytes()) % size as u64;
            let skip = stable_hash(format!("{name}#skip").as_bytes()) % (size as u64 - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; names.len()];
    let mut filled = 0;
    while filled < size {
        for (index, (offset, skip)) in permutations.iter().enumerate() {
            for _ in 0..turns[index] {
                loop {
                    let slot = ((offset + next[index] * skip) % size as u64) as usize;
                    next[index] += 1;
                    if slots[slot] == EMPTY {
                        slots[slot] = index as u32;
                        filled += 1;
                        break;
                    }
                }
                if filled == size {
                    return slots.into();
                }
            }
        }
    }
    slots.into()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:8080")).collect()
    }

    fn owners(table: &MaglevTable, names: &[String], keys: usize) -> Vec<String> {
        (0..keys).map(|k| names[table.pick(stable_hash(format!("key-{k}").as_bytes()))].clone()).collect()
    }

    #[test]
    fn slots_are_shared_evenly() {
        let names = names(5);
        let table = MaglevTable::new(&names, &[1; 5]);
        let mut counts = [0usize; 5];
        for slot in table.slots.iter() {
            counts[*slot as usize] += 1;
        }
        let fair = TABLE_SIZE / 5;
        assert!(counts.iter().all(|c| c.abs_diff(fair) <= fair / 50), "{counts:?}");
    }

    #[test]
    fn weights_skew_the_share() {
        let names = names(2);
        let table = MaglevTable::new(&names, &[3, 1]);
        let heavy = table.slots.iter().filter(|s| **s == 0).count();
        assert!((heavy as f64 / TABLE_SIZE as f64 - 0.75).abs() < 0.01, "{heavy}");
    }

    #[test]
    fn an_endpoint_leaving_moves_about_one_nth_of_the_keys() {
        for n in [3, 5, 10] {
            let all = names(n);
            let before = owners(&MaglevTable::new(&all, &vec![1; n]), &all, 20_000);
            let rest: Vec<String> = all.iter().filter(|name| **name != all[1]).cloned().collect();
            let after = owners(&MaglevTable::new(&rest, &vec![1; n - 1]), &rest, 20_000);
            let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count() as f64 / 20_000.0;
            let ideal = 1.0 / n as f64;
            assert!(moved >= ideal * 0.9 && moved <= ideal + 0.03, "n={n}: moved {moved}, ideal {ideal}");
        }
    }

    #[test]
    fn the_same_endpoints_give_the_same_table_in_any_process() {
        let names = names(4);
        let (a, b) = (MaglevTable::new(&names, &[1; 4]), MaglevTable::new(&names, &[1; 4]));
        assert_eq!(a.slots, b.slots);
    }
}
