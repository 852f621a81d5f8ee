//! The admin API's views of live state: `/breakers` (every circuit breaker, read from the clusters
//! of the serving snapshot) and `/ratelimits` (every rate-limit rule, read from its limiter, its
//! counters and its Redis client). Rendered at each request, never cached: what they show is what
//! the data plane is doing now.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use weir_resilience::breaker::BreakerReport;

use crate::snapshot::Snapshot;
use crate::stages::rate_limit::rules_json;
use crate::upstream_status::breaker_state_name;

/// `/breakers`: one entry per upstream with a breaker, by upstream name. Breakers guard whole
/// upstreams, so `endpoint` is always null; the field is there for per-endpoint breakers.
pub fn breakers(snapshot: &Snapshot) -> Vec<u8> {
    let now = tokio::time::Instant::now();
    let wall = SystemTime::now();
    let mut upstreams: Vec<_> = snapshot.clusters.iter().collect();
    upstreams.sort_by(|a, b| a.0.cmp(b.0));
    let breakers: Vec<Value> = upstreams
        .into_iter()
        .filter_map(|(name, cluster)| Some(breaker_json(name, &cluster.breaker()?.report(now), wall)))
        .collect();
    pretty(&json!({ "breakers": breakers }))
}

fn breaker_json(upstream: &str, report: &BreakerReport, wall: SystemTime) -> Value {
    let settings = &report.settings;
    let [closed, open, half_open] = report.entered;
    json!({
        "upstream": upstream,
        "endpoint": null,
        "state": breaker_state_name(report.state),
        "since_unix_seconds": unix_seconds(wall.checked_sub(report.in_state_for).unwrap_or(wall)),
        "seconds_in_state": report.in_state_for.as_secs_f64(),
        "window": {
            "seconds": settings.window.as_secs_f64(),
            "calls": report.window_calls,
            "failures": report.window_failures,
            "slow_calls": report.window_slow,
            "failure_percent": report.failure_percent(),
        },
        "trips_total": report.trips_total,
        "transitions": { "closed": closed, "open": open, "half_open": half_open },
        "half_open_in_seconds": report.half_open_in.map(|d| d.as_secs_f64()),
        "next_half_open_unix_seconds": report.half_open_in.map(|d| unix_seconds(wall + d)),
        "settings": {
            "failure_rate_percent": settings.failure_rate,
            "slow_call_rate_percent": settings.slow_call_rate,
            "slow_call_seconds": settings.slow_call_duration.as_secs_f64(),
            "min_calls": settings.min_calls,
            "open_for_seconds": settings.open_for.as_secs_f64(),
            "max_open_for_seconds": settings.max_open_for.as_secs_f64(),
            "half_open_probes": settings.half_open_probes,
        },
    })
}

/// `/ratelimits`: every rule the routes apply, global rules first.
pub fn rate_limits(snapshot: &Snapshot) -> Vec<u8> {
    pretty(&rules_json(snapshot.routes.iter().map(|route| &route.rate_limit)))
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs_f64()
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(value).unwrap_or_default();
    text.push(b'\n');
    text
}
