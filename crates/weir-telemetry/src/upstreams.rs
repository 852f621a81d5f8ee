//! Upstream endpoint state as metrics: health, ejections, requests in flight, latency estimate and
//! pool size per endpoint. Endpoints come and go with discovery and reloads, so these series are not
//! kept as handles: they are read from the clusters when `/metrics` is scraped, and an endpoint that
//! left simply stops appearing.

use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// One endpoint's state at scrape time.
#[derive(Debug, Clone)]
pub struct EndpointReport {
    pub endpoint: String,
    pub healthy: bool,
    pub ejected: bool,
    pub ejections_total: u64,
    pub in_flight: u32,
    pub latency_ewma_seconds: f64,
    pub pool_idle: usize,
    pub pool_open: usize,
}

/// One upstream's state at scrape time.
#[derive(Debug, Clone)]
pub struct ClusterReport {
    pub upstream: String,
    pub panic: bool,
    /// The circuit breaker, when the upstream has one.
    pub breaker: Option<BreakerCounts>,
    pub endpoints: Vec<EndpointReport>,
}

/// A circuit breaker's state and counters at scrape time.
#[derive(Debug, Clone, Copy)]
pub struct BreakerCounts {
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
    pub trips: u64,
    /// Changes into each state, in [`BREAKER_STATES`] order.
    pub entered: [u64; 3],
}

/// Where the reports come from: the gateway's current clusters.
pub type UpstreamSource = Box<dyn Fn() -> Vec<ClusterReport> + Send + Sync>;

#[derive(Default)]
pub(crate) struct UpstreamCollector {
    source: RwLock<Option<UpstreamSource>>,
}

impl UpstreamCollector {
    pub(crate) fn set_source(&self, source: UpstreamSource) {
        *self.source.write().unwrap_or_else(|p| p.into_inner()) = Some(source);
    }
}

impl std::fmt::Debug for UpstreamCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamCollector")
    }
}

fn endpoint_labels<'a>(cluster: &'a ClusterReport, endpoint: &'a EndpointReport) -> [(&'static str, &'a str); 2] {
    [("upstream", &cluster.upstream), ("endpoint", &endpoint.endpoint)]
}

type Value = fn(&EndpointReport) -> f64;

/// The per-endpoint gauges: name, help, value.
const ENDPOINT_GAUGES: [(&str, &str, Value); 6] = [
    ("upstream_endpoint_healthy", "1 while the active health check passes the endpoint", |e| {
        f64::from(u8::from(e.healthy))
    }),
    ("upstream_endpoint_ejected", "1 while outlier detection has the endpoint ejected", |e| {
        f64::from(u8::from(e.ejected))
    }),
    ("upstream_endpoint_in_flight", "Requests waiting for the endpoint's response head", |e| f64::from(e.in_flight)),
    ("upstream_endpoint_latency_ewma_seconds", "The endpoint's peak-EWMA latency estimate", |e| e.latency_ewma_seconds),
    ("upstream_pool_idle_connections", "Idle keep-alive connections to the endpoint", |e| e.pool_idle as f64),
    ("upstream_pool_open_connections", "Connections open to the endpoint, idle or busy", |e| e.pool_open as f64),
];

impl Collector for UpstreamCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let source = self.source.read().unwrap_or_else(|p| p.into_inner());
        let Some(source) = source.as_ref() else { return Ok(()) };
        let clusters = source();
        for (name, help, value) in ENDPOINT_GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (cluster, endpoint) in clusters.iter().flat_map(|c| c.endpoints.iter().map(move |e| (c, e))) {
                ConstGauge::new(value(endpoint)).encode(family.encode_family(&endpoint_labels(cluster, endpoint))?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "upstream_endpoint_ejections",
            "Times outlier detection ejected the endpoint",
            None,
            MetricType::Counter,
        )?;
        for cluster in &clusters {
            for endpoint in &cluster.endpoints {
                let labels = endpoint_labels(cluster, endpoint);
                ConstCounter::new(endpoint.ejections_total).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "upstream_panic",
            "1 while no endpoint of the upstream is eligible and traffic spreads over all of them",
            None,
            MetricType::Gauge,
        )?;
        for cluster in &clusters {
            ConstGauge::new(i64::from(cluster.panic))
                .encode(family.encode_family(&[("upstream", cluster.upstream.as_str())])?)?;
        }
        encode_breakers(&mut encoder, &clusters)
    }
}

/// The states a breaker is labelled with.
pub const BREAKER_STATES: [&str; 3] = ["closed", "open", "half_open"];

/// One series per state, 1 for the breaker's current one; the trips so far; and the changes into
/// each state.
fn encode_breakers(encoder: &mut DescriptorEncoder, clusters: &[ClusterReport]) -> Result<(), std::fmt::Error> {
    let with_breaker = || clusters.iter().filter_map(|c| c.breaker.map(|b| (c.upstream.as_str(), b)));
    let mut family = encoder.encode_descriptor(
        "upstream_breaker_state",
        "1 for the state the upstream's circuit breaker is in",
        None,
        MetricType::Gauge,
    )?;
    for (upstream, breaker) in with_breaker() {
        for candidate in BREAKER_STATES {
            let labels = [("upstream", upstream), ("state", candidate)];
            ConstGauge::new(i64::from(candidate == breaker.state)).encode(family.encode_family(&labels)?)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "upstream_breaker_trips",
        "Times the circuit breaker opened",
        None,
        MetricType::Counter,
    )?;
    for (upstream, breaker) in with_breaker() {
        ConstCounter::new(breaker.trips).encode(family.encode_family(&[("upstream", upstream)])?)?;
    }
    let mut family = encoder.encode_descriptor(
        "upstream_breaker_transitions",
        "Times the circuit breaker changed into each state",
        None,
        MetricType::Counter,
    )?;
    for (upstream, breaker) in with_breaker() {
        for (state, count) in BREAKER_STATES.into_iter().zip(breaker.entered) {
            let labels = [("upstream", upstream), ("to", state)];
            ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

pub(crate) fn collector() -> Arc<UpstreamCollector> {
    Arc::new(UpstreamCollector::default())
}
