//! The generic cell rate algorithm (GCRA): one number per key, the theoretical arrival time (TAT) of
//! the next request if the key sent at exactly its rate. A request is allowed when taking it would
//! not push the TAT further than `burst` intervals past now. Pure functions over explicit instants
//! (nanoseconds on any monotonic clock), so both the local limiter and tests drive time themselves.

/// A rate and a burst, as intervals in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Time one request "costs": the period divided by the rate.
    interval: u64,
    /// How far ahead of now the TAT may run: `burst` intervals.
    tolerance: u64,
    burst: u32,
}

impl Quota {
    /// `count` requests per `period_ns`, at most `burst` at once. `count`, `period_ns` and `burst`
    /// must be above zero (configuration validation guarantees it).
    pub fn new(count: u64, period_ns: u64, burst: u32) -> Quota {
        let interval = (period_ns / count.max(1)).max(1);
        Quota { interval, tolerance: interval.saturating_mul(u64::from(burst.max(1))), burst: burst.max(1) }
    }

    /// Nanoseconds one request costs.
    pub fn interval(&self) -> u64 {
        self.interval
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Nanoseconds an idle key needs to go from empty to a full burst.
    pub fn tolerance(&self) -> u64 {
        self.tolerance
    }
}

/// The outcome of one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests the key may still send right now.
    pub remaining: u32,
    /// When refused: nanoseconds until one request would be allowed; 0 when allowed.
    pub retry_after: u64,
    /// Nanoseconds until the key's burst is whole again.
    pub reset_after: u64,
}

/// Decides one request arriving at `now` for a key whose TAT is `tat` (0 for a key never seen).
/// Returns the decision and the key's new TAT (unchanged when refused).
pub fn decide(tat: u64, now: u64, quota: &Quota) -> (Decision, u64) {
    let start = tat.max(now);
    let next = start.saturating_add(quota.interval);
    let ahead = next - now;
    if ahead > quota.tolerance {
        let decision =
            Decision { allowed: false, remaining: 0, retry_after: ahead - quota.tolerance, reset_after: start - now };
        return (decision, tat);
    }
    let remaining = ((quota.tolerance - ahead) / quota.interval) as u32;
    (Decision { allowed: true, remaining, retry_after: 0, reset_after: ahead }, next)
}

/// Whether a key with this TAT has its whole burst back at `now`: forgetting it loses nothing.
pub fn is_full(tat: u64, now: u64) -> bool {
    tat <= now
}

#[cfg(test)]
mod tests;
