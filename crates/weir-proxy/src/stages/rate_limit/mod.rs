//! The rate-limit stage: after route matching and before the route's action, every rule the route
//! applies (the global `rate_limit.rules` first, then the route's own) decides on the request's key,
//! in order; the first to refuse answers 429 and names itself. Rules that ask for it add their
//! `RateLimit-Policy` and `RateLimit` fields to allowed responses.
//!
//! A request is charged by the rules before the one that refused it: with several rules, a refused
//! request may still have used budget in the earlier ones.

pub mod carry;
mod exempt;
mod fields;
mod key;
mod report;
mod rule;

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response};
use weir_config::values::Cidr;
use weir_config::{Config, Route as RouteConfig};
use weir_ratelimit::{Decision, RedisBackend, RedisSettings};
use weir_telemetry::{Metrics, RouteMetrics};

use crate::body::ResponseBody;
use crate::forward::Peer;
use crate::refusal::Refusal;

use carry::Rebuild;
use key::RequestView;
pub use key::client_ip;
pub use report::rules_json;
pub use rule::Rule;

/// Rules every route applies, compiled once per load so their buckets are shared by all routes.
/// The Redis client global rules share is made here too: one pipelined connection (per node) per
/// snapshot.
pub struct SharedRules {
    rules: Vec<Arc<Rule>>,
    trusted_proxies: Arc<[Cidr]>,
    redis: Option<RedisBackend>,
}

impl SharedRules {
    pub fn build(config: &Config, metrics: &Metrics, limiters: &mut Rebuild<'_>) -> SharedRules {
        let limits = &config.rate_limit;
        let redis = limits.redis.as_ref().map(|redis| {
            let settings = RedisSettings {
                host: redis.address.host.clone(),
                port: redis.address.port,
                connect_timeout: redis.connect_timeout.0,
            };
            RedisBackend::new(settings, redis.cluster)
        });
        let build = |rule| Arc::new(Rule::build(rule, limits, None, "global", redis.as_ref(), metrics, limiters));
        let rules = limits.rules.iter().map(build).collect();
        SharedRules { rules, trusted_proxies: config.server.trusted_proxies.clone().into(), redis }
    }
}

/// One route's rate-limit stage; the default applies no rule.
#[derive(Default)]
pub struct RateLimitStage {
    route: Arc<str>,
    rules: Box<[Arc<Rule>]>,
    /// No rule asks Redis: requests are decided without a future of their own.
    local_only: bool,
    trusted_proxies: Arc<[Cidr]>,
}

impl RateLimitStage {
    pub fn build(
        shared: &SharedRules,
        config: &Config,
        route: &RouteConfig,
        name: &Arc<str>,
        metrics: &Metrics,
        limiters: &mut Rebuild<'_>,
    ) -> RateLimitStage {
        let template = route.matches.path_template.as_deref();
        let redis = shared.redis.as_ref();
        let build = |rule| Arc::new(Rule::build(rule, &config.rate_limit, template, name, redis, metrics, limiters));
        let own = route.rate_limit.iter().map(build);
        let rules: Box<[Arc<Rule>]> = shared.rules.iter().cloned().chain(own).collect();
        RateLimitStage {
            route: name.clone(),
            local_only: rules.iter().all(|rule| rule.is_local()),
            rules,
            trusted_proxies: shared.trusted_proxies.clone(),
        }
    }

    /// The rules the route applies, global ones first.
    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    /// Decides a request on every rule, in order. `Err` carries the refusing rule's decision.
    pub async fn check(&self, peer: &Peer, parts: &Parts) -> Result<Admission, Limited> {
        if self.rules.is_empty() {
            return Ok(Admission::default());
        }
        if self.local_only {
            return self.decide_here(peer, parts);
        }
        // Boxed: deciding may wait on Redis, and that future inlined would make every request's
        // stages (limited or not) kilobytes larger to allocate.
        Box::pin(self.decide(peer, parts)).await
    }

    async fn decide(&self, peer: &Peer, parts: &Parts) -> Result<Admission, Limited> {
        let mut admission = Admission::default();
        let view = RequestView::new(parts, &self.route, peer, &self.trusted_proxies);
        for rule in &self.rules {
            admit(rule, rule.decide(&view).await, &view, &mut admission)?;
        }
        Ok(admission)
    }

    /// [`Self::decide`] for rules that all decide in this process: nothing to wait for.
    fn decide_here(&self, peer: &Peer, parts: &Parts) -> Result<Admission, Limited> {
        let mut admission = Admission::default();
        let view = RequestView::new(parts, &self.route, peer, &self.trusted_proxies);
        for rule in &self.rules {
            admit(rule, rule.decide_here(&view), &view, &mut admission)?;
        }
        Ok(admission)
    }
}

/// Applies one rule's decision: a refusal ends the check; an allowed request may collect the
/// rule's response fields.
fn admit(
    rule: &Arc<Rule>,
    decision: Option<Decision>,
    view: &RequestView<'_>,
    admission: &mut Admission,
) -> Result<(), Limited> {
    let Some(decision) = decision else { return Ok(()) };
    if !decision.allowed {
        tracing::debug!(rule = &*rule.name, client = %view.client_ip, "rate limited");
        return Err(Limited { rule: rule.clone(), decision });
    }
    if rule.response_headers {
        admission.fields.push((rule.policy.clone(), fields::state(&rule.name, &decision)));
    }
    Ok(())
}

/// What an allowed request's response carries back: the fields of the rules that asked for them.
#[derive(Default)]
pub struct Admission {
    fields: Vec<(HeaderValue, HeaderValue)>,
}

impl Admission {
    pub fn apply(self, headers: &mut HeaderMap) {
        for (policy, state) in self.fields {
            headers.append(fields::RATELIMIT_POLICY.clone(), policy);
            headers.append(fields::RATELIMIT.clone(), state);
        }
    }
}

/// A request a rule refused.
pub struct Limited {
    rule: Arc<Rule>,
    decision: Decision,
}

impl Limited {
    /// The 429, counted as a refusal on the route: `Retry-After`, the refusing rule's fields, and
    /// its name in the body.
    pub fn into_response(self, route: &RouteMetrics) -> Response<ResponseBody> {
        route.refused(Refusal::RateLimited.reason_index());
        let retry_after = fields::seconds_up(self.decision.retry_after).max(1);
        let mut response = Refusal::rate_limited(&self.rule.name, retry_after);
        let headers = response.headers_mut();
        headers.append(fields::RATELIMIT_POLICY.clone(), self.rule.policy.clone());
        headers.append(fields::RATELIMIT.clone(), fields::state(&self.rule.name, &self.decision));
        response
    }
}

#[cfg(test)]
mod tests;
