//! The fault stage: the first of a route's stages. It decides, per request, which faults to inject
//! (a delay, an abort, a throttled response body) from three sources: the route's configured
//! `faults`, the `x-weir-fault-*` headers on routes that enable them, and run-time experiments
//! aimed at the route. Faults on calls to an upstream are decided later, per try, in the proxy
//! ([`UpstreamFaults`]), so the resilience stages see them as they would a real failure.
//!
//! Deciding rolls a shared random source once per fault that could apply; a route with no fault
//! and no running experiment pays one atomic load.

mod compile;
pub mod experiments;
mod header;
mod persist;
mod route;
pub mod throttle;
mod upstream;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http::request::Parts;
use weir_config::values::Cidr;
use weir_telemetry::FaultCounters;
use weir_upstream::BalanceRng;

use crate::refusal::Refusal;
use crate::router::Conditions;
use crate::upstream_notes;

pub use compile::compile_fault;
pub use experiments::{Experiment, ExperimentError, Experiments, Target};
pub use route::{Deciding, RouteFaults};
pub use upstream::UpstreamFaults;

/// Indexes of the kinds in `weir_telemetry::FAULT_KINDS`.
const DELAY: usize = 0;
const ABORT: usize = 1;
const RESET: usize = 2;
const THROTTLE: usize = 3;

/// One compiled fault.
pub struct Fault {
    pub action: Action,
    /// Share of eligible requests, in parts per million.
    pub per_million: u32,
    /// Route faults: the conditions a request must meet.
    pub when: Option<When>,
    /// Upstream faults: only calls to this endpoint.
    pub endpoint: Option<SocketAddr>,
    pub counters: FaultCounters,
}

impl Fault {
    /// Whether the fault has something to do to a request of this kind (a gRPC-only abort leaves
    /// HTTP requests alone).
    fn applies(&self, grpc: bool) -> bool {
        match self.action {
            Action::Abort(abort) => abort.applies(grpc),
            _ => true,
        }
    }
}

/// Everything fault injection needs in a snapshot: the random source, the upstreams' configured
/// faults, and the process's experiments (shared by every snapshot).
pub struct Faults {
    pub dice: Arc<Dice>,
    pub upstreams: UpstreamFaults,
    pub experiments: Arc<Experiments>,
}

impl Faults {
    pub fn build(
        config: &weir_config::Config,
        metrics: &weir_telemetry::Metrics,
        experiments: Arc<Experiments>,
    ) -> Faults {
        Faults {
            dice: Dice::new(config.fault_injection.seed),
            upstreams: UpstreamFaults::build(config, metrics),
            experiments,
        }
    }

    /// The faults one try on `endpoint` of `upstream` gets.
    pub fn for_try(&self, upstream: &str, endpoint: SocketAddr, grpc: bool) -> Injected {
        self.upstreams.decide(upstream, endpoint, grpc, &self.dice, &self.experiments)
    }
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Delay(Delay),
    Abort(Abort),
    /// Response bodies sent at most this many bytes per second.
    Throttle(u64),
}

/// How long a delay lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    Fixed(Duration),
    Uniform { min: Duration, max: Duration },
}

/// How an abort ends the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// Answer with `http` (HTTP requests) or `grpc` (gRPC requests; mapped from `http` when not
    /// set). A fault with only `grpc` leaves HTTP requests alone.
    Status { http: Option<StatusCode>, grpc: Option<u8> },
    /// Close the connection (HTTP/2: reset the stream) without an answer.
    Reset,
}

impl Abort {
    /// Whether the abort has an answer for a request of this kind.
    fn applies(self, grpc: bool) -> bool {
        match self {
            Abort::Status { http: None, .. } => grpc,
            _ => true,
        }
    }
}

/// A route fault's conditions.
pub struct When {
    pub conditions: Conditions,
    pub path_prefix: Option<Box<str>>,
    pub clients: Vec<Cidr>,
}

impl When {
    fn passes(&self, parts: &Parts, client: IpAddr) -> bool {
        self.path_prefix.as_deref().is_none_or(|prefix| parts.uri.path().starts_with(prefix))
            && (self.clients.is_empty() || self.clients.iter().any(|net| net.contains(client)))
            && self.conditions.pass(parts)
    }
}

/// The faults decided for one request (or one try).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Injected {
    pub delay: Option<Duration>,
    pub abort: Option<Abort>,
    pub throttle: Option<u64>,
}

impl Injected {
    pub fn is_empty(&self) -> bool {
        self.delay.is_none() && self.abort.is_none() && self.throttle.is_none()
    }

    /// Adds a fault that hit. Delays add up; the first abort and the slowest throttle win.
    fn add(&mut self, action: Action, dice: &Dice, counters: &FaultCounters) {
        let noted = |kind| {
            counters.injected(kind);
            upstream_notes::fault(kind);
        };
        match action {
            Action::Delay(delay) => {
                self.delay = Some(self.delay.unwrap_or_default() + dice.duration(delay));
                noted(DELAY);
            }
            Action::Abort(abort) if self.abort.is_none() => {
                self.abort = Some(abort);
                noted(if abort == Abort::Reset { RESET } else { ABORT });
            }
            Action::Abort(_) => {}
            Action::Throttle(rate) => {
                self.throttle = Some(self.throttle.map_or(rate, |slowest| slowest.min(rate)));
                noted(THROTTLE);
            }
        }
    }
}

/// The random source faults roll: seeded from the configuration for repeatable runs, else from
/// the clock.
pub struct Dice(BalanceRng);

impl Dice {
    pub fn new(seed: Option<u64>) -> Arc<Dice> {
        Arc::new(Dice(seed.map_or_else(BalanceRng::from_entropy, BalanceRng::seeded)))
    }

    /// True for `per_million` out of every million rolls, on average.
    pub fn hits(&self, per_million: u32) -> bool {
        match per_million {
            0 => false,
            1_000_000.. => true,
            share => self.0.below(1_000_000) < share as usize,
        }
    }

    /// How long a delay lasts this time.
    pub fn duration(&self, delay: Delay) -> Duration {
        match delay {
            Delay::Fixed(delay) => delay,
            Delay::Uniform { min, max } => {
                let span = max.saturating_sub(min).as_nanos() as u64;
                let offset = ((u128::from(self.0.next_u64()) * u128::from(span + 1)) >> 64) as u64;
                min + Duration::from_nanos(offset)
            }
        }
    }
}

/// The refusal an injected abort answers with; `reset` is what a reset becomes (the client's
/// connection closing before the route, a reset upstream connection on a try).
pub fn abort_refusal(abort: Abort, reset: Refusal) -> Refusal {
    match abort {
        Abort::Reset => reset,
        Abort::Status { http, grpc } => {
            Refusal::FaultAbort { status: http.unwrap_or(StatusCode::SERVICE_UNAVAILABLE), grpc }
        }
    }
}

/// Whether a request is gRPC: its answers from weir are made in gRPC form.
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers.get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}
