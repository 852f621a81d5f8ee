//! A route compiled for the request path: its conditions, what it does, and the edits it makes.
//! Everything here is built once per configuration load; serving a request only reads it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderMap;
use http::{HeaderName, HeaderValue, StatusCode};
use weir_telemetry::RouteMetrics;
use weir_upstream::Cluster;

use crate::body::RequestBody;
use crate::router::Conditions;
use crate::stages::concurrency::ConcurrencyStage;
use crate::stages::fault::RouteFaults;
use crate::stages::rate_limit::RateLimitStage;

/// A compiled route.
pub struct Route {
    /// The configured name, or `routes[N]`.
    pub name: Arc<str>,
    pub metrics: RouteMetrics,
    pub path: PathMatcher,
    pub conditions: Conditions,
    pub faults: RouteFaults,
    pub rate_limit: RateLimitStage,
    pub concurrency: ConcurrencyStage,
    pub action: Action,
    pub rewrite: PathRewrite,
    pub host_rewrite: Option<HeaderValue>,
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
    pub timeout: Duration,
    /// Largest request body in bytes; `u64::MAX` when unlimited.
    pub max_body: u64,
    /// Longest silence in an upstream's response body before weir cuts it; `None` waits forever.
    pub body_idle_timeout: Option<Duration>,
    /// Retries of failed tries, with the route's budget.
    pub retry: Option<weir_resilience::retry::RetryPolicy>,
    /// Served while the upstream's breaker is open.
    pub fallback: Option<Fallback>,
    /// WebSocket tunnels; `None` when the route does not tunnel.
    pub websocket: Option<crate::proxy::tunnel::TunnelRoute>,
}

/// A route's answer while its upstream's breaker is open.
pub enum Fallback {
    Upstream(Arc<Cluster<RequestBody>>),
    Direct(DirectResponse),
}

/// How a route's path condition is written.
pub enum PathMatcher {
    Exact(Box<str>),
    /// Matches the prefix at a segment boundary: `/api` takes `/api` and `/api/x`, not `/apix`.
    Prefix(Box<str>),
    Template(Box<str>),
    Regex(regex::Regex),
}

/// What a route does with a request it takes.
pub enum Action {
    Proxy(Arc<Cluster<RequestBody>>),
    Direct(DirectResponse),
}

/// A response made by weir, prepared at load time.
pub struct DirectResponse {
    pub status: StatusCode,
    pub body: Bytes,
    pub headers: HeaderMap,
}

/// How the path sent upstream differs from the client's.
pub enum PathRewrite {
    Keep,
    Replace(Box<str>),
    /// Replace the first `prefix_len` bytes (the route's matched prefix) with `with`.
    ReplacePrefix {
        prefix_len: usize,
        with: Box<str>,
    },
    Regex {
        pattern: regex::Regex,
        replacement: Box<str>,
    },
}

impl PathRewrite {
    /// The new path, or `None` when it stays as it is.
    pub fn apply(&self, path: &str) -> Option<String> {
        match self {
            PathRewrite::Keep => None,
            PathRewrite::Replace(with) => Some(with.to_string()),
            PathRewrite::ReplacePrefix { prefix_len, with } => Some(join_paths(with, &path[*prefix_len..])),
            PathRewrite::Regex { pattern, replacement } => match pattern.replace_all(path, replacement.as_ref()) {
                std::borrow::Cow::Borrowed(_) => None,
                std::borrow::Cow::Owned(new) if new.starts_with('/') => Some(new),
                std::borrow::Cow::Owned(new) => Some(format!("/{new}")),
            },
        }
    }
}

/// `base` followed by `rest` with exactly one `/` between them and a leading `/`.
fn join_paths(base: &str, rest: &str) -> String {
    let base = base.trim_end_matches('/');
    let rest = rest.trim_start_matches('/');
    match (base.is_empty(), rest.is_empty()) {
        (true, true) => "/".to_string(),
        (true, false) => format!("/{rest}"),
        (false, true) => base.to_string(),
        (false, false) => format!("{base}/{rest}"),
    }
}

/// Header edits, applied in order: remove, set, add.
#[derive(Default)]
pub struct HeaderEdits {
    pub remove: Vec<HeaderName>,
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderEdits {
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rewrites_keep_one_slash() {
        let strip = PathRewrite::ReplacePrefix { prefix_len: 4, with: "/".into() };
        assert_eq!(strip.apply("/api/users").as_deref(), Some("/users"));
        assert_eq!(strip.apply("/api").as_deref(), Some("/"));
        let replace = PathRewrite::ReplacePrefix { prefix_len: 4, with: "/v2/".into() };
        assert_eq!(replace.apply("/api/users").as_deref(), Some("/v2/users"));
        assert_eq!(replace.apply("/api").as_deref(), Some("/v2"));
    }

    #[test]
    fn regex_rewrite_uses_groups() {
        let rewrite = PathRewrite::Regex {
            pattern: regex::Regex::new("^/users/([0-9]+)$").unwrap(),
            replacement: "/v2/user/$1".into(),
        };
        assert_eq!(rewrite.apply("/users/42").as_deref(), Some("/v2/user/42"));
        assert_eq!(rewrite.apply("/teams/1"), None);
    }
}
