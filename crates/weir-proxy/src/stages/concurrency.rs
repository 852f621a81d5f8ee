//! The concurrency stage: after the rate limit and before the deadline and retry loop, a request
//! takes a slot in its route's limit, then in its upstream's, waiting in their bounded queues if
//! they are full. A request that finds a queue full, or outwaits the queue timeout (or its route's
//! timeout, counted from arrival), is shed with 503 `shed`.
//!
//! The slots are held until the route's action returns its response head: the limit counts requests
//! waiting on the upstream, not bodies still streaming to the client.
//!
//! An upstream's limit is one per snapshot, shared by every route that sends to that upstream (not
//! by routes that reach it only as a breaker fallback). A reload starts fresh limits; requests
//! still in flight under the previous snapshot hold their slots in its limits until they finish.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_config::{Concurrency, Config, Route as RouteConfig};
use weir_resilience::concurrency::adaptive::{AdaptiveLimit, AdaptiveSettings};
use weir_resilience::concurrency::{ConcurrencyLimit, LimitSettings, Permit, Shed};
use weir_telemetry::{ConcurrencyMetrics, Metrics};

use crate::refusal::Refusal;

/// One limit and its metric handles.
pub struct Limit {
    limiter: ConcurrencyLimit,
    metrics: ConcurrencyMetrics,
}

impl Limit {
    fn build(config: &Concurrency, scope: &str, name: &str, metrics: &Metrics) -> Arc<Limit> {
        let settings = LimitSettings {
            max_in_flight: config.max_in_flight as usize,
            max_queue: config.max_queue as usize,
            queue_timeout: config.queue_timeout.0,
        };
        let limiter = match &config.adaptive {
            None => ConcurrencyLimit::new(settings),
            Some(adaptive) => {
                let moves = AdaptiveSettings {
                    initial: settings.max_in_flight,
                    min: adaptive.min as usize,
                    max: adaptive.max as usize,
                    tolerance: adaptive.tolerance,
                };
                ConcurrencyLimit::adaptive(settings, AdaptiveLimit::new(moves))
            }
        };
        let metrics = metrics.concurrency_limit(scope, name);
        metrics.limit.set(limiter.limit() as i64);
        Arc::new(Limit { limiter, metrics })
    }

    async fn admit(&self, deadline: tokio::time::Instant) -> Result<Slot<'_>, Refusal> {
        let permit = match self.limiter.try_admit() {
            Some(permit) => permit,
            None => self.wait(deadline).await?,
        };
        self.metrics.in_flight.inc();
        Ok(Slot { permit: Some(permit), limit: self })
    }

    /// The slow path: the limit is full, so queue (or be shed).
    async fn wait(&self, deadline: tokio::time::Instant) -> Result<Permit<'_>, Refusal> {
        self.metrics.queued.inc();
        let waited = self.limiter.acquire(Some(deadline)).await;
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
pub struct Slot<'a> {
    permit: Option<Permit<'a>>,
    limit: &'a Limit,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.limit.metrics.in_flight.dec();
        self.limit.metrics.limit.set(self.limit.limiter.limit() as i64);
    }
}

/// The limits of every upstream that has one, built once per snapshot.
#[derive(Default)]
pub struct UpstreamLimits(HashMap<String, Arc<Limit>>);

impl UpstreamLimits {
    pub fn build(config: &Config, metrics: &Metrics) -> UpstreamLimits {
        let limits = config.upstreams.iter().filter_map(|(name, upstream)| {
            let limit = upstream.concurrency.as_ref()?;
            Some((name.clone(), Limit::build(limit, "upstream", name, metrics)))
        });
        UpstreamLimits(limits.collect())
    }
}

/// One route's concurrency stage; the default limits nothing.
#[derive(Default)]
pub struct ConcurrencyStage {
    route: Option<Arc<Limit>>,
    upstream: Option<Arc<Limit>>,
    /// The longest a queued request may wait, from its arrival: the route's timeout.
    timeout: Duration,
}

impl ConcurrencyStage {
    pub fn build(upstreams: &UpstreamLimits, route: &RouteConfig, name: &str, metrics: &Metrics) -> ConcurrencyStage {
        ConcurrencyStage {
            route: route.concurrency.as_ref().map(|limit| Limit::build(limit, "route", name, metrics)),
            upstream: route.upstream.as_ref().and_then(|upstream| upstreams.0.get(upstream).cloned()),
            timeout: route.timeout.0,
        }
    }

    /// Takes a slot in the route's limit, then in its upstream's, for a request that arrived at
    /// `arrived`. The slots are given back when the returned value is dropped.
    pub async fn admit(&self, arrived: Instant) -> Result<Admitted<'_>, Refusal> {
        if self.route.is_none() && self.upstream.is_none() {
            return Ok(Admitted { _route: None, _upstream: None });
        }
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
