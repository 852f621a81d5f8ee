//! The metric handles of one route, made when a configuration loads and held in the compiled route:
//! serving a request only touches atomics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::{DurationHistogram, RouteLabel, methods};

/// The per-route families beyond requests, refusals and durations.
pub(crate) struct RouteFamilies {
    upstream_durations: Family<RouteLabel, DurationHistogram>,
    request_bytes: Family<RouteLabel, Counter>,
    response_bytes: Family<RouteLabel, Counter>,
    in_flight: Family<RouteLabel, Gauge>,
    retries: Family<RouteLabel, Counter>,
    budget_exhausted: Family<RouteLabel, Counter>,
    methods: methods::MethodFamily,
}

impl RouteFamilies {
    pub(crate) fn register(registry: &mut Registry) -> RouteFamilies {
        let families = RouteFamilies {
            methods: methods::register(registry),
            upstream_durations: Family::default(),
            request_bytes: Family::default(),
            response_bytes: Family::default(),
            in_flight: Family::default(),
            retries: Family::default(),
            budget_exhausted: Family::default(),
        };
        registry.register(
            "upstream_duration_seconds",
            "Time from the first upstream attempt to the upstream's response headers",
            families.upstream_durations.clone(),
        );
        registry.register(
            "request_body_bytes",
            "Request body bytes read from clients and sent upstream",
            families.request_bytes.clone(),
        );
        registry.register(
            "response_body_bytes",
            "Response body bytes sent to clients",
            families.response_bytes.clone(),
        );
        registry.register("requests_in_flight", "Requests begun and not yet finished", families.in_flight.clone());
        registry.register("retries", "Upstream tries after a request's first", families.retries.clone());
        registry.register(
            "retry_budget_exhausted",
            "Failed tries not retried because the route's retry budget was spent",
            families.budget_exhausted.clone(),
        );
        families
    }

    pub(crate) fn handles(&self, label: &RouteLabel) -> RouteHandles {
        RouteHandles {
            upstream_duration: self.upstream_durations.get_or_create(label).clone(),
            request_bytes: self.request_bytes.get_or_create(label).clone(),
            response_bytes: self.response_bytes.get_or_create(label).clone(),
            in_flight: self.in_flight.get_or_create(label).clone(),
            retries: self.retries.get_or_create(label).clone(),
            budget_exhausted: self.budget_exhausted.get_or_create(label).clone(),
            methods: methods::handles(&self.methods, &label.route),
        }
    }
}

pub(crate) struct RouteHandles {
    upstream_duration: DurationHistogram,
    request_bytes: Counter,
    response_bytes: Counter,
    in_flight: Gauge,
    retries: Counter,
    budget_exhausted: Counter,
    methods: [Counter; 8],
}

struct Handles {
    classes: [Counter; 5],
    refusals: Box<[Counter]>,
    duration: DurationHistogram,
    more: RouteHandles,
}

/// What a request on one route touches. Clones share the handles (one reference count).
#[derive(Clone)]
pub struct RouteMetrics(Arc<Handles>);

impl RouteMetrics {
    pub(crate) fn new(
        classes: [Counter; 5],
        refusals: Box<[Counter]>,
        duration: DurationHistogram,
        more: RouteHandles,
    ) -> RouteMetrics {
        RouteMetrics(Arc::new(Handles { classes, refusals, duration, more }))
    }

    /// Counts a response by its status code.
    pub fn answered(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.0.classes[class].inc();
    }

    /// Counts a refusal by the index of its reason in the list given to [`crate::Metrics::route`].
    pub fn refused(&self, reason: usize) {
        if let Some(counter) = self.0.refusals.get(reason) {
            counter.inc();
        }
    }

    /// Records the wait for an upstream's response headers.
    pub fn upstream_answered(&self, waited: Duration) {
        self.0.more.upstream_duration.observe(waited);
    }

    /// Counts a request by its method.
    pub fn received(&self, method: &http::Method) {
        self.0.more.methods[methods::index(method)].inc();
    }

    /// Counts a try after the first.
    pub fn retried(&self) {
        self.0.more.retries.inc();
    }

    /// Counts a failed try the retry budget did not allow to be retried.
    pub fn retry_budget_exhausted(&self) {
        self.0.more.budget_exhausted.inc();
    }

    /// The counter of request body bytes, for a body to add to as it streams.
    pub fn request_bytes(&self) -> &Counter {
        &self.0.more.request_bytes
    }

    /// A timer for a request that arrived at `started`, to be finished when its response body ends.
    /// The request counts as in flight until the timer is finished or dropped.
    pub fn timer(&self, started: Instant) -> RequestTimer {
        self.0.more.in_flight.inc();
        RequestTimer { route: self.clone(), started }
    }
}

/// Measures one request, from its arrival to the end of its response body.
pub struct RequestTimer {
    route: RouteMetrics,
    started: Instant,
}

impl RequestTimer {
    /// The request is done, having sent `bytes_out` response body bytes.
    pub fn finish(self, bytes_out: u64) {
        let handles = &self.route.0;
        handles.duration.observe(self.started.elapsed());
        handles.more.response_bytes.inc_by(bytes_out);
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        self.route.0.more.in_flight.dec();
    }
}
