//! The immutable state the data plane serves from: compiled routes, per-listener routers, upstream
//! clusters and the settings a request needs. Built from a validated [`Config`] once per load and
//! swapped in whole; a request loads it once and keeps it to the end.

use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderMap;
use weir_config::values::Cidr;
use weir_config::{Config, HeaderList, RetryOn, Route as RouteConfig, ValueMatch};
use weir_resilience::backoff::Backoff;
use weir_resilience::budget::{BudgetSettings, RetryBudget};
use weir_resilience::retry::{RetryConditions, RetryPolicy};

use weir_telemetry::{Metrics, RouteMetrics};

use crate::admin_views::AdminViews;
use crate::clusters::{Clusters, build_clusters};
use crate::proxy::tunnel::TunnelRoute;
use crate::refusal::Refusal;
use crate::route::{Action, DirectResponse, Fallback, HeaderEdits, PathMatcher, PathRewrite, Route};
use crate::router::{Conditions, RouteId, Router, TemplateConflict, ValueTest};
use crate::stages::concurrency::ConcurrencyStage;
use crate::stages::fault::{Experiments, Faults, RouteFaults, Target};
use crate::stages::rate_limit::carry::Rebuild;
use crate::stages::rate_limit::{RateLimitStage, SharedRules};

/// Everything a request is served from.
pub struct Snapshot {
    pub routes: Vec<Route>,
    /// The upstream clusters, by name.
    pub clusters: Clusters,
    /// What requests that match no route count into.
    pub unmatched: RouteMetrics,
    /// One router per listener, by listener name, in the configuration's listener order.
    pub routers: Vec<(Arc<str>, Router)>,
    pub trusted_proxies: Vec<Cidr>,
    /// Requests to upstreams get `X-Forwarded-*` and `Forwarded`.
    pub forwarded_headers: bool,
    pub request_id: RequestIdSettings,
    /// The request header clients send their deadline in (milliseconds), besides `grpc-timeout`.
    pub deadline_header: Option<http::HeaderName>,
    /// What the admin API shows of this configuration.
    pub admin_views: AdminViews,
    /// The fault stage's random source, the upstreams' faults, and the running experiments.
    pub faults: Faults,
}

/// How requests get their ids.
pub struct RequestIdSettings {
    pub enabled: bool,
    pub header: http::HeaderName,
    pub keep_incoming: bool,
    pub in_response: bool,
}

/// Why a validated configuration could still not be put in service.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("upstream {upstream}: endpoint {endpoint}: cannot resolve: {source}")]
    Resolve {
        upstream: String,
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Template(#[from] TemplateConflict),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

impl Snapshot {
    /// Starts the background work of the snapshot's clusters (health checks). Needs a Tokio runtime;
    /// the work ends when the snapshot is dropped.
    pub fn start(&self) {
        for cluster in self.clusters.values() {
            cluster.start();
        }
    }

    /// The routes of the listener called `listener`, when this configuration has it. A short scan:
    /// there are few listeners, and names are compared only until one matches.
    pub fn router(&self, listener: &str) -> Option<&Router> {
        self.routers.iter().find(|(name, _)| **name == *listener).map(|(_, router)| router)
    }

    /// Whether a fault experiment's target is configured.
    pub fn has_target(&self, target: &Target) -> bool {
        match target {
            Target::Route(name) => self.routes.iter().any(|route| route.name == *name),
            Target::Upstream(name) => self.clusters.contains_key(name.as_ref()),
        }
    }

    /// Compiles a configuration. Resolves endpoint host names once, here, and creates every metric
    /// handle a request will touch.
    pub fn build(config: &Config, metrics: &Arc<Metrics>) -> Result<Snapshot, SnapshotError> {
        let experiments = Experiments::new(&config.fault_injection, metrics.clone());
        Snapshot::build_with_clusters(config, metrics, build_clusters(config)?, &mut Rebuild::fresh(), experiments)
    }

    /// Compiles a configuration around clusters built already (a reload passes the ones it kept),
    /// taking rate-limit rules' local limiters from `limiters` (a reload carries unchanged ones)
    /// and serving the process's fault `experiments`.
    pub fn build_with_clusters(
        config: &Config,
        metrics: &Arc<Metrics>,
        clusters: Clusters,
        limiters: &mut Rebuild<'_>,
        experiments: Arc<Experiments>,
    ) -> Result<Snapshot, SnapshotError> {
        let shared_rules = SharedRules::build(config, metrics, limiters);
        let routes: Vec<Route> = config
            .routes
            .iter()
            .enumerate()
            .map(|(index, route)| {
                let mut compiled = compile_route(index, route, &clusters, metrics);
                compiled.rate_limit =
                    RateLimitStage::build(&shared_rules, config, route, &compiled.name, metrics, limiters);
                compiled.concurrency = ConcurrencyStage::build(route, &compiled.action, &compiled.name, metrics);
                compiled.faults = RouteFaults::build(route, &compiled.name, metrics);
                compiled
            })
            .collect();
        let hosts: Vec<_> = config.routes.iter().map(|r| r.matches.host.clone()).collect();
        let mut routers = Vec::with_capacity(config.listeners.len());
        for listener in &config.listeners {
            let ids: Vec<RouteId> = (0..config.routes.len() as RouteId)
                .filter(|id| {
                    let wanted = &config.routes[*id as usize].listeners;
                    wanted.is_empty() || wanted.contains(&listener.name)
                })
                .collect();
            routers.push((listener.name.as_str().into(), Router::build(&routes, &hosts, &ids)?));
        }
        let request_id = &config.server.request_id;
        Ok(Snapshot {
            routes,
            clusters,
            unmatched: metrics.route("", &Refusal::REASONS),
            routers,
            trusted_proxies: config.server.trusted_proxies.clone(),
            forwarded_headers: config.server.forwarded_headers,
            request_id: RequestIdSettings {
                enabled: request_id.enabled,
                header: request_id.header.0.clone(),
                keep_incoming: request_id.keep_incoming,
                in_response: request_id.in_response,
            },
            deadline_header: config.server.deadline_header.as_ref().map(|h| h.0.clone()),
            admin_views: AdminViews::render(config),
            faults: Faults::build(config, metrics, experiments),
        })
    }
}

fn compile_route(index: usize, route: &RouteConfig, clusters: &Clusters, metrics: &Metrics) -> Route {
    let name: Arc<str> = route.name.clone().unwrap_or_else(|| format!("routes[{index}]")).into();
    let route_metrics = metrics.route(&name, &Refusal::REASONS);
    let action = match (&route.upstream, &route.direct_response) {
        (Some(upstream), _) => Action::Proxy(clusters[upstream].clone()),
        (None, Some(direct)) => Action::Direct(direct_response(direct)),
        // Validation guarantees one of the two.
        (None, None) => unreachable!("validated route has an action"),
    };
    let websocket = (route.websocket.enabled && route.upstream.is_some()).then(|| TunnelRoute {
        idle_timeout: Some(route.websocket.idle_timeout.0).filter(|d| !d.is_zero()),
        metrics: metrics.tunnels(&name),
    });
    Route {
        name,
        metrics: route_metrics,
        path: path_matcher(route),
        conditions: conditions(route),
        faults: RouteFaults::default(),
        rate_limit: RateLimitStage::default(),
        concurrency: ConcurrencyStage::default(),
        action,
        rewrite: path_rewrite(route),
        host_rewrite: route.rewrite.host.as_ref().map(|h| h.0.clone()),
        request_headers: header_edits(&route.request_headers),
        response_headers: header_edits(&route.response_headers),
        timeout: route.timeout.0,
        max_body: route.max_body_size.map_or(u64::MAX, |s| s.0),
        body_idle_timeout: Some(route.body_idle_timeout.0).filter(|d| !d.is_zero()),
        retry: route.retry.as_ref().map(retry_policy),
        websocket,
        fallback: route.fallback.as_ref().map(|fallback| match (&fallback.upstream, &fallback.direct_response) {
            (Some(upstream), _) => Fallback::Upstream(clusters[upstream].clone()),
            (None, Some(direct)) => Fallback::Direct(direct_response(direct)),
            (None, None) => unreachable!("validated fallback has an answer"),
        }),
    }
}

fn direct_response(direct: &weir_config::DirectResponse) -> DirectResponse {
    DirectResponse {
        status: direct.status.0,
        body: Bytes::from(direct.body.clone()),
        headers: header_map(&direct.headers),
    }
}

fn retry_policy(retry: &weir_config::Retry) -> RetryPolicy {
    let mut on = RetryConditions::default();
    for condition in &retry.on {
        match *condition {
            RetryOn::ConnectFailure => on.connect_failure = true,
            RetryOn::Reset => on.reset = true,
            RetryOn::Timeout => on.timeout = true,
            RetryOn::ServerErrors => on.server_errors = true,
            RetryOn::Status(status) => on.statuses.push(status),
            RetryOn::Grpc(code) => on.grpc_codes |= 1 << code,
        }
    }
    RetryPolicy {
        attempts: retry.attempts,
        on,
        per_try_timeout: retry.per_try_timeout.map(|d| d.0),
        backoff: Backoff { base: retry.backoff.base.0, max: retry.backoff.max.0 },
        non_idempotent: retry.non_idempotent,
        max_replay_body: retry.max_replay_body.0,
        budget: RetryBudget::new(BudgetSettings {
            ratio: f64::from(retry.budget.ratio.0) / 100.0,
            min_per_second: retry.budget.min_per_second,
        }),
    }
}

fn path_matcher(route: &RouteConfig) -> PathMatcher {
    let m = &route.matches;
    if let Some(grpc) = &m.grpc {
        let path = grpc.path();
        if grpc.method.is_some() { PathMatcher::Exact(path.into()) } else { PathMatcher::Prefix(path.into()) }
    } else if let Some(path) = &m.path {
        PathMatcher::Exact(path.0.as_str().into())
    } else if let Some(template) = &m.path_template {
        PathMatcher::Template(template.as_str().into())
    } else if let Some(pattern) = &m.path_regex {
        PathMatcher::Regex(pattern.0.clone())
    } else {
        let prefix = m.path_prefix.as_ref().map_or("/", |p| p.0.as_str());
        PathMatcher::Prefix(prefix.into())
    }
}

fn conditions(route: &RouteConfig) -> Conditions {
    let m = &route.matches;
    Conditions {
        methods: m.method.iter().map(|method| method.0.clone()).collect(),
        headers: m.headers.iter().map(|h| (h.name.0.clone(), value_test(h))).collect(),
        query: m.query.iter().map(|q| (q.name.as_str().into(), value_test(q))).collect(),
        client_spiffe_id: m.client_spiffe_id.as_deref().map(Into::into),
        grpc: m.grpc.is_some(),
    }
}

pub(crate) fn value_test<N>(condition: &ValueMatch<N>) -> ValueTest {
    match (&condition.exact, &condition.regex, condition.present) {
        (Some(exact), _, _) => ValueTest::Exact(exact.as_str().into()),
        (None, Some(pattern), _) => ValueTest::Regex(pattern.0.clone()),
        (None, None, Some(false)) => ValueTest::Absent,
        _ => ValueTest::Present,
    }
}

fn path_rewrite(route: &RouteConfig) -> PathRewrite {
    let rewrite = &route.rewrite;
    let prefix_len = route.matches.path_prefix.as_ref().map_or(0, |p| p.0.len());
    if let Some(path) = &rewrite.path {
        PathRewrite::Replace(path.0.as_str().into())
    } else if let Some(with) = &rewrite.replace_prefix {
        PathRewrite::ReplacePrefix { prefix_len, with: with.0.as_str().into() }
    } else if rewrite.strip_prefix {
        PathRewrite::ReplacePrefix { prefix_len, with: "/".into() }
    } else if let Some(regex) = &rewrite.path_regex {
        PathRewrite::Regex { pattern: regex.pattern.0.clone(), replacement: regex.replacement.as_str().into() }
    } else {
        PathRewrite::Keep
    }
}

fn header_map(list: &HeaderList) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(list.0.len());
    for (name, value) in &list.0 {
        map.append(name.0.clone(), value.0.clone());
    }
    map
}

fn header_edits(rewrite: &weir_config::HeaderRewrite) -> HeaderEdits {
    let pairs = |list: &HeaderList| list.0.iter().map(|(n, v)| (n.0.clone(), v.0.clone())).collect();
    HeaderEdits {
        remove: rewrite.remove.iter().map(|n| n.0.clone()).collect(),
        set: pairs(&rewrite.set),
        add: pairs(&rewrite.add),
    }
}
