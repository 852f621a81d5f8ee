//! The `rate_limit` sections: rules on a route (`routes[].rate_limit`) and for every route
//! (`rate_limit.rules`), plus the settings they share (the key budget, Redis for global rules).
//! [`check`] validates them; the proxy compiles them into its rate-limit stage.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::file::one_or_many;
use crate::values::{Authority, Cidr, Duration, HeaderName};

pub(crate) mod check;

/// The top-level `rate_limit` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Rules every route applies, before its own.
    pub rules: Vec<RateLimitRule>,
    /// Keys each rule remembers at most, unless the rule sets its own `max_keys`.
    pub max_keys: usize,
    /// Where global rules keep their state; required when any rule has `mode: global`.
    pub redis: Option<Redis>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits { rules: Vec::new(), max_keys: 100_000, redis: None }
    }
}

/// One limit: requests sharing a key may pass at `rate`, `burst` at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRule {
    /// Names the rule in refusals, response fields and metrics; defaults to the key joined by `+`.
    #[serde(default)]
    pub name: Option<String>,
    /// What requests are counted together: one part or a list of parts.
    #[serde(deserialize_with = "one_or_many")]
    pub key: Vec<KeyPart>,
    pub rate: Rate,
    /// Requests a key may send at once; defaults to the rate's count.
    #[serde(default)]
    pub burst: Option<u32>,
    #[serde(default)]
    pub mode: LimitMode,
    /// Global rules only: what to do while Redis cannot be reached; `local` when not set.
    #[serde(default)]
    pub on_redis_error: Option<RedisFailure>,
    /// Send `RateLimit-Policy` and `RateLimit` on allowed responses too (429s always carry them).
    #[serde(default)]
    pub response_headers: bool,
    /// Overrides `rate_limit.max_keys` for this rule.
    #[serde(default)]
    pub max_keys: Option<usize>,
    /// Global rules only: requests' worth of a key's bucket taken from Redis per round trip, the
    /// rest served from memory for up to a second; 1 (one round trip per request) when not set.
    #[serde(default)]
    pub lease: Option<u32>,
    #[serde(default)]
    pub exempt: Exempt,
}

impl RateLimitRule {
    /// The configured name, or the key parts joined by `+`.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => self.key.iter().map(ToString::to_string).collect::<Vec<_>>().join("+"),
        }
    }

    /// What the rule does while Redis fails: as configured, else fall back to the local limiter.
    pub fn redis_failure(&self) -> RedisFailure {
        self.on_redis_error.unwrap_or_default()
    }

    /// The burst as configured, else the rate's count (at least 1).
    pub fn effective_burst(&self) -> u32 {
        self.burst.unwrap_or_else(|| u32::try_from(self.rate.count).unwrap_or(u32::MAX).max(1))
    }
}

/// Where a rule keeps its buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitMode {
    /// In this weir process: every instance has the whole rate.
    #[default]
    Local,
    /// In Redis, shared by every weir instance using it.
    Global,
}

/// What a global rule does when Redis fails or is too slow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisFailure {
    /// Decide on this instance's local limiter with the same rate and burst (fail open).
    #[default]
    Local,
    /// Refuse the request with 429 (fail closed).
    Refuse,
}

/// Requests a rule never limits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Exempt {
    /// Clients in these networks.
    pub cidrs: Vec<Cidr>,
    /// Requests carrying this header with this secret value.
    pub header: Option<ExemptHeader>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExemptHeader {
    pub name: HeaderName,
    /// Compared in constant time; at least 16 characters.
    pub secret: String,
}

/// The Redis server global rules use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    /// `host:port`; with `cluster`, any node of the cluster.
    pub address: Authority,
    /// The address is a node of a Redis Cluster: keys go to the node owning their slot.
    #[serde(default)]
    pub cluster: bool,
    #[serde(default = "default_redis_connect_timeout")]
    pub connect_timeout: Duration,
    /// How long one decision may wait for Redis before the rule's `on_redis_error` applies.
    #[serde(default = "default_redis_timeout")]
    pub timeout: Duration,
}

fn default_redis_connect_timeout() -> Duration {
    Duration::from_millis(500)
}
fn default_redis_timeout() -> Duration {
    Duration::from_millis(50)
}

/// One part of a rule's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The client's address: the peer, or for a trusted proxy the nearest untrusted
    /// `X-Forwarded-For` entry.
    ClientIp,
    /// The route's name: every request on the route counts together.
    Route,
    Header(HeaderName),
    Cookie(String),
    Query(String),
    /// A `{name}` parameter of the route's `path_template`.
    PathParam(String),
}

impl FromStr for KeyPart {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let invalid =
            || format!("invalid key {text:?}: use client_ip, route, header:NAME, cookie:NAME, query:NAME or path:NAME");
        match text.split_once(':') {
            None if text == "client_ip" => Ok(KeyPart::ClientIp),
            None if text == "route" => Ok(KeyPart::Route),
            None => Err(invalid()),
            Some((_, "")) => Err(invalid()),
            Some(("header", name)) => name.parse().map(KeyPart::Header).map_err(|_| invalid()),
            Some(("cookie", name)) => Ok(KeyPart::Cookie(name.to_string())),
            Some(("query", name)) => Ok(KeyPart::Query(name.to_string())),
            Some(("path", name)) => Ok(KeyPart::PathParam(name.to_string())),
            Some(_) => Err(invalid()),
        }
    }
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPart::ClientIp => f.write_str("client_ip"),
            KeyPart::Route => f.write_str("route"),
            KeyPart::Header(name) => write!(f, "header:{}", name.0),
            KeyPart::Cookie(name) => write!(f, "cookie:{name}"),
            KeyPart::Query(name) => write!(f, "query:{name}"),
            KeyPart::PathParam(name) => write!(f, "path:{name}"),
        }
    }
}

impl<'de> Deserialize<'de> for KeyPart {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A rate written as `100/s`, `6000/min`, `10/h` or `1000/d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub period: std::time::Duration,
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let invalid =
            || format!("invalid rate {text:?}: write it like \"100/s\", \"6000/min\", \"10/h\" or \"1000/d\"");
        let (count, unit) = text.split_once('/').ok_or_else(invalid)?;
        let count: u64 = count.trim().parse().ok().filter(|c| *c > 0).ok_or_else(invalid)?;
        let seconds = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86_400,
            _ => return Err(invalid()),
        };
        if count > 1_000_000_000 {
            return Err(format!("rate {text:?} is too high: at most 1000000000 per period"));
        }
        Ok(Rate { count, period: std::time::Duration::from_secs(seconds) })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
