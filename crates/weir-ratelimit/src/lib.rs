//! weir's rate limiter. [`gcra`] holds the math; [`LocalLimiter`] keeps one bucket per key in
//! memory with a hard bound on keys; [`redis`] decides global rules on a shared Redis, and
//! [`LeaseTable`] serves a global rule's leases (several requests per round trip) from memory.
//! The proxy's rate-limit stage builds the keys and turns decisions into responses; this crate
//! knows nothing about HTTP.

pub mod gcra;
mod lease;
mod local;
mod metrics;
pub mod redis;

pub use gcra::{Decision, Quota};
pub use lease::{LEASE_TTL, LeaseTable, Take};
pub use local::LocalLimiter;
pub use metrics::LocalMetrics;
pub use redis::{ClusterClient, Granted, RedisBackend, RedisClient, RedisError, RedisSettings};

/// Nanoseconds on a monotonic clock shared by every limiter in the process.
pub fn monotonic_nanos() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let epoch = EPOCH.get_or_init(std::time::Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}
