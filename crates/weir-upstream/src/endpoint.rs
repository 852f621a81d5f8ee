//! One endpoint of a cluster: its address and weight, its connection pool, and what weir knows of it
//! (requests in flight, a peak-EWMA latency, the active health checker's verdict, outlier counts and
//! ejections). Shared by every snapshot and request that uses it; all of it is atomics except the
//! ejection record, which is touched only when an endpoint is ejected or returns.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::ewma::PeakEwma;
use crate::outlier::OutlierCounters;
use crate::pool::{EndpointPool, PoolSettings};

/// An endpoint as configured or discovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointSpec {
    pub addr: SocketAddr,
    pub weight: u32,
}

/// An endpoint and its state.
pub struct Endpoint<B> {
    pub addr: SocketAddr,
    pub weight: u32,
    pub pool: Arc<EndpointPool<B>>,
    pub(crate) in_flight: AtomicU32,
    pub(crate) latency: PeakEwma,
    pub(crate) outlier: OutlierCounters,
    healthy: AtomicBool,
    ejections_total: AtomicU64,
    ejection: Mutex<Ejection>,
}

/// An endpoint's ejection history.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Ejection {
    /// While ejected: when it returns.
    pub until: Option<Instant>,
    /// Ejections in a row, each longer than the last; forgotten after a long enough good spell.
    pub times: u32,
    pub last_return: Option<Instant>,
}

/// What operators can read about an endpoint.
#[derive(Debug, Clone)]
pub struct EndpointStatus {
    pub addr: SocketAddr,
    pub weight: u32,
    pub healthy: bool,
    pub ejected_for: Option<std::time::Duration>,
    pub ejections_total: u64,
    pub in_flight: u32,
    pub latency_ewma: std::time::Duration,
    pub pool_idle: usize,
    pub pool_open: usize,
}

impl<B> Endpoint<B> {
    pub(crate) fn new(spec: EndpointSpec, pool: PoolSettings, epoch: Instant) -> Self {
        Endpoint {
            addr: spec.addr,
            weight: spec.weight,
            pool: Arc::new(EndpointPool::new(spec.addr, pool)),
            in_flight: AtomicU32::new(0),
            latency: PeakEwma::new(epoch),
            outlier: OutlierCounters::default(),
            healthy: AtomicBool::new(true),
            ejections_total: AtomicU64::new(0),
            ejection: Mutex::new(Ejection::default()),
        }
    }

    /// The active health checker's verdict (healthy until a checker says otherwise).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records a health check verdict; true when it changed.
    pub(crate) fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    /// The load the least-request balancer weighs: latency estimate times (requests in flight + 1).
    pub(crate) fn cost(&self, now: Instant) -> f64 {
        self.latency.estimate(now) * f64::from(self.in_flight.load(Ordering::Relaxed) + 1)
    }

    pub(crate) fn ejection(&self) -> std::sync::MutexGuard<'_, Ejection> {
        self.ejection.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn count_ejection(&self) {
        self.ejections_total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn status(&self, now: Instant) -> EndpointStatus {
        let until = self.ejection().until;
        EndpointStatus {
            addr: self.addr,
            weight: self.weight,
            healthy: self.is_healthy(),
            ejected_for: until.filter(|until| *until > now).map(|until| until - now),
            ejections_total: self.ejections_total.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            latency_ewma: std::time::Duration::from_nanos(self.latency.estimate(now) as u64),
            pool_idle: self.pool.idle_count(),
            pool_open: self.pool.open_count(),
        }
    }
}
