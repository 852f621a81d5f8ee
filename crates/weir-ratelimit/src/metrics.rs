//! What a limiter reports to operators: how many keys it remembers against its bound, and how often
//! the bound bites (keys forgotten, decisions made on a shard's shared overflow bucket). The handles
//! are made by the caller when a configuration is loaded; by default they count into nothing.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// The handles one local limiter updates.
#[derive(Clone, Default)]
pub struct LocalMetrics {
    /// Keys remembered now.
    pub keys: Gauge,
    /// The most keys the limiter remembers.
    pub capacity: Gauge,
    /// Bytes the limiter's tables take, set aside in full when it is made.
    pub memory_bytes: Gauge,
    /// Keys forgotten to make room (only keys whose burst was whole again).
    pub evictions: Counter,
    /// Decisions made on a shard's overflow bucket because the shard was full of busy keys.
    pub overflowed: Counter,
}
