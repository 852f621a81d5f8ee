//! The configuration file format: what users write, as serde types. Unknown fields are rejected and
//! every field has a documented default (docs/configuration.md). [`crate::validate`] checks what serde
//! cannot: references between sections and options that exclude each other.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::ratelimit::{RateLimitRule, RateLimits};
use crate::upstream::Upstream;
use crate::values::{
    ByteSize, Cidr, Duration, HeaderName, HeaderValue, HostPattern, Method, Pattern, StatusCode, UrlPath,
};

/// A whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub log: Log,
    /// JSON access logs, one line per request; off when absent.
    #[serde(default)]
    pub access_log: Option<AccessLog>,
    /// The admin API; off when absent.
    #[serde(default)]
    pub admin: Option<Admin>,
    /// Distributed tracing, exported over OTLP/gRPC; off when absent.
    #[serde(default)]
    pub tracing: Option<crate::Tracing>,
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, Upstream>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub rate_limit: RateLimits,
    /// The random seed for fault decisions and the limits on run-time fault experiments.
    #[serde(default)]
    pub fault_injection: crate::fault::FaultInjection,
}

/// Process-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Worker threads; 0 means one per CPU core, 1 runs a single-threaded runtime.
    pub workers: usize,
    /// How long in-flight requests may take to finish after SIGTERM or SIGINT.
    pub drain_timeout: Duration,
    /// After SIGTERM or SIGINT, how long readiness reports false while weir still accepts, so load
    /// balancers stop sending before the listeners close.
    pub drain_delay: Duration,
    /// Peers whose `X-Forwarded-*` and `Forwarded` headers are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Set `X-Forwarded-For/-Proto/-Host` and `Forwarded` on requests to upstreams.
    pub forwarded_headers: bool,
    pub request_id: RequestId,
    /// A request header holding the client's deadline in milliseconds (besides `grpc-timeout`).
    pub deadline_header: Option<HeaderName>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            workers: 0,
            drain_timeout: Duration::from_secs(30),
            drain_delay: Duration::from_secs(0),
            trusted_proxies: Vec::new(),
            forwarded_headers: true,
            request_id: RequestId::default(),
            deadline_header: None,
        }
    }
}

/// How each request gets its id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestId {
    /// Give requests ids at all.
    pub enabled: bool,
    /// The header carrying the id, to the upstream and back to the client.
    pub header: HeaderName,
    /// Keep an id the client sent (when it is a sane token) instead of generating one.
    pub keep_incoming: bool,
    /// Also set the id on the response to the client.
    pub in_response: bool,
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId {
            enabled: true,
            header: HeaderName(http::HeaderName::from_static("x-request-id")),
            keep_incoming: true,
            in_response: true,
        }
    }
}

/// The admin API's own listener: health, readiness and metrics.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    #[serde(default = "default_admin_address")]
    pub address: SocketAddr,
    /// A bearer token every admin request but `/healthz` must carry; required off loopback.
    #[serde(default)]
    pub token: Option<String>,
}

fn default_admin_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}

/// Where and how weir logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `weir_proxy=debug,info`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log { format: LogFormat::Text, level: "info".to_string() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Readable in a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// JSON access logs: where they go, which fields they hold, and which share of requests they cover.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLog {
    /// A file to append to (reopened on SIGUSR1); standard output when absent.
    pub path: Option<std::path::PathBuf>,
    /// The fields written, in a fixed order; all of them when absent.
    pub fields: Vec<AccessLogField>,
    /// Keep the query string in `path`.
    pub query: bool,
    /// The share of requests logged, from 0 to 1.
    pub sample_ratio: f64,
    /// Log every error (status 400 and above, refusals, clients that went away) whatever the ratio.
    pub always_log_errors: bool,
    /// Fixes the sampling sequence (for reproducible runs); random when absent.
    pub sample_seed: Option<u64>,
    /// Lines waiting for the writer; more are dropped and counted in `weir_access_log_dropped_total`.
    pub queue_lines: usize,
    /// Request headers written under `request_headers`, by name; secret ones as `[redacted]`.
    pub request_headers: Vec<HeaderName>,
    /// Response headers written under `response_headers`, by name; secret ones as `[redacted]`.
    pub response_headers: Vec<HeaderName>,
    /// Headers whose values are never written, besides `authorization`, `proxy-authorization`,
    /// `cookie` and `set-cookie`, which never are.
    pub secret_headers: Vec<HeaderName>,
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog {
            path: None,
            fields: Vec::new(),
            query: false,
            sample_ratio: 1.0,
            always_log_errors: true,
            sample_seed: None,
            queue_lines: 16_384,
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            secret_headers: Vec::new(),
        }
    }
}

/// A field of an access-log line; the name is its JSON key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogField {
    Time,
    RequestId,
    TraceId,
    Client,
    Method,
    Host,
    Path,
    Protocol,
    Status,
    BytesIn,
    BytesOut,
    DurationMs,
    Upstream,
    Attempts,
    Route,
    Reason,
    Faults,
    Aborted,
    UserAgent,
    TlsVersion,
    TlsSni,
    Alpn,
    TlsClientSubject,
    TlsClientSpiffeId,
}

/// A socket weir accepts client connections on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    #[serde(default = "default_protocols")]
    pub protocols: Vec<Protocol>,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A client must send a whole request head within this time (against slowloris).
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this time.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Duration,
    /// A cleartext HTTP/1.1 connection idle this long waits for its next request in the listener's
    /// shared poller, holding no task and no buffer; zero: never.
    #[serde(default = "default_idle_park_after")]
    pub idle_park_after: Duration,
    /// Largest request head (request line and headers).
    #[serde(default = "default_max_head_size")]
    pub max_head_size: ByteSize,
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    #[serde(default = "default_max_uri_length")]
    pub max_uri_length: ByteSize,
    /// Terminate TLS on this listener (see docs/tls.md).
    #[serde(default)]
    pub tls: Option<crate::tls::ListenerTls>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1 (and 1.0).
    Http1,
    /// HTTP/2 over cleartext with prior knowledge.
    H2c,
}

fn default_protocols() -> Vec<Protocol> {
    vec![Protocol::Http1, Protocol::H2c]
}
fn default_max_connections() -> usize {
    10_000
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_idle_park_after() -> Duration {
    Duration::from_secs(1)
}
fn default_max_head_size() -> ByteSize {
    ByteSize(16 * 1024)
}
fn default_max_headers() -> usize {
    100
}
fn default_max_uri_length() -> ByteSize {
    ByteSize(8 * 1024)
}

/// Which requests a route takes, and what it does with them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default)]
    pub name: Option<String>,
    /// Listeners this route serves; empty means all.
    #[serde(default)]
    pub listeners: Vec<String>,
    #[serde(rename = "match", default)]
    pub matches: Match,
    /// Proxy to this upstream...
    #[serde(default)]
    pub upstream: Option<String>,
    /// ...or answer directly.
    #[serde(default)]
    pub direct_response: Option<DirectResponse>,
    #[serde(default)]
    pub rewrite: Rewrite,
    #[serde(default)]
    pub request_headers: HeaderRewrite,
    #[serde(default)]
    pub response_headers: HeaderRewrite,
    /// How long to wait for the upstream's response headers.
    #[serde(default = "default_route_timeout")]
    pub timeout: Duration,
    /// Largest request body; larger ones are refused with 413.
    #[serde(default)]
    pub max_body_size: Option<ByteSize>,
    /// Longest silence in an upstream's response body before weir cuts it (`0s`: no limit).
    #[serde(default = "default_body_idle_timeout")]
    pub body_idle_timeout: Duration,
    /// Rate limits on this route, after the global ones; all must pass.
    #[serde(default)]
    pub rate_limit: Vec<RateLimitRule>,
    /// Retries of failed requests; none without it.
    #[serde(default)]
    pub retry: Option<crate::resilience::Retry>,
    /// Served while the upstream's circuit breaker is open.
    #[serde(default)]
    pub fallback: Option<crate::resilience::Fallback>,
    /// A cap on this route's requests in flight; none without it.
    #[serde(default)]
    pub concurrency: Option<crate::resilience::Concurrency>,
    /// Faults injected into a share of this route's requests.
    #[serde(default)]
    pub faults: Vec<crate::fault::Fault>,
    /// Faults requests may ask for in `x-weir-fault-*` headers; ignored without this.
    #[serde(default)]
    pub header_faults: Option<crate::fault::HeaderFaults>,
    /// WebSocket upgrades tunneled to the upstream.
    #[serde(default)]
    pub websocket: crate::websocket::WebSocket,
}

fn default_body_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_route_timeout() -> Duration {
    Duration::from_secs(15)
}

/// Conditions a request must meet, all of them, for the route to take it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Match {
    #[serde(deserialize_with = "one_or_many")]
    pub host: Vec<HostPattern>,
    pub path: Option<UrlPath>,
    pub path_prefix: Option<UrlPath>,
    /// Segments, `{name}` parameters and a final `{*rest}`: `/users/{id}/posts`.
    pub path_template: Option<String>,
    pub path_regex: Option<Pattern>,
    #[serde(deserialize_with = "one_or_many")]
    pub method: Vec<Method>,
    pub headers: Vec<ValueMatch<HeaderName>>,
    pub query: Vec<ValueMatch<String>>,
    /// The SPIFFE ID of the client's verified certificate (listeners with `tls.client_auth`).
    pub client_spiffe_id: Option<String>,
    /// A gRPC service, or one method of it (instead of a path condition).
    pub grpc: Option<crate::protocol::GrpcMatch>,
}

/// A condition on one header or query parameter: exactly one of `exact`, `regex`, `present`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueMatch<N> {
    pub name: N,
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub regex: Option<Pattern>,
    #[serde(default)]
    pub present: Option<bool>,
}

/// A response weir makes itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectResponse {
    pub status: StatusCode,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub headers: HeaderList,
}

/// Changes to the request before it goes upstream. At most one path rewrite.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rewrite {
    /// Replace the whole path.
    pub path: Option<UrlPath>,
    /// Replace the part matched by `match.path_prefix` with this.
    pub replace_prefix: Option<UrlPath>,
    /// Remove the part matched by `match.path_prefix`.
    pub strip_prefix: bool,
    /// Replace every match of a pattern; `$1` or `${name}` refer to groups.
    pub path_regex: Option<RegexRewrite>,
    /// Send this `Host` upstream instead of the client's.
    pub host: Option<HeaderValue>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexRewrite {
    pub pattern: Pattern,
    pub replacement: String,
}

/// Header edits: `add` appends, `set` replaces, `remove` deletes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderRewrite {
    pub add: HeaderList,
    pub set: HeaderList,
    pub remove: Vec<HeaderName>,
}

impl HeaderRewrite {
    pub fn is_empty(&self) -> bool {
        self.add.0.is_empty() && self.set.0.is_empty() && self.remove.is_empty()
    }
}

/// Headers written as a map, kept in file order.
#[derive(Debug, Clone, Default)]
pub struct HeaderList(pub Vec<(HeaderName, HeaderValue)>);

impl<'de> Deserialize<'de> for HeaderList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = HeaderList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of header names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeaderList, A::Error> {
                let mut list = Vec::new();
                while let Some(entry) = map.next_entry::<HeaderName, HeaderValue>()? {
                    list.push(entry);
                }
                Ok(HeaderList(list))
            }
        }
        deserializer.deserialize_map(ListVisitor)
    }
}

/// Reads either one value written as a string or a list of them.
pub(crate) fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + FromStr,
    T::Err: fmt::Display,
{
    struct OneOrMany<T>(PhantomData<T>);
    impl<'de, T> Visitor<'de> for OneOrMany<T>
    where
        T: Deserialize<'de> + FromStr,
        T::Err: fmt::Display,
    {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<T>, E> {
            text.parse().map(|one| vec![one]).map_err(E::custom)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut many = Vec::new();
            while let Some(one) = seq.next_element()? {
                many.push(one);
            }
            Ok(many)
        }
    }
    deserializer.deserialize_any(OneOrMany(PhantomData))
}
