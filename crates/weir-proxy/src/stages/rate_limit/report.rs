//! What the admin API's `/ratelimits` shows of each rule: its settings (fixed at load) next to what
//! it is doing now (keys its local limiter tracks, decisions so far, Redis's state), read from the
//! live limiter, counters and Redis client at each request.

use std::sync::Arc;

use serde_json::{Value, json};
use weir_config::ratelimit::{LimitMode, RateLimitRule, RedisFailure};
use weir_telemetry::RATE_LIMIT_OUTCOMES;

use super::RateLimitStage;
use super::rule::Rule;

/// A rule's settings as shown to operators.
pub(crate) struct RuleSettings {
    /// The route's name, or `global`.
    scope: Arc<str>,
    mode: LimitMode,
    count: u64,
    period_seconds: u64,
    burst: u32,
    key: Vec<String>,
}

impl RuleSettings {
    pub(super) fn of(rule: &RateLimitRule, scope: &str) -> RuleSettings {
        RuleSettings {
            scope: scope.into(),
            mode: rule.mode,
            count: rule.rate.count,
            period_seconds: rule.rate.period.as_secs(),
            burst: rule.effective_burst(),
            key: rule.key.iter().map(ToString::to_string).collect(),
        }
    }
}

/// Every rule the routes apply, each once (global rules are shared by all routes), global first.
pub fn rules_json<'a>(stages: impl Iterator<Item = &'a RateLimitStage>) -> Value {
    let mut seen: Vec<&Arc<Rule>> = Vec::new();
    for rule in stages.flat_map(RateLimitStage::rules) {
        if !seen.iter().any(|known| Arc::ptr_eq(known, rule)) {
            seen.push(rule);
        }
    }
    json!({ "rules": seen.iter().map(|rule| rule_json(rule)).collect::<Vec<_>>() })
}

fn rule_json(rule: &Rule) -> Value {
    let settings = &rule.settings;
    let global_scope = &*settings.scope == "global";
    let decisions = rule.metrics.decisions();
    let decisions: serde_json::Map<String, Value> =
        RATE_LIMIT_OUTCOMES.iter().zip(decisions).map(|(outcome, count)| ((*outcome).into(), json!(count))).collect();
    json!({
        "name": &*rule.name,
        "scope": if global_scope { "global" } else { "route" },
        "route": (!global_scope).then(|| &*settings.scope),
        "backend": match settings.mode { LimitMode::Local => "local", LimitMode::Global => "redis" },
        "rate": { "count": settings.count, "period_seconds": settings.period_seconds },
        "burst": settings.burst,
        "key": settings.key,
        "tracked_keys": rule.limiter.len(),
        "max_keys": rule.limiter.max_keys(),
        "decisions": decisions,
        "redis": rule.global.as_ref().map(|global| json!({
            "on_error": match global.on_error { RedisFailure::Local => "local", RedisFailure::Refuse => "refuse" },
            "connected": global.client.is_connected(),
            "errors_total": rule.metrics.redis_errors.get(),
            "lease": global.lease_size(),
            "leased_keys": global.leased_keys(),
        })),
    })
}
