//! The HTTP version an upstream speaks (`protocol`) and how its HTTP/2 connections are used
//! (`http2`). Every default here is documented in docs/configuration.md#upstreams.

use serde::Deserialize;

use crate::file::Route;
use crate::upstream::{HealthCheckKind, Upstream};
use crate::validate::Checker;
use crate::values::Duration;

/// The HTTP version spoken to an upstream's endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    /// HTTP/2: by ALPN over TLS, by prior knowledge (h2c) in cleartext.
    Http2,
    /// What each endpoint picks by ALPN, HTTP/2 preferred; needs `tls`.
    Auto,
}

/// HTTP/2 connections to an upstream's endpoints.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Http2 {
    /// Streams weir opens at once on one connection before it opens another.
    pub max_concurrent_streams: u32,
    /// A PING after this much silence on a connection (`0s`: none).
    pub keepalive_interval: Duration,
    /// A connection whose PING goes unanswered for this long is closed.
    pub keepalive_timeout: Duration,
}

impl Default for Http2 {
    fn default() -> Self {
        Http2 {
            max_concurrent_streams: 100,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

/// Streams on one connection are capped where the HTTP/2 default window leaves each a useful share.
const MAX_STREAMS: u32 = 10_000;

pub(crate) fn check_protocol(checker: &mut Checker, field: &str, upstream: &Upstream) {
    if upstream.protocol == UpstreamProtocol::Auto && upstream.tls.is_none() {
        checker.fail(
            format!("{field}.protocol"),
            "auto picks the version by ALPN, which needs tls; in cleartext choose http1 or http2 (h2c)".into(),
        );
    }
    let streams = upstream.http2.max_concurrent_streams;
    if !(1..=MAX_STREAMS).contains(&streams) {
        checker.fail(format!("{field}.http2.max_concurrent_streams"), format!("must be between 1 and {MAX_STREAMS}"));
    }
    if upstream.http2.keepalive_timeout.0.is_zero() {
        checker.fail(format!("{field}.http2.keepalive_timeout"), "must be longer than zero".into());
    }
    let grpc_check = upstream.health_check.as_ref().is_some_and(|c| c.kind == HealthCheckKind::Grpc);
    if grpc_check && upstream.protocol == UpstreamProtocol::Http1 {
        checker.fail(
            format!("{field}.health_check.type"),
            "gRPC health checks speak HTTP/2: set protocol: http2 (or auto with tls)".into(),
        );
    }
}

/// A route for a gRPC service, or one method of it: the path `/{service}/{method}` (or the prefix
/// `/{service}/`) and a `content-type` of `application/grpc`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GrpcMatch {
    /// The fully qualified service name: `package.Service`.
    pub service: String,
    /// One method of the service; all of them without it.
    pub method: Option<String>,
}

impl GrpcMatch {
    /// The request path (with `method`) or path prefix (without) the route takes.
    pub fn path(&self) -> String {
        match &self.method {
            Some(method) => format!("/{}/{method}", self.service),
            None => format!("/{}/", self.service),
        }
    }
}

pub(crate) fn check_grpc_match(checker: &mut Checker, field: &str, route: &Route) {
    let m = &route.matches;
    let Some(grpc) = &m.grpc else { return };
    let field = format!("{field}.match.grpc");
    if m.path.is_some() || m.path_prefix.is_some() || m.path_template.is_some() || m.path_regex.is_some() {
        checker.fail(field.clone(), "grpc sets the route's path: use it without path conditions".into());
    }
    let name_part = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !grpc.service.split('.').all(name_part) {
        checker
            .fail(format!("{field}.service"), format!("{:?} is not a service name like package.Service", grpc.service));
    }
    if let Some(method) = &grpc.method
        && !name_part(method)
    {
        checker.fail(format!("{field}.method"), format!("{method:?} is not a method name (letters, digits, '_')"));
    }
}
