//! The resilience parts of the file format: a route's `retry` policy, and the deadline header read
//! from clients. Defaults are documented in docs/configuration.md and docs/resilience.md.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::values::{ByteSize, Duration, Percent};

/// When and how often a route retries a failed request.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Tries in all, the first included.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// What failures are retried.
    #[serde(default = "default_retry_on")]
    pub on: Vec<RetryOn>,
    /// Longest wait for one try's response head (default: the route's whole budget).
    pub per_try_timeout: Option<Duration>,
    #[serde(default)]
    pub backoff: Backoff,
    /// Retry methods that are not idempotent too (they are retried anyway with an `Idempotency-Key`).
    #[serde(default)]
    pub non_idempotent: bool,
    /// Largest request body held back so it can be sent again; larger bodies are tried once.
    #[serde(default = "default_replay_body")]
    pub max_replay_body: ByteSize,
    #[serde(default)]
    pub budget: Budget,
}

fn default_attempts() -> u32 {
    3
}
fn default_retry_on() -> Vec<RetryOn> {
    vec![RetryOn::ConnectFailure, RetryOn::Reset, RetryOn::Status(503)]
}
fn default_replay_body() -> ByteSize {
    ByteSize(64 * 1024)
}

/// A failure a route may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn {
    ConnectFailure,
    Reset,
    Timeout,
    /// One HTTP status from the upstream.
    Status(u16),
    /// Any 5xx from the upstream.
    ServerErrors,
    /// A gRPC status code (by number) in a trailers-only response.
    Grpc(u8),
}

const GRPC_CODES: [(&str, u8); 6] = [
    ("cancelled", 1),
    ("deadline_exceeded", 4),
    ("resource_exhausted", 8),
    ("aborted", 10),
    ("internal", 13),
    ("unavailable", 14),
];

impl std::str::FromStr for RetryOn {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let named = match text {
            "connect_failure" => Some(RetryOn::ConnectFailure),
            "reset" => Some(RetryOn::Reset),
            "timeout" => Some(RetryOn::Timeout),
            "5xx" => Some(RetryOn::ServerErrors),
            _ => None,
        };
        if let Some(on) = named {
            return Ok(on);
        }
        if let Some((_, code)) = GRPC_CODES.iter().find(|(name, _)| format!("grpc_{name}") == text) {
            return Ok(RetryOn::Grpc(*code));
        }
        match text.parse::<u16>() {
            Ok(status) if (100..600).contains(&status) => Ok(RetryOn::Status(status)),
            _ => Err(format!(
                "unknown retry condition {text:?}: use connect_failure, reset, timeout, 5xx, a status like 503, or \
                 grpc_cancelled, grpc_deadline_exceeded, grpc_resource_exhausted, grpc_aborted, grpc_internal, \
                 grpc_unavailable"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for RetryOn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OnVisitor;
        impl Visitor<'_> for OnVisitor {
            type Value = RetryOn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a retry condition like connect_failure or 503")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<RetryOn, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RetryOn, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<RetryOn, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(OnVisitor)
    }
}

/// Exponential backoff with full jitter between tries.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_millis(25), max: Duration::from_millis(250) }
    }
}

/// How many retries a route may add to its traffic.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Budget {
    /// Retries as a share of the requests of the last ten seconds.
    pub ratio: Percent,
    /// Retries allowed each second whatever the traffic.
    pub min_per_second: u32,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { ratio: Percent(20), min_per_second: 10 }
    }
}

/// What a route answers with while its upstream's circuit breaker is open: another upstream, or a
/// response of its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fallback {
    pub upstream: Option<String>,
    pub direct_response: Option<crate::file::DirectResponse>,
}

/// A cap on requests in flight (for a route, or for an upstream across its routes), with a bounded
/// queue in front of it. Requests beyond both are shed with 503.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    /// Requests in flight at once; the starting limit when `adaptive` is set.
    pub max_in_flight: u32,
    /// Requests that may wait for a slot; 0 sheds as soon as the limit is reached.
    #[serde(default)]
    pub max_queue: u32,
    /// Longest wait for a slot (the request's deadline may cut it shorter).
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout: Duration,
    /// Let the limit follow the upstream's latency; off without it.
    pub adaptive: Option<AdaptiveConcurrency>,
}

fn default_queue_timeout() -> Duration {
    Duration::from_millis(100)
}

/// Bounds and sensitivity of an adaptive concurrency limit.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveConcurrency {
    pub min: u32,
    pub max: u32,
    /// How many times slower than usual recent requests may be before the limit shrinks.
    pub tolerance: f64,
}

impl Default for AdaptiveConcurrency {
    fn default() -> Self {
        AdaptiveConcurrency { min: 1, max: 1000, tolerance: 2.0 }
    }
}

/// Checks a `concurrency` block at `field`.
pub(crate) fn check_concurrency(checker: &mut crate::validate::Checker, field: &str, limit: &Concurrency) {
    if !(1..=1_000_000).contains(&limit.max_in_flight) {
        checker.fail(format!("{field}.max_in_flight"), "must be between 1 and 1000000".into());
    }
    if limit.max_queue > 1_000_000 {
        checker.fail(format!("{field}.max_queue"), "must be at most 1000000".into());
    }
    if limit.max_queue > 0 && limit.queue_timeout.0.is_zero() {
        checker.fail(format!("{field}.queue_timeout"), "must be longer than zero when max_queue is set".into());
    }
    let Some(adaptive) = &limit.adaptive else { return };
    if adaptive.min == 0 || adaptive.max < adaptive.min || adaptive.max > 1_000_000 {
        checker.fail(format!("{field}.adaptive"), "needs 1 <= min <= max <= 1000000".into());
    }
    if !(1.0..=100.0).contains(&adaptive.tolerance) {
        checker.fail(format!("{field}.adaptive.tolerance"), "must be between 1.0 and 100.0, like 2.0".into());
    }
}
