//! weir's metrics. Families are registered once per process; the handles a request touches (one
//! counter per status class, one histogram, one counter per refusal reason) are created when a
//! configuration is loaded, so serving a request only increments atomics and never formats a label.
//!
//! Creating the same handle twice (a later load of a route with the same name) returns the same
//! series, so counts carry on across loads.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub mod access_log;
mod concurrency;
mod faults;
mod histogram;
mod methods;
mod ratelimit;
mod reloads;
mod route;
pub mod text_format;
mod tls;
pub mod trace_context;
mod traces;
mod tunnels;
mod upstreams;

pub use concurrency::{ConcurrencyMetrics, SHED_CAUSES};
pub use faults::{EXPERIMENT_EVENTS, ExperimentMetrics, FAULT_KINDS, FaultCounters, fault_kinds_name};
pub use histogram::DurationHistogram;
pub use methods::METHODS;
pub use prometheus_client::metrics::counter::Counter;
pub use ratelimit::{OUTCOMES as RATE_LIMIT_OUTCOMES, RuleMetrics};
pub use reloads::ReloadMetrics;
use route::RouteFamilies;
pub use route::{RequestTimer, RouteMetrics};
pub use tls::{HANDSHAKE_RESULTS, HandshakeFailure, TLS_VERSIONS, TlsMetrics};
pub use traces::{SPAN_DROP_REASONS, TraceMetrics};
pub use tunnels::TunnelMetrics;
pub use upstreams::{BREAKER_STATES, BreakerCounts, ClusterReport, EndpointReport, UpstreamSource};

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
pub(crate) struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Http2ErrorLabels {
    listener: String,
    scope: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    listener: String,
    protocol: String,
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
    route_families: RouteFamilies,
    connections_open: Family<ListenerLabel, Gauge>,
    connections_parked: Family<ListenerLabel, Gauge>,
    connections: Family<ListenerLabel, Counter>,
    rate_limits: ratelimit::RateLimitFamilies,
    upstreams: Arc<upstreams::UpstreamCollector>,
    http_connections: Family<ProtocolLabels, Counter>,
    http_connections_open: Family<ProtocolLabels, Gauge>,
    http2_errors: Family<Http2ErrorLabels, Counter>,
    access_log_dropped: Counter,
    reloads: ReloadMetrics,
    concurrency: concurrency::ConcurrencyFamilies,
    faults: faults::FaultFamilies,
    tunnels: tunnels::TunnelFamilies,
    traces: TraceMetrics,
    tls: tls::TlsFamilies,
}

/// The protocols connections are labelled with, in [`ListenerMetrics::protocol_seen`] order.
const PROTOCOLS: [&str; 2] = ["http1", "http2"];

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
        let route_families = RouteFamilies::register(&mut registry);
        let connections_open = Family::default();
        registry.register("connections_open", "Client connections open, by listener", connections_open.clone());
        let connections_parked = Family::default();
        registry.register(
            "connections_parked",
            "Idle client connections waiting in their listener's shared poller, by listener",
            connections_parked.clone(),
        );
        let connections = Family::default();
        registry.register("connections", "Client connections accepted, by listener", connections.clone());
        let http_connections = Family::default();
        registry.register(
            "http_connections",
            "Client connections that sent a request, by listener and protocol",
            http_connections.clone(),
        );
        let http_connections_open = Family::default();
        registry.register(
            "http_connections_open",
            "Client connections open that sent a request, by listener and protocol",
            http_connections_open.clone(),
        );
        let http2_errors = Family::default();
        registry.register(
            "http2_errors",
            "HTTP/2 protocol errors weir ended a stream (RST_STREAM) or a connection (GOAWAY) with, by listener, scope and error code",
            http2_errors.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").to_string() }).set(1);
        registry.register("build_info", "weir's version, as a label", build);
        let rate_limits = ratelimit::RateLimitFamilies::register(&mut registry);
        let upstreams = upstreams::collector();
        registry.register_collector(Box::new(upstreams.clone()));
        let access_log_dropped = Counter::default();
        registry.register(
            "access_log_dropped",
            "Access-log lines dropped because the writer's queue was full",
            access_log_dropped.clone(),
        );
        let reloads = ReloadMetrics::register(&mut registry);
        let concurrency = concurrency::ConcurrencyFamilies::register(&mut registry);
        let faults = faults::FaultFamilies::register(&mut registry);
        let tunnels = tunnels::TunnelFamilies::register(&mut registry);
        let traces = TraceMetrics::register(&mut registry);
        let tls = tls::TlsFamilies::register(&mut registry);
        Arc::new(Metrics {
            registry,
            requests,
            refusals,
            durations,
            route_families,
            connections_open,
            connections_parked,
            connections,
            http_connections,
            http_connections_open,
            http2_errors,
            access_log_dropped,
            rate_limits,
            upstreams,
            reloads,
            concurrency,
            faults,
            tunnels,
            traces,
            tls,
        })
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
        let label = RouteLabel { route: route.into() };
        let duration = self.durations.get_or_create(&label).clone();
        RouteMetrics::new(classes, refusals, duration, self.route_families.handles(&label))
    }

    /// The handles for one listener.
    pub fn listener(&self, listener: &str) -> ListenerMetrics {
        let label = ListenerLabel { listener: listener.into() };
        let protocols = PROTOCOLS.map(|protocol| {
            let labels = ProtocolLabels { listener: listener.into(), protocol: protocol.into() };
            (
                self.http_connections.get_or_create(&labels).clone(),
                self.http_connections_open.get_or_create(&labels).clone(),
            )
        });
        ListenerMetrics {
            open: self.connections_open.get_or_create(&label).clone(),
            parked: self.connections_parked.get_or_create(&label).clone(),
            accepted: self.connections.get_or_create(&label).clone(),
            protocols: Arc::new(protocols),
            name: listener.into(),
            http2_errors: self.http2_errors.clone(),
        }
    }

    /// The handles for one rate-limit rule; `scope` is the route's name, or `global`.
    pub fn rate_limit_rule(&self, scope: &str, rule: &str) -> RuleMetrics {
        self.rate_limits.rule(scope, rule)
    }

    /// The handles for one concurrency limit; `scope` is `route` or `upstream`.
    pub fn concurrency_limit(&self, scope: &str, name: &str) -> ConcurrencyMetrics {
        self.concurrency.limit(scope, name)
    }

    /// The injected-fault counters of one target (`target_type` `route` or `upstream`) and source.
    pub fn fault_counters(&self, target_type: &str, target: &str, source: &str) -> FaultCounters {
        self.faults.counters(target_type, target, source)
    }

    /// The WebSocket tunnel handles of one route.
    pub fn tunnels(&self, route: &str) -> TunnelMetrics {
        self.tunnels.route(route)
    }

    /// The fault-experiment series.
    pub fn fault_experiments(&self) -> ExperimentMetrics {
        self.faults.experiments()
    }

    /// The TLS handles for one listener.
    pub fn tls_listener(&self, listener: &str) -> TlsMetrics {
        self.tls.listener(listener)
    }

    /// The configuration reload series.
    pub fn reloads(&self) -> &ReloadMetrics {
        &self.reloads
    }

    /// The span exporter's series.
    pub fn traces(&self) -> &TraceMetrics {
        &self.traces
    }

    /// Where the upstream endpoint series are read from at each scrape.
    pub fn report_upstreams(&self, source: UpstreamSource) {
        self.upstreams.set_source(source);
    }

    /// The counter of access-log lines dropped on a full queue.
    pub fn access_log_dropped(&self) -> Counter {
        self.access_log_dropped.clone()
    }

    /// Every metric in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// What a connection on one listener touches.
#[derive(Clone)]
pub struct ListenerMetrics {
    open: Gauge,
    parked: Gauge,
    accepted: Counter,
    protocols: Arc<[(Counter, Gauge); 2]>,
    name: Arc<str>,
    http2_errors: Family<Http2ErrorLabels, Counter>,
}

impl ListenerMetrics {
    /// Counts an accepted connection; the guard counts it closed when dropped.
    pub fn connection_opened(&self) -> OpenConnection {
        self.accepted.inc();
        self.open.inc();
        OpenConnection { open: self.open.clone() }
    }

    /// Counts idle connections parked (`change` above 0) or taken out of parking (below 0).
    pub fn parked(&self, change: i64) {
        self.parked.inc_by(change);
    }

    /// Counts a connection by the protocol its first request used; the guard counts it closed.
    pub fn protocol_seen(&self, http2: bool) -> OpenConnection {
        let (accepted, open) = &self.protocols[usize::from(http2)];
        accepted.inc();
        open.inc();
        OpenConnection { open: open.clone() }
    }

    /// Counts an HTTP/2 error weir ended a stream or a connection with (`scope` is `stream` or
    /// `connection`, `code` the RFC 9113 name). Rare, so the series is looked up when it happens.
    pub fn http2_error(&self, scope: &'static str, code: &'static str) {
        let labels = Http2ErrorLabels { listener: self.name.to_string(), scope, code };
        self.http2_errors.get_or_create(&labels).inc();
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
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn duration_buckets_are_cumulative_with_sum_and_count() {
        let metrics = Metrics::new();
        let histogram = metrics.durations.get_or_create(&RouteLabel { route: "r".into() }).clone();
        for millis in [0, 1, 3, 3, 40_000] {
            histogram.observe(Duration::from_millis(millis));
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
        route.timer(Instant::now()).finish(0);
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
        let http2 = listener.protocol_seen(true);
        let text = metrics.encode();
        assert!(text.contains("weir_http_connections_total{listener=\"public\",protocol=\"http2\"} 1"), "{text}");
        assert!(text.contains("weir_http_connections_open{listener=\"public\",protocol=\"http2\"} 1"), "{text}");
        assert!(text.contains("weir_http_connections_open{listener=\"public\",protocol=\"http1\"} 0"), "{text}");
        drop(http2);
        assert!(metrics.encode().contains("weir_http_connections_open{listener=\"public\",protocol=\"http2\"} 0"));
        drop(connection);
        assert!(metrics.encode().contains("weir_connections_open{listener=\"public\"} 0"));
    }
}
