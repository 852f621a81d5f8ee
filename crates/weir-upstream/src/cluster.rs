//! A cluster: an upstream's endpoints, the rotation requests are balanced over, and the state that
//! decides the rotation (health check verdicts, outlier ejections, discovered membership).
//!
//! The rotation is rebuilt, never edited: when an endpoint is ejected, returns, changes health or
//! appears through discovery, a new rotation (eligible endpoints plus the balancer's tables) is built
//! under the membership lock and swapped in. A request does one lock-free load of the rotation, a
//! balancer pick, and a few atomic operations when its attempt finishes.
//!
//! When no endpoint is eligible, the cluster is in panic mode: it balances over all of them, since
//! refusing everything is never better than trying endpoints that may have recovered.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};

use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::time::Instant;
use weir_resilience::breaker::{BreakerSettings, BreakerState, CallResult, CircuitBreaker, Permit};
use weir_resilience::concurrency::adaptive::AdaptiveSettings;
use weir_resilience::concurrency::{ConcurrencyLimit, LimitSettings};

use crate::balance::{BalancePolicy, PickInput, Table};
use crate::discovery::DnsDiscovery;
use crate::endpoint::{Endpoint, EndpointSpec, EndpointStatus};
use crate::ewma::FAILURE_PENALTY;
use crate::hash_key::HashKey;
use crate::health::HealthCheckSettings;
use crate::outlier::{EjectReason, Outcome, OutlierSettings};
use crate::pool::PoolSettings;
use crate::rng::BalanceRng;

/// How a cluster balances, pools, checks and ejects.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub pool: PoolSettings,
    pub balance: BalancePolicy,
    /// The request key, for consistent hashing.
    pub hash_key: Option<HashKey>,
    pub outlier: OutlierSettings,
    pub health_check: Option<HealthCheckSettings>,
    /// Names re-resolved on an interval; `None` keeps the endpoints given at start.
    pub discovery: Option<DnsDiscovery>,
    pub breaker: Option<BreakerPolicy>,
    /// A cap on requests in flight to the upstream, adaptive when the second part is set.
    pub concurrency: Option<(LimitSettings, Option<AdaptiveSettings>)>,
}

/// A circuit breaker for the whole upstream, and what it counts as a failed call: any gateway
/// error, and upstream answers with these statuses.
#[derive(Debug, Clone)]
pub struct BreakerPolicy {
    pub settings: BreakerSettings,
    pub failure_statuses: Vec<std::ops::RangeInclusive<u16>>,
}

/// Why no attempt could start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The cluster has no endpoint at all.
    NoEndpoint,
    /// The upstream's circuit breaker is open.
    BreakerOpen { retry_after: Duration },
}

/// The endpoints of one upstream.
pub struct Cluster<B> {
    pub(crate) name: Arc<str>,
    pub(crate) settings: ClusterSettings,
    epoch: Instant,
    members: Mutex<Vec<Arc<Endpoint<B>>>>,
    rotation: ArcSwap<Rotation<B>>,
    rng: BalanceRng,
    breaker: Option<CircuitBreaker>,
    concurrency: Option<ConcurrencyLimit>,
    /// Dropped with the cluster, which tells its background tasks to end.
    pub(crate) alive: watch::Sender<()>,
}

/// The endpoints requests are balanced over now, and the balancer's tables for them.
struct Rotation<B> {
    endpoints: Box<[Arc<Endpoint<B>>]>,
    table: Table,
    panic: bool,
    /// When the first ejected endpoint is due back.
    next_return: Option<Instant>,
}

/// What operators can read about a cluster.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    pub balance: BalancePolicy,
    pub panic: bool,
    /// The breaker's state and trips, when the upstream has one.
    pub breaker: Option<(BreakerState, u64)>,
    pub endpoints: Vec<EndpointStatus>,
}

impl<B> Cluster<B> {
    /// A cluster over these endpoints (validated non-empty unless they are discovered later).
    pub fn new(name: &str, specs: &[EndpointSpec], settings: ClusterSettings) -> Self {
        Cluster::with_rng(name, specs, settings, BalanceRng::from_entropy())
    }

    /// A cluster whose random choices follow `rng`: for tests that check distributions exactly.
    pub fn with_rng(name: &str, specs: &[EndpointSpec], settings: ClusterSettings, rng: BalanceRng) -> Self {
        let epoch = Instant::now();
        let members: Vec<_> =
            specs.iter().map(|spec| Arc::new(Endpoint::new(*spec, settings.pool.clone(), epoch))).collect();
        let cluster = Cluster {
            name: name.into(),
            epoch,
            members: Mutex::new(Vec::new()),
            rotation: ArcSwap::from_pointee(Rotation::empty(settings.balance)),
            breaker: settings.breaker.as_ref().map(|b| CircuitBreaker::new(b.settings)),
            concurrency: settings.concurrency.map(|(limit, adaptive)| ConcurrencyLimit::with(limit, adaptive)),
            settings,
            rng,
            alive: watch::channel(()).0,
        };
        cluster.replace_members(members);
        cluster
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key consistent hashing needs from each request, if this cluster hashes.
    pub fn hash_key(&self) -> Option<&HashKey> {
        self.settings.hash_key.as_ref()
    }

    /// Starts an attempt on the endpoint the balancer picks, unless the upstream's breaker is open or
    /// the cluster has no endpoint at all (a discovered name that resolves to nothing).
    pub fn pick(&self, key_hash: Option<u64>) -> Result<Attempt<'_, B>, Unavailable> {
        self.pick_avoiding(key_hash, &[])
    }

    /// Like [`Cluster::pick`], but passing over the endpoints in `avoid` (ones that just failed)
    /// while the rotation has others.
    pub fn pick_avoiding(&self, key_hash: Option<u64>, avoid: &[SocketAddr]) -> Result<Attempt<'_, B>, Unavailable> {
        let permit = match &self.breaker {
            Some(breaker) => Some(
                breaker
                    .admit(Instant::now())
                    .map_err(|refused| Unavailable::BreakerOpen { retry_after: refused.retry_after })?,
            ),
            None => None,
        };
        let Some(endpoint) = self.choose(key_hash, avoid) else {
            if let (Some(breaker), Some(permit)) = (&self.breaker, permit) {
                breaker.release(permit);
            }
            return Err(Unavailable::NoEndpoint);
        };
        endpoint.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Attempt { cluster: self, endpoint, permit, started: Instant::now(), finished: false })
    }

    /// The upstream's concurrency limit, if it has one. It lives with the cluster, so a reload that
    /// keeps the cluster keeps the slots its requests hold.
    pub fn concurrency(&self) -> Option<&ConcurrencyLimit> {
        self.concurrency.as_ref()
    }

    /// The upstream's circuit breaker, if it has one.
    pub fn breaker(&self) -> Option<&CircuitBreaker> {
        self.breaker.as_ref()
    }

    fn choose(&self, key_hash: Option<u64>, avoid: &[SocketAddr]) -> Option<Arc<Endpoint<B>>> {
        let mut rotation = self.rotation.load();
        if rotation.next_return.is_some_and(|at| Instant::now() >= at) {
            self.refresh();
            rotation = self.rotation.load();
        }
        let endpoints = &rotation.endpoints;
        if endpoints.is_empty() {
            return None;
        }
        let input =
            PickInput { len: endpoints.len(), key: key_hash, rng: &self.rng, cost: |i, now| endpoints[i].cost(now) };
        let mut index = rotation.table.pick(input);
        if avoid.contains(&endpoints[index].addr) {
            let start = self.rng.below(endpoints.len());
            let others = (0..endpoints.len()).map(|i| (start + i) % endpoints.len());
            index = others.into_iter().find(|i| !avoid.contains(&endpoints[*i].addr)).unwrap_or(index);
        }
        Some(endpoints[index].clone())
    }

    /// Replaces the membership (discovery): endpoints that stay keep their state and connections;
    /// endpoints that leave finish the requests they have in flight.
    pub fn set_members(&self, specs: &[EndpointSpec]) {
        let current = self.lock_members().clone();
        let members = specs
            .iter()
            .map(|spec| {
                let kept = current.iter().find(|e| e.addr == spec.addr && e.weight == spec.weight);
                kept.cloned().unwrap_or_else(|| Arc::new(Endpoint::new(*spec, self.settings.pool.clone(), self.epoch)))
            })
            .collect();
        self.replace_members(members);
    }

    /// The endpoints as they are now, for discovery to compare with.
    pub(crate) fn member_specs(&self) -> Vec<EndpointSpec> {
        self.lock_members().iter().map(|e| EndpointSpec { addr: e.addr, weight: e.weight }).collect()
    }

    /// The endpoints, for health checking.
    pub(crate) fn members(&self) -> Vec<Arc<Endpoint<B>>> {
        self.lock_members().clone()
    }

    /// Rebuilds the rotation from the endpoints' current state.
    pub(crate) fn refresh(&self) {
        let members = self.lock_members();
        self.rebuild(&members, Instant::now());
    }

    pub fn status(&self) -> ClusterStatus {
        let now = Instant::now();
        ClusterStatus {
            balance: self.settings.balance,
            panic: self.rotation.load().panic,
            breaker: self.breaker.as_ref().map(|b| (b.state(), b.trips_total())),
            endpoints: self.lock_members().iter().map(|e| e.status(now)).collect(),
        }
    }

    fn replace_members(&self, new: Vec<Arc<Endpoint<B>>>) {
        let mut members = self.lock_members();
        *members = new;
        self.rebuild(&members, Instant::now());
    }

    /// Takes an endpoint out of the rotation for its ejection time, unless too many already are out.
    fn eject(&self, endpoint: &Arc<Endpoint<B>>, reason: EjectReason) {
        let rules = &self.settings.outlier;
        let members = self.lock_members();
        let now = Instant::now();
        let out = members.iter().filter(|e| e.ejection().until.is_some_and(|until| until > now)).count();
        let allowed = rules.max_ejection_percent > 0
            && (out == 0 || (out + 1) * 100 <= rules.max_ejection_percent as usize * members.len());
        if !allowed || !members.iter().any(|e| Arc::ptr_eq(e, endpoint)) {
            return;
        }
        let duration = {
            let mut ejection = endpoint.ejection();
            if ejection.until.is_some_and(|until| until > now) {
                return;
            }
            if ejection.last_return.is_some_and(|at| now - at > rules.max_ejection_time) {
                ejection.times = 0;
            }
            ejection.times += 1;
            let duration = rules.ejection_time(ejection.times);
            ejection.until = Some(now + duration);
            duration
        };
        endpoint.count_ejection();
        endpoint.outlier.reset();
        tracing::warn!(upstream = %self.name, endpoint = %endpoint.addr, reason = reason.as_str(), ?duration, "endpoint ejected");
        self.rebuild(&members, now);
    }

    fn rebuild(&self, members: &[Arc<Endpoint<B>>], now: Instant) {
        let mut eligible = Vec::with_capacity(members.len());
        let mut next_return: Option<Instant> = None;
        for endpoint in members {
            let mut ejection = endpoint.ejection();
            match ejection.until {
                Some(until) if until > now => {
                    next_return = Some(next_return.map_or(until, |at| at.min(until)));
                    continue;
                }
                Some(_) => {
                    ejection.until = None;
                    ejection.last_return = Some(now);
                    tracing::info!(upstream = %self.name, endpoint = %endpoint.addr, "endpoint returns from ejection");
                }
                None => {}
            }
            if endpoint.is_healthy() {
                eligible.push(endpoint.clone());
            }
        }
        let panic = eligible.is_empty() && !members.is_empty();
        if panic {
            tracing::warn!(upstream = %self.name, "no healthy endpoint: balancing over all of them (panic mode)");
            eligible = members.to_vec();
        }
        let names: Vec<String> = eligible.iter().map(|e| e.addr.to_string()).collect();
        let weights: Vec<u32> = eligible.iter().map(|e| e.weight).collect();
        let table = Table::build(self.settings.balance, &names, &weights);
        self.rotation.store(Arc::new(Rotation { endpoints: eligible.into(), table, panic, next_return }));
    }

    fn lock_members(&self) -> MutexGuard<'_, Vec<Arc<Endpoint<B>>>> {
        self.members.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<B> Rotation<B> {
    fn empty(policy: BalancePolicy) -> Self {
        Rotation { endpoints: Box::new([]), table: Table::build(policy, &[], &[]), panic: false, next_return: None }
    }
}

/// One request's use of one endpoint. Finish it with how it went; dropped unfinished (the client
/// went away), it only leaves the in-flight count.
pub struct Attempt<'a, B> {
    cluster: &'a Cluster<B>,
    endpoint: Arc<Endpoint<B>>,
    permit: Option<Permit>,
    started: Instant,
    finished: bool,
}

impl<B> Attempt<'_, B> {
    pub fn endpoint(&self) -> &Arc<Endpoint<B>> {
        &self.endpoint
    }

    /// When the attempt began (its endpoint was picked).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Records the outcome: latency for the least-request balancer (failures count as slow), the
    /// outlier rules, which may eject the endpoint, and the upstream's breaker.
    pub fn finish(mut self, outcome: Outcome) {
        self.finished = true;
        self.endpoint.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let now = Instant::now();
        let latency = now - self.started;
        self.record_breaker(outcome, latency, now);
        if outcome == Outcome::Local {
            return;
        }
        let endpoint = &self.endpoint;
        let sample = if outcome.is_failure() { latency.max(FAILURE_PENALTY) } else { latency };
        endpoint.latency.observe(sample, now);
        if let Some(reason) = endpoint.outlier.record(outcome, &self.cluster.settings.outlier) {
            self.cluster.eject(endpoint, reason);
        }
    }
}

impl<B> Attempt<'_, B> {
    fn record_breaker(&mut self, outcome: Outcome, took: Duration, now: Instant) {
        let (Some(breaker), Some(permit)) = (&self.cluster.breaker, self.permit.take()) else { return };
        let failure_statuses = self.cluster.settings.breaker.as_ref().map_or(&[][..], |b| &b.failure_statuses);
        let result = match outcome {
            Outcome::Local => CallResult::Ignored,
            Outcome::ConnectFailure | Outcome::Reset | Outcome::Timeout => CallResult::Failure,
            Outcome::Response(status) if failure_statuses.iter().any(|r| r.contains(&status.as_u16())) => {
                CallResult::Failure
            }
            Outcome::Response(_) => CallResult::Success,
        };
        let before = breaker.state();
        breaker.record(permit, result, took, now);
        let after = breaker.state();
        if before != after {
            tracing::warn!(upstream = %self.cluster.name, from = ?before, to = ?after, "circuit breaker changed state");
        }
    }
}

impl<B> Drop for Attempt<'_, B> {
    fn drop(&mut self) {
        if !self.finished {
            self.endpoint.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            if let (Some(breaker), Some(permit)) = (&self.cluster.breaker, self.permit.take()) {
                breaker.release(permit);
            }
        }
    }
}

/// Resolves `host:port` once, when a configuration is loaded; the first address wins.
pub fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address")))
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
