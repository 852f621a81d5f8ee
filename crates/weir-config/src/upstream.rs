//! The `upstreams` section of the file format: endpoints, balancing, pools, health checks and
//! outlier detection. Every default here is documented in docs/configuration.md#upstreams.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::values::{Authority, Duration, HeaderName, HeaderValue, Percent, StatusRange, UrlPath};

/// A named group of endpoints that routes send traffic to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub endpoints: Vec<Endpoint>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    #[serde(default)]
    pub pool: Pool,
    #[serde(default)]
    pub balance: Balance,
    /// The request key consistent hashing balances on.
    pub hash_key: Option<HashKey>,
    pub health_check: Option<HealthCheck>,
    #[serde(default)]
    pub outlier_detection: OutlierDetection,
    /// Re-resolve endpoint names on an interval (without it, names resolve once at load).
    pub dns: Option<Dns>,
    /// A circuit breaker for the whole upstream; none without it.
    pub breaker: Option<Breaker>,
    /// A cap on requests in flight to the upstream from all its routes; none without it.
    pub concurrency: Option<crate::resilience::Concurrency>,
    /// Faults injected into calls to the upstream, as if it failed.
    #[serde(default)]
    pub faults: Vec<crate::fault::Fault>,
    /// Connect to the endpoints over TLS.
    pub tls: Option<crate::tls::UpstreamTls>,
    /// The HTTP version spoken to the endpoints.
    #[serde(default)]
    pub protocol: crate::protocol::UpstreamProtocol,
    /// How HTTP/2 connections to the endpoints are used.
    #[serde(default)]
    pub http2: crate::protocol::Http2,
}

/// Circuit breaker settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Breaker {
    /// Share of failed calls over the window that opens the breaker (0: off).
    pub failure_rate: Percent,
    /// Share of calls slower than `slow_call_duration` that opens it (0: off).
    pub slow_call_rate: Percent,
    pub slow_call_duration: Duration,
    pub window: Duration,
    /// Calls the window must hold before a rate is judged.
    pub min_calls: u32,
    pub open_for: Duration,
    pub max_open_for: Duration,
    pub half_open_probes: u32,
    /// Upstream statuses that count as failed calls (gateway errors always do).
    pub failure_statuses: Vec<StatusRange>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            failure_rate: Percent(50),
            slow_call_rate: Percent(0),
            slow_call_duration: Duration::from_secs(1),
            window: Duration::from_secs(10),
            min_calls: 20,
            open_for: Duration::from_secs(5),
            max_open_for: Duration::from_secs(60),
            half_open_probes: 3,
            failure_statuses: vec![StatusRange(500..=599)],
        }
    }
}

/// DNS discovery: endpoint names resolved again and again, every address an endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    #[serde(default = "default_dns_refresh")]
    pub refresh: Duration,
    /// A DNS server to ask directly, instead of the system resolver.
    pub resolver: Option<std::net::SocketAddr>,
}

fn default_dns_refresh() -> Duration {
    Duration::from_secs(30)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

/// How a request's endpoint is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    Random,
    LeastRequest,
    ConsistentHash,
}

/// What consistent hashing takes from a request: `client_ip`, `path`, `{ header: name }` or
/// `{ cookie: name }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashKey {
    ClientIp,
    Path,
    Header(HeaderName),
    Cookie(String),
}

/// An endpoint: `host:port`, or `{ address: host:port, weight: 3 }`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub address: Authority,
    pub weight: u32,
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            address: Authority,
            #[serde(default = "default_weight")]
            weight: u32,
        }
        struct EndpointVisitor;
        impl<'de> Visitor<'de> for EndpointVisitor {
            type Value = Endpoint;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address like \"10.0.0.1:8080\" or { address: ..., weight: ... }")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Endpoint, E> {
                let address = text.parse().map_err(E::custom)?;
                Ok(Endpoint { address, weight: default_weight() })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Endpoint, A::Error> {
                let long = Long::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Endpoint { address: long.address, weight: long.weight })
            }
        }
        deserializer.deserialize_any(EndpointVisitor)
    }
}

fn default_weight() -> u32 {
    1
}

/// Connections to each endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pool {
    /// Idle connections kept per endpoint.
    pub max_idle: usize,
    /// An idle connection unused for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once per endpoint, idle or busy.
    pub max_connections: usize,
    /// How long a request waits for a connection when its endpoint is at `max_connections`.
    pub acquire_timeout: Duration,
    /// TCP keep-alive probes after this much silence on a connection (`0s`: off).
    pub tcp_keepalive: Duration,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            max_idle: 128,
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            acquire_timeout: Duration::from_secs(1),
            tcp_keepalive: Duration::from_secs(60),
        }
    }
}

/// Active health checking of every endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(rename = "type", default)]
    pub kind: HealthCheckKind,
    /// For HTTP checks: the path requested.
    #[serde(default = "default_health_path")]
    pub path: UrlPath,
    /// For HTTP checks: the `Host` header (default: the endpoint's address).
    pub host: Option<HeaderValue>,
    /// For HTTP checks: the statuses that mean healthy.
    #[serde(default = "default_expected_statuses")]
    pub expected_statuses: Vec<StatusRange>,
    /// For gRPC checks: the service asked about (empty: the server as a whole).
    #[serde(default)]
    pub service: String,
    #[serde(default = "default_health_interval")]
    pub interval: Duration,
    #[serde(default = "default_health_jitter")]
    pub jitter: Duration,
    #[serde(default = "default_health_timeout")]
    pub timeout: Duration,
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
}

/// What a health check sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    #[default]
    Http,
    Tcp,
    /// The gRPC health checking protocol (`grpc.health.v1.Health/Check`).
    Grpc,
}

fn default_health_path() -> UrlPath {
    UrlPath("/".into())
}
fn default_expected_statuses() -> Vec<StatusRange> {
    vec![StatusRange(200..=399)]
}
fn default_health_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_health_jitter() -> Duration {
    Duration::from_millis(500)
}
fn default_health_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_healthy_threshold() -> u32 {
    2
}
fn default_unhealthy_threshold() -> u32 {
    3
}

/// Passive outlier detection: ejecting endpoints for the answers they give.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierDetection {
    pub enabled: bool,
    /// Upstream 5xx answers and gateway errors in a row that eject (0: off).
    pub consecutive_5xx: u32,
    /// Gateway errors in a row (connect failure, reset, timeout, 502, 503, 504) that eject (0: off).
    pub consecutive_gateway_errors: u32,
    /// Share of failed requests (5xx, 429, gateway errors) over a window that ejects (0: off).
    pub failure_percentage: Percent,
    /// Requests in the window `failure_percentage` is judged over.
    pub failure_percentage_window: u32,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    /// At most this share of an upstream's endpoints is ejected at once (one may always be).
    pub max_ejection_percent: Percent,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            enabled: true,
            consecutive_5xx: 5,
            consecutive_gateway_errors: 5,
            failure_percentage: Percent(0),
            failure_percentage_window: 100,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: Percent(50),
        }
    }
}
