//! weir's rate limiter. [`gcra`] holds the math; [`LocalLimiter`] keeps one bucket per key in
//! memory with a hard bound on keys. The proxy's rate-limit stage builds the keys and turns
//! decisions into responses; this crate knows nothing about HTTP.

pub mod gcra;
mod local;
mod metrics;

pub use gcra::{Decision, Quota};
pub use local::LocalLimiter;
pub use metrics::LocalMetrics;
