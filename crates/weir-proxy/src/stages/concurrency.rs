//! The concurrency stage: after the rate limit and before the deadline and retry loop, a request
//! takes a slot in its route's limit, then in its upstream's, waiting in their bounded queues if
//! they are full. A request that finds a queue full, or outwaits the queue timeout (or its route's
//! timeout, counted from arrival), is shed with 503 `shed`.
//!
//! The slots are held until the route's action returns its response head: the limit counts requests
//! waiting on the upstream (one slot however many tries), not bodies still streaming to the client.
//!
//! An upstream's limit lives in its cluster and is shared by every route that sends to that upstream
//! (not by routes that reach it only as a breaker fallback). A reload that keeps the cluster keeps
//! the limit and the slots held in it. A route's limit is built with the snapshot: a reload starts it
//! afresh, and requests still in flight under the previous snapshot hold their slots in the old one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_config::{Concurrency, Route as RouteConfig};
use weir_resilience::concurrency::adaptive::AdaptiveSettings;
use weir_resilience::concurrency::{ConcurrencyLimit, LimitSettings, Permit, Shed};
use weir_telemetry::{ConcurrencyMetrics, Metrics};
use weir_upstream::Cluster;

use crate::body::RequestBody;
use crate::refusal::Refusal;
use crate::route::Action;

/// A `concurrency` block as the limiter's settings.
pub fn settings(config: &Concurrency) -> (LimitSettings, Option<AdaptiveSettings>) {
    let limit = LimitSettings {
        max_in_flight: config.max_in_flight as usize,
        max_queue: config.max_queue as usize,
        queue_timeout: config.queue_timeout.0,
    };
    let adaptive = config.adaptive.as_ref().map(|adaptive| AdaptiveSettings {
        initial: limit.max_in_flight,
        min: adaptive.min as usize,
        max: adaptive.max as usize,
        tolerance: adaptive.tolerance,
    });
    (limit, adaptive)
}

/// Where a limit's state lives.
enum Limiter {
    /// The route's own, built with the snapshot.
    Route(ConcurrencyLimit),
    /// The upstream's, in its cluster.
    Upstream(Arc<Cluster<RequestBody>>),
}

/// One limit and its metric handles.
struct Limit {
    limiter: Limiter,
    metrics: ConcurrencyMetrics,
}

impl Limit {
    fn new(limiter: Limiter, metrics: ConcurrencyMetrics) -> Limit {
        let limit = Limit { limiter, metrics };
        limit.metrics.limit.set(limit.limiter().limit() as i64);
        limit
    }

    fn limiter(&self) -> &ConcurrencyLimit {
        match &self.limiter {
            Limiter::Route(limiter) => limiter,
            Limiter::Upstream(cluster) => cluster.concurrency().expect("built only for a cluster with a limit"),
        }
    }

    async fn admit(&self, deadline: tokio::time::Instant) -> Result<Slot<'_>, Refusal> {
        let permit = match self.limiter().try_admit() {
            Some(permit) => permit,
            None => self.wait(deadline).await?,
        };
        self.metrics.in_flight.inc();
        Ok(Slot { permit: Some(permit), limit: self })
    }

    /// The slow path: the limit is full, so queue (or be shed).
    async fn wait(&self, deadline: tokio::time::Instant) -> Result<Permit<'_>, Refusal> {
        self.metrics.queued.inc();
        let waited = self.limiter().acquire(Some(deadline)).await;
        self.metrics.queued.dec();
        waited.map_err(|shed| {
            self.metrics.shed(match shed {
                Shed::QueueFull => 0,
                Shed::QueueTimeout => 1,
            });
            Refusal::Shed
        })
    }
}

/// A slot in one limit, given back when dropped.
struct Slot<'a> {
    permit: Option<Permit<'a>>,
    limit: &'a Limit,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.limit.metrics.in_flight.dec();
        self.limit.metrics.limit.set(self.limit.limiter().limit() as i64);
    }
}

/// One route's concurrency stage; the default limits nothing.
#[derive(Default)]
pub struct ConcurrencyStage {
    route: Option<Limit>,
    upstream: Option<Limit>,
    /// The longest a queued request may wait, from its arrival: the route's timeout.
    timeout: Duration,
}

impl ConcurrencyStage {
    /// The stage for a route whose compiled action is `action`.
    pub fn build(route: &RouteConfig, action: &Action, name: &str, metrics: &Metrics) -> ConcurrencyStage {
        let own = route.concurrency.as_ref().map(|config| {
            let (limit, adaptive) = settings(config);
            Limit::new(
                Limiter::Route(ConcurrencyLimit::with(limit, adaptive)),
                metrics.concurrency_limit("route", name),
            )
        });
        let upstream = match action {
            Action::Proxy(cluster) if cluster.concurrency().is_some() => {
                let metrics = metrics.concurrency_limit("upstream", cluster.name());
                Some(Limit::new(Limiter::Upstream(cluster.clone()), metrics))
            }
            _ => None,
        };
        ConcurrencyStage { route: own, upstream, timeout: route.timeout.0 }
    }

    /// Takes a slot in the route's limit, then in its upstream's, for a request that arrived at
    /// `arrived`. The slots are given back when the returned value is dropped.
    pub async fn admit(&self, arrived: Instant) -> Result<Admitted<'_>, Refusal> {
        if self.route.is_none() && self.upstream.is_none() {
            return Ok(Admitted { _route: None, _upstream: None });
        }
        // Boxed: waiting in a queue inlined would make every request's stages larger to allocate.
        Box::pin(self.admit_limited(arrived)).await
    }

    async fn admit_limited(&self, arrived: Instant) -> Result<Admitted<'_>, Refusal> {
        let deadline = tokio::time::Instant::from_std(arrived) + self.timeout;
        let route = match &self.route {
            Some(limit) => Some(limit.admit(deadline).await?),
            None => None,
        };
        let upstream = match &self.upstream {
            Some(limit) => Some(limit.admit(deadline).await?),
            None => None,
        };
        Ok(Admitted { _route: route, _upstream: upstream })
    }
}

/// The slots an admitted request holds.
pub struct Admitted<'a> {
    _route: Option<Slot<'a>>,
    _upstream: Option<Slot<'a>>,
}
