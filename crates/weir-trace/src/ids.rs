//! Random trace and span ids: a per-thread splitmix64 generator seeded by the OS. Ids must be unique
//! and evenly spread (the sampler reads the trace id's bits), not secret.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

use crate::context::{SpanId, TraceId};

/// A splitmix64 sequence: fast and well mixed; seeded for reproducible tests.
#[derive(Debug, Clone)]
pub struct SplitMix {
    state: u64,
}

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    /// A trace id, never all zeroes.
    pub fn trace_id(&mut self) -> TraceId {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&self.next_u64().to_be_bytes());
        if id == [0; 16] { self.trace_id() } else { id }
    }

    /// A span id, never all zeroes.
    pub fn span_id(&mut self) -> SpanId {
        match self.next_u64() {
            0 => self.span_id(),
            n => n.to_be_bytes(),
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

thread_local! {
    static STATE: Cell<u64> = Cell::new(std::collections::hash_map::RandomState::new().build_hasher().finish());
}

/// Runs `f` on this thread's generator.
pub fn with_thread_ids<T>(f: impl FnOnce(&mut SplitMix) -> T) -> T {
    STATE.with(|state| {
        let mut ids = SplitMix::new(state.get());
        let out = f(&mut ids);
        state.set(ids.state);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_nonzero_and_distinct() {
        let mut ids = SplitMix::new(0);
        let (a, b) = (ids.trace_id(), ids.trace_id());
        assert_ne!(a, b);
        assert_ne!(a, [0; 16]);
        let spans: std::collections::HashSet<_> = (0..1000).map(|_| with_thread_ids(SplitMix::span_id)).collect();
        assert_eq!(spans.len(), 1000);
    }
}
