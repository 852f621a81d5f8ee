//! weir's metrics. Families are registered once per process; the handles a request touches (one
//! counter per status class, one histogram, one counter per refusal reason) are created when a
//! configuration is loaded, so serving a request only increments atomics and never formats a label.
//!
//! Creating the same handle twice (a later load of a route with the same name) returns the same
//! series, so counts carry on across loads.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

mod histogram;
mod reloads;
mod upstreams;

pub use histogram::DurationHistogram;
pub use reloads::ReloadMetrics;
pub use upstreams::{ClusterReport, EndpointReport, UpstreamSource};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    code_class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    route: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    refusals: Family<RefusalLabels, Counter>,
    durations: Family<RouteLabel, DurationHistogram>,
    connections_open: Family<ListenerLabel, Gauge>,
    connections: Family<ListenerLabel, Counter>,
    upstreams: Arc<upstreams::UpstreamCollector>,
    reloads: ReloadMetrics,
}

/// The status classes a response falls in, as labelled.
const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("weir");
        let requests = Family::default();
        registry.register("requests", "Requests answered, by route and status class", requests.clone());
        let refusals = Family::default();
        registry.register("refusals", "Requests weir answered itself, by route and reason", refusals.clone());
        let durations = Family::<RouteLabel, DurationHistogram>::default();
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to the end of its response body",
            durations.clone(),
        );
        let connections_open = Family::default();
        registry.register("connections_open", "Client connections open, by listener", connections_open.clone());
        let connections = Family::default();
        registry.register("connections", "Client connections accepted, by listener", connections.clone());
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").to_string() }).set(1);
        registry.register("build_info", "weir's version, as a label", build);
        let upstreams = upstreams::collector();
        registry.register_collector(Box::new(upstreams.clone()));
        let reloads = ReloadMetrics::register(&mut registry);
        Arc::new(Metrics { registry, requests, refusals, durations, connections_open, connections, upstreams, reloads })
    }

    /// The handles for one route (or `""` for requests that matched none). `reasons` lists every
    /// refusal reason, in the order [`RouteMetrics::refused`] will be called with.
    pub fn route(&self, route: &str, reasons: &[&str]) -> RouteMetrics {
        let classes = CODE_CLASSES.map(|class| {
            self.requests.get_or_create(&RequestLabels { route: route.into(), code_class: class.into() }).clone()
        });
        let refusals = reasons
            .iter()
            .map(|reason| {
                self.refusals.get_or_create(&RefusalLabels { route: route.into(), reason: (*reason).into() }).clone()
            })
            .collect();
        let duration = self.durations.get_or_create(&RouteLabel { route: route.into() }).clone();
        RouteMetrics { classes, refusals, duration }
    }

    /// The handles for one listener.
    pub fn listener(&self, listener: &str) -> ListenerMetrics {
        let label = ListenerLabel { listener: listener.into() };
        ListenerMetrics {
            open: self.connections_open.get_or_create(&label).clone(),
            accepted: self.connections.get_or_create(&label).clone(),
        }
    }

    /// The configuration reload series.
    pub fn reloads(&self) -> &ReloadMetrics {
        &self.reloads
    }

    /// Where the upstream endpoint series are read from at each scrape.
    pub fn report_upstreams(&self, source: UpstreamSource) {
        self.upstreams.set_source(source);
    }

    /// Every metric in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// What a request on one route touches.
#[derive(Clone)]
pub struct RouteMetrics {
    classes: [Counter; 5],
    refusals: Box<[Counter]>,
    duration: DurationHistogram,
}

impl RouteMetrics {
    /// Counts a response by its status code.
    pub fn answered(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.classes[class].inc();
    }

    /// Counts a refusal by the index of its reason in the list given to [`Metrics::route`].
    pub fn refused(&self, reason: usize) {
        if let Some(counter) = self.refusals.get(reason) {
            counter.inc();
        }
    }

    /// A timer for a request that arrived at `started`, to be finished when its response body ends.
    pub fn timer(&self, started: Instant) -> RequestTimer {
        RequestTimer { histogram: self.duration.clone(), started }
    }
}

/// Measures one request, from its arrival to the end of its response body.
pub struct RequestTimer {
    histogram: DurationHistogram,
    started: Instant,
}

impl RequestTimer {
    pub fn finish(self) {
        self.histogram.observe(self.started.elapsed());
    }
}

/// What a connection on one listener touches.
#[derive(Clone)]
pub struct ListenerMetrics {
    open: Gauge,
    accepted: Counter,
}

impl ListenerMetrics {
    /// Counts an accepted connection; the guard counts it closed when dropped.
    pub fn connection_opened(&self) -> OpenConnection {
        self.accepted.inc();
        self.open.inc();
        OpenConnection { open: self.open.clone() }
    }
}

/// Held by a connection for its life.
pub struct OpenConnection {
    open: Gauge,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.open.dec();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn duration_buckets_are_cumulative_with_sum_and_count() {
        let metrics = Metrics::new();
        let route = metrics.route("r", &[]);
        for millis in [0, 1, 3, 3, 40_000] {
            route.duration.observe(Duration::from_millis(millis));
        }
        let text = metrics.encode();
        for line in [
            "weir_request_duration_seconds_bucket{le=\"0.0005\",route=\"r\"} 1",
            "weir_request_duration_seconds_bucket{le=\"0.001\",route=\"r\"} 2",
            "weir_request_duration_seconds_bucket{le=\"0.002\",route=\"r\"} 2",
            "weir_request_duration_seconds_bucket{le=\"0.004\",route=\"r\"} 4",
            "weir_request_duration_seconds_bucket{le=\"16.384\",route=\"r\"} 4",
            "weir_request_duration_seconds_bucket{le=\"+Inf\",route=\"r\"} 5",
            "weir_request_duration_seconds_count{route=\"r\"} 5",
            "weir_request_duration_seconds_sum{route=\"r\"} 40.007",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn handles_count_into_their_series_and_survive_recreation() {
        let metrics = Metrics::new();
        let route = metrics.route("users", &["no_route", "connect_error"]);
        route.answered(200);
        route.answered(204);
        route.answered(503);
        route.refused(1);
        route.timer(Instant::now()).finish();
        // A later load creates the same handles again: the counts go on.
        metrics.route("users", &["no_route", "connect_error"]).answered(200);
        let listener = metrics.listener("public");
        let connection = listener.connection_opened();
        let text = metrics.encode();
        assert!(text.contains("weir_requests_total{route=\"users\",code_class=\"2xx\"} 3"), "{text}");
        assert!(text.contains("weir_requests_total{route=\"users\",code_class=\"5xx\"} 1"), "{text}");
        assert!(text.contains("weir_refusals_total{route=\"users\",reason=\"connect_error\"} 1"), "{text}");
        assert!(text.contains("weir_refusals_total{route=\"users\",reason=\"no_route\"} 0"), "{text}");
        assert!(text.contains("weir_request_duration_seconds_count{route=\"users\"} 1"), "{text}");
        assert!(text.contains("weir_request_duration_seconds_bucket{le=\"+Inf\",route=\"users\"} 1"), "{text}");
        assert!(text.contains("weir_connections_open{listener=\"public\"} 1"), "{text}");
        assert!(text.contains("weir_build_info{version=\""), "{text}");
        drop(connection);
        assert!(metrics.encode().contains("weir_connections_open{listener=\"public\"} 0"));
    }
}
