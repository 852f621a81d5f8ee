//! One compiled rule: its key, its exemptions, its local limiter, and its metric handles.

use std::sync::Arc;

use http::HeaderValue;
use weir_config::ratelimit::{RateLimitRule, RateLimits};
use weir_ratelimit::{Decision, LocalLimiter, LocalMetrics, Quota, monotonic_nanos};
use weir_telemetry::{Metrics, RuleMetrics};

use super::exempt::Exemption;
use super::fields;
use super::key::{HashSink, KeySpec, RequestView};

/// Outcome indexes into [`weir_telemetry::RATE_LIMIT_OUTCOMES`].
const ALLOWED: usize = 0;
const LIMITED: usize = 1;
const EXEMPT: usize = 2;
const NO_KEY: usize = 3;

/// A rule ready to decide requests.
pub struct Rule {
    pub name: Arc<str>,
    key: KeySpec,
    exemption: Exemption,
    limiter: LocalLimiter,
    pub response_headers: bool,
    /// This rule's `RateLimit-Policy` member.
    pub policy: HeaderValue,
    metrics: RuleMetrics,
}

impl Rule {
    /// Compiles a rule applied in `scope` (a route's name, or `global`); `template` is the route's
    /// path template, for path keys.
    pub fn build(
        rule: &RateLimitRule,
        limits: &RateLimits,
        template: Option<&str>,
        scope: &str,
        metrics: &Metrics,
    ) -> Rule {
        let name: Arc<str> = rule.display_name().into();
        let metrics = metrics.rate_limit_rule(scope, &name);
        let period = u64::try_from(rule.rate.period.as_nanos()).unwrap_or(u64::MAX);
        let quota = Quota::new(rule.rate.count, period, rule.effective_burst());
        let local_metrics = LocalMetrics {
            keys: metrics.keys.clone(),
            capacity: metrics.capacity.clone(),
            evictions: metrics.evictions.clone(),
            overflowed: metrics.overflowed.clone(),
        };
        Rule {
            policy: fields::policy(&name, &rule.rate),
            name,
            key: KeySpec::new(&rule.key, template),
            exemption: Exemption::new(&rule.exempt),
            limiter: LocalLimiter::new(quota, rule.max_keys.unwrap_or(limits.max_keys), local_metrics),
            response_headers: rule.response_headers,
            metrics,
        }
    }

    /// Decides one request; `None` when the rule does not apply (exempt, or a key part missing).
    pub async fn decide(&self, view: &RequestView<'_>) -> Option<Decision> {
        if self.exemption.applies(view) {
            self.metrics.decided(EXEMPT);
            return None;
        }
        let mut sink = HashSink(self.limiter.key_hasher());
        if !self.key.build(view, &mut sink) {
            self.metrics.decided(NO_KEY);
            return None;
        }
        let decision = self.limiter.check(std::hash::Hasher::finish(&sink.0), monotonic_nanos());
        self.metrics.decided(if decision.allowed { ALLOWED } else { LIMITED });
        Some(decision)
    }
}
