//! The fault-injection parts of the file format: faults a route injects (`routes[].faults`), faults
//! on calls to an upstream (`upstreams.NAME.faults`), faults requests ask for in headers
//! (`routes[].header_faults`), and the process-wide `fault_injection` section (the random seed and
//! the limits on run-time experiments). [`check`] validates them; the proxy compiles them into its
//! fault stage. The same [`Fault`] shape is what the admin API takes for an experiment.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::file::{ValueMatch, one_or_many};
use crate::values::{ByteSize, Cidr, Duration, HeaderName, Method, StatusCode, UrlPath};

pub(crate) mod check;
mod grpc;

pub use check::{FaultPlace, fault_problems};
pub use grpc::GrpcCode;

/// One fault: exactly one of `delay`, `abort` and `throttle`, injected into `percent` of the
/// requests that meet `when`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    #[serde(default)]
    pub delay: Option<Delay>,
    #[serde(default)]
    pub abort: Option<Abort>,
    #[serde(default)]
    pub throttle: Option<Throttle>,
    /// Share of eligible requests that get the fault; all of them when not set.
    #[serde(default)]
    pub percent: FaultPercent,
    /// Routes only: conditions a request must meet to be eligible.
    #[serde(default)]
    pub when: FaultConditions,
    /// Upstreams only: inject only into calls to this endpoint (`host:port`, as listed or resolved).
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// How long a delayed request waits: `250ms`, or a range `{ min: 100ms, max: 1s }` drawn uniformly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    Fixed(std::time::Duration),
    Uniform { min: std::time::Duration, max: std::time::Duration },
}

impl<'de> Deserialize<'de> for Delay {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DelayVisitor;
        impl<'de> Visitor<'de> for DelayVisitor {
            type Value = Delay;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration like \"250ms\", or a range like { min: 100ms, max: 1s }")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Delay, E> {
                text.parse::<Duration>().map(|d| Delay::Fixed(d.0)).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Delay, A::Error> {
                let (mut min, mut max) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "min" => min = Some(map.next_value::<Duration>()?.0),
                        "max" => max = Some(map.next_value::<Duration>()?.0),
                        other => return Err(de::Error::unknown_field(other, &["min", "max"])),
                    }
                }
                match (min, max) {
                    (Some(min), Some(max)) => Ok(Delay::Uniform { min, max }),
                    _ => Err(de::Error::custom("a delay range needs both min and max")),
                }
            }
        }
        deserializer.deserialize_any(DelayVisitor)
    }
}

impl Delay {
    /// The longest the delay can be.
    pub fn longest(self) -> std::time::Duration {
        match self {
            Delay::Fixed(delay) => delay,
            Delay::Uniform { max, .. } => max,
        }
    }
}

/// How an aborted request ends: an HTTP status, a gRPC status for gRPC requests, or a reset
/// connection. With only `grpc_status`, requests that are not gRPC are left alone.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Abort {
    pub status: Option<StatusCode>,
    pub grpc_status: Option<GrpcCode>,
    /// Close the connection without an answer (HTTP/2: reset the stream).
    pub reset: bool,
}

/// Response bodies sent no faster than this.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    pub bytes_per_second: ByteSize,
}

/// A share of requests from 0 to 100, fractions allowed: `5`, `"0.1%"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultPercent(pub f64);

impl Default for FaultPercent {
    fn default() -> Self {
        FaultPercent(100.0)
    }
}

impl FaultPercent {
    /// The share in parts per million, the unit the fault stage rolls in.
    pub fn per_million(self) -> u32 {
        (self.0 * 10_000.0).round() as u32
    }
}

impl FromStr for FaultPercent {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let digits = text.trim().trim_end_matches('%').trim_end();
        let invalid = || format!("invalid percentage {text:?}: write a number from 0 to 100, like 5, 0.1 or \"0.1%\"");
        let value = digits.parse::<f64>().map_err(|_| invalid())?;
        (value.is_finite() && (0.0..=100.0).contains(&value)).then_some(FaultPercent(value)).ok_or_else(invalid)
    }
}

impl<'de> Deserialize<'de> for FaultPercent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PercentVisitor;
        impl Visitor<'_> for PercentVisitor {
            type Value = FaultPercent;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a percentage like 5, 0.1 or \"0.1%\"")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<FaultPercent, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<FaultPercent, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<FaultPercent, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<FaultPercent, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(PercentVisitor)
    }
}

/// Conditions on a route's request, all of which must hold for a fault to apply.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConditions {
    #[serde(deserialize_with = "one_or_many")]
    pub method: Vec<Method>,
    pub headers: Vec<ValueMatch<HeaderName>>,
    pub path_prefix: Option<UrlPath>,
    /// Client addresses (after trusted proxies), as networks.
    #[serde(deserialize_with = "one_or_many")]
    pub client: Vec<Cidr>,
}

impl FaultConditions {
    pub fn is_empty(&self) -> bool {
        self.method.is_empty() && self.headers.is_empty() && self.path_prefix.is_none() && self.client.is_empty()
    }
}

/// Faults a request asks for in `x-weir-fault-*` headers, honoured only on routes that have this.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderFaults {
    /// When set, only requests carrying it in `secret_header` get their faults.
    pub secret: Option<String>,
    pub secret_header: HeaderName,
    /// Longest delay a request may ask for.
    pub max_delay: Duration,
}

impl Default for HeaderFaults {
    fn default() -> Self {
        HeaderFaults {
            secret: None,
            secret_header: "x-weir-fault-secret".parse().expect("a valid header name"),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// The top-level `fault_injection` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FaultInjection {
    /// Seeds the random source that decides which requests get a fault, for repeatable runs.
    pub seed: Option<u64>,
    /// Where experiments created with `persist: true` are kept across restarts.
    pub state_file: Option<PathBuf>,
    /// Experiments that may run at once.
    pub max_experiments: usize,
    /// Longest time-to-live an experiment may ask for.
    pub max_ttl: Duration,
}

impl Default for FaultInjection {
    fn default() -> Self {
        FaultInjection { seed: None, state_file: None, max_experiments: 64, max_ttl: Duration::from_secs(24 * 3600) }
    }
}

/// A fault experiment as the admin API takes it: a target, a time-to-live, and the fields of one
/// [`Fault`] beside them in the same JSON object.
#[derive(Debug, Clone)]
pub struct ExperimentSpec {
    /// A label for people; the experiment's id is made by weir.
    pub name: Option<String>,
    /// The route to inject into (by name)...
    pub route: Option<String>,
    /// ...or the upstream whose calls to inject into.
    pub upstream: Option<String>,
    /// The experiment ends by itself this long after it starts.
    pub ttl: Duration,
    /// Keep the experiment across a restart (needs `fault_injection.state_file`).
    pub persist: bool,
    /// The fault the experiment injects.
    pub fault: Fault,
}

/// The experiment's own fields; everything else in the object is the fault's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentFields {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    upstream: Option<String>,
    ttl: Duration,
    #[serde(default)]
    persist: bool,
}

const EXPERIMENT_FIELDS: [&str; 5] = ["name", "route", "upstream", "ttl", "persist"];

impl ExperimentSpec {
    /// Reads an experiment from its JSON object. Unknown fields are refused, as in the file.
    pub fn from_json(value: serde_json::Value) -> Result<ExperimentSpec, serde_json::Error> {
        let serde_json::Value::Object(mut fault) = value else {
            return Err(de::Error::custom("an experiment is a JSON object"));
        };
        let own: serde_json::Map<String, serde_json::Value> =
            EXPERIMENT_FIELDS.iter().filter_map(|key| fault.remove_entry(*key)).collect();
        let own: ExperimentFields = serde_json::from_value(serde_json::Value::Object(own))?;
        let fault: Fault = serde_json::from_value(serde_json::Value::Object(fault))?;
        let ExperimentFields { name, route, upstream, ttl, persist } = own;
        Ok(ExperimentSpec { name, route, upstream, ttl, persist, fault })
    }
}
