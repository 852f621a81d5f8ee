//! Rate-limit metrics: decisions by rule and outcome, each local limiter's keys against its bound
//! and how often the bound bites, and for global rules Redis errors and round-trip latency. Labels
//! are `scope` (the route's name, or `global` for rules every route applies) and `rule`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::DurationHistogram;

/// The outcomes a decision is counted under, in [`RuleMetrics::decided`] index order.
pub const OUTCOMES: [&str; 4] = ["allowed", "limited", "exempt", "no_key"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    scope: String,
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    scope: String,
    rule: String,
    outcome: String,
}

/// The rate-limit families, registered once.
pub(crate) struct RateLimitFamilies {
    decisions: Family<DecisionLabels, Counter>,
    keys: Family<RuleLabels, Gauge>,
    capacity: Family<RuleLabels, Gauge>,
    memory: Family<RuleLabels, Gauge>,
    evictions: Family<RuleLabels, Counter>,
    overflowed: Family<RuleLabels, Counter>,
    redis_errors: Family<RuleLabels, Counter>,
    redis_latency: Family<RuleLabels, DurationHistogram>,
}

impl RateLimitFamilies {
    pub(crate) fn register(registry: &mut Registry) -> RateLimitFamilies {
        let families = RateLimitFamilies {
            decisions: Family::default(),
            keys: Family::default(),
            capacity: Family::default(),
            memory: Family::default(),
            evictions: Family::default(),
            overflowed: Family::default(),
            redis_errors: Family::default(),
            redis_latency: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("ratelimit");
        r.register("decisions", "Rate-limit decisions, by rule and outcome", families.decisions.clone());
        r.register("keys", "Keys a local limiter remembers", families.keys.clone());
        r.register("key_capacity", "The most keys a local limiter remembers", families.capacity.clone());
        r.register("memory_bytes", "Bytes a local limiter's key tables take", families.memory.clone());
        r.register("evictions", "Keys forgotten to make room (their burst was whole)", families.evictions.clone());
        r.register(
            "overflow_decisions",
            "Decisions made on a shard's shared overflow bucket because the key budget was full",
            families.overflowed.clone(),
        );
        r.register("redis_errors", "Global decisions Redis failed or answered too late", families.redis_errors.clone());
        r.register(
            "redis_duration_seconds",
            "Round trips to Redis for global decisions",
            families.redis_latency.clone(),
        );
        families
    }

    pub(crate) fn rule(&self, scope: &str, rule: &str) -> RuleMetrics {
        let labels = RuleLabels { scope: scope.into(), rule: rule.into() };
        let outcome = |outcome: &str| {
            let labels = DecisionLabels { scope: scope.into(), rule: rule.into(), outcome: outcome.into() };
            self.decisions.get_or_create(&labels).clone()
        };
        RuleMetrics {
            decisions: OUTCOMES.map(outcome),
            keys: self.keys.get_or_create(&labels).clone(),
            capacity: self.capacity.get_or_create(&labels).clone(),
            memory_bytes: self.memory.get_or_create(&labels).clone(),
            evictions: self.evictions.get_or_create(&labels).clone(),
            overflowed: self.overflowed.get_or_create(&labels).clone(),
            redis_errors: self.redis_errors.get_or_create(&labels).clone(),
            redis_latency: self.redis_latency.get_or_create(&labels).clone(),
        }
    }
}

/// What one rule's decisions touch. The local-limiter handles are public so the limiter can hold
/// them directly.
#[derive(Clone, Default)]
pub struct RuleMetrics {
    decisions: [Counter; 4],
    pub keys: Gauge,
    pub capacity: Gauge,
    pub memory_bytes: Gauge,
    pub evictions: Counter,
    pub overflowed: Counter,
    pub redis_errors: Counter,
    pub redis_latency: DurationHistogram,
}

impl RuleMetrics {
    /// The decisions counted so far, in [`OUTCOMES`] order.
    pub fn decisions(&self) -> [u64; 4] {
        self.decisions.each_ref().map(Counter::get)
    }

    /// Counts a decision by the index of its outcome in [`OUTCOMES`].
    pub fn decided(&self, outcome: usize) {
        if let Some(counter) = self.decisions.get(outcome) {
            counter.inc();
        }
    }
}
