//! What operators can read about upstreams: the clusters of the serving snapshot as metric reports
//! (scraped through `/metrics`) and as JSON (the admin API's `/upstreams`).

use std::fmt::Write as _;
use std::sync::{Arc, Weak};

use weir_resilience::breaker::BreakerState;
use weir_telemetry::{BreakerCounts, ClusterReport, EndpointReport, UpstreamSource};
use weir_upstream::{BalancePolicy, ClusterStatus};

use crate::server::Gateway;
use crate::snapshot::Snapshot;

/// The source `/metrics` reads endpoint series from; it holds the gateway weakly, so the metrics
/// the gateway owns do not keep it alive.
pub fn metrics_source(gateway: &Arc<Gateway>) -> UpstreamSource {
    let gateway: Weak<Gateway> = Arc::downgrade(gateway);
    Box::new(move || gateway.upgrade().map(|g| reports(&g.snapshot())).unwrap_or_default())
}

fn statuses(snapshot: &Snapshot) -> Vec<(&str, ClusterStatus)> {
    let mut clusters: Vec<_> = snapshot.clusters.iter().map(|(name, c)| (name.as_str(), c.status())).collect();
    clusters.sort_by(|a, b| a.0.cmp(b.0));
    clusters
}

fn reports(snapshot: &Snapshot) -> Vec<ClusterReport> {
    statuses(snapshot)
        .into_iter()
        .map(|(name, status)| ClusterReport {
            upstream: name.to_string(),
            panic: status.panic,
            breaker: snapshot.clusters[name].breaker().map(|breaker| {
                let report = breaker.report(tokio::time::Instant::now());
                let state = breaker_state_name(report.state);
                BreakerCounts { state, trips: report.trips_total, entered: report.entered }
            }),
            endpoints: status
                .endpoints
                .iter()
                .map(|e| EndpointReport {
                    endpoint: e.addr.to_string(),
                    healthy: e.healthy,
                    ejected: e.ejected_for.is_some(),
                    ejections_total: e.ejections_total,
                    in_flight: e.in_flight,
                    latency_ewma_seconds: e.latency_ewma.as_secs_f64(),
                    pool_idle: e.pool_idle,
                    pool_open: e.pool_open,
                })
                .collect(),
        })
        .collect()
}

/// `/upstreams`: every upstream with its balancer and endpoints, as JSON. Upstream names and
/// addresses need no escaping: names are validated to letters, digits, `-`, `_` and `.`.
pub fn json(snapshot: &Snapshot) -> String {
    let mut out = String::from("{\"upstreams\":[");
    for (i, (name, status)) in statuses(snapshot).iter().enumerate() {
        let comma = if i > 0 { "," } else { "" };
        let _ = write!(
            out,
            "{comma}{{\"name\":\"{name}\",\"balance\":\"{}\",\"panic\":{},\"breaker\":{},\"endpoints\":[",
            balance_name(status.balance),
            status.panic,
            breaker_json(status.breaker),
        );
        for (j, e) in status.endpoints.iter().enumerate() {
            let comma = if j > 0 { "," } else { "" };
            let ejected_for = e.ejected_for.map_or("null".to_string(), |d| format!("{:.3}", d.as_secs_f64()));
            let _ = write!(
                out,
                "{comma}{{\"address\":\"{}\",\"weight\":{},\"healthy\":{},\"ejected_for_seconds\":{ejected_for},\"ejections_total\":{},\"in_flight\":{},\"latency_ewma_seconds\":{:.6},\"pool_idle\":{},\"pool_open\":{}}}",
                e.addr,
                e.weight,
                e.healthy,
                e.ejections_total,
                e.in_flight,
                e.latency_ewma.as_secs_f64(),
                e.pool_idle,
                e.pool_open
            );
        }
        out.push_str("]}");
    }
    out.push_str("]}\n");
    out
}

fn breaker_json(breaker: Option<(BreakerState, u64)>) -> String {
    match breaker {
        None => "null".into(),
        Some((state, trips)) => format!("{{\"state\":\"{}\",\"trips_total\":{trips}}}", breaker_state_name(state)),
    }
}

pub fn breaker_state_name(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half_open",
    }
}

fn balance_name(policy: BalancePolicy) -> &'static str {
    match policy {
        BalancePolicy::RoundRobin => "round_robin",
        BalancePolicy::Random => "random",
        BalancePolicy::LeastRequest => "least_request",
        BalancePolicy::ConsistentHash => "consistent_hash",
    }
}
