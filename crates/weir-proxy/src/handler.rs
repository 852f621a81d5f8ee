//! One request's way through weir. [`serve_request`] reads top to bottom as the request path:
//! refusals raised by the connection, the snapshot, the request id, route matching, then the route's
//! action (a direct response, or forwarding to an upstream), then response edits, and the request's
//! metrics (counted by status and refusal reason, timed to the end of the response body).

use std::borrow::Cow;
use std::time::Instant;

use http::header::HOST;
use http::request::Parts;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use weir_telemetry::RouteMetrics;

use crate::body::{ResponseBody, TimedBody};
use crate::forward::{self, Peer};
use crate::framing::Violation;
use crate::proxy::proxy;
use crate::refusal::Refusal;
use crate::route::{Action, DirectResponse, Route};
use crate::router::RouteId;
use crate::server::Gateway;
use crate::snapshot::Snapshot;

/// What a request needs to know about the connection it came on.
pub struct ConnContext {
    /// Index of the listener in the snapshot's listener order.
    pub listener: usize,
    pub peer: Peer,
    pub max_uri_length: usize,
}

/// Serves one request. `violation` is what the connection's framing guard refused, if anything.
pub async fn serve_request(
    gateway: &Gateway,
    conn: &ConnContext,
    violation: Option<Violation>,
    request: Request<Incoming>,
) -> Response<TimedBody> {
    let started = Instant::now();
    let snapshot = gateway.snapshot();
    if let Some(violation) = violation {
        let response = refuse(Refusal::from(violation), conn, &snapshot.unmatched);
        return response.map(|body| TimedBody::new(body, snapshot.unmatched.timer(started)));
    }
    let id = forward::request_id(request.headers(), &snapshot.request_id);
    let (parts, body) = request.into_parts();
    let matched = match_route(&snapshot, conn, &parts);
    let metrics = matched.map_or(&snapshot.unmatched, |route| &snapshot.routes[route as usize].metrics);
    let outcome = match matched {
        Ok(route) => run_route(&snapshot, &snapshot.routes[route as usize], conn, parts, body, &id, started).await,
        Err(refusal) => Err(refusal),
    };
    let mut response = outcome.unwrap_or_else(|refusal| refuse(refusal, conn, metrics));
    metrics.answered(response.status().as_u16());
    if snapshot.request_id.in_response {
        response.headers_mut().insert(snapshot.request_id.header.clone(), id);
    }
    response.map(|body| TimedBody::new(body, metrics.timer(started)))
}

fn refuse(refusal: Refusal, conn: &ConnContext, metrics: &RouteMetrics) -> Response<ResponseBody> {
    tracing::debug!(reason = refusal.reason(), detail = refusal.detail(), peer = %conn.peer.addr, "request refused");
    metrics.refused(refusal.reason_index());
    refusal.into_response()
}

/// The route for a request, after the checks every request gets.
fn match_route(snapshot: &Snapshot, conn: &ConnContext, parts: &Parts) -> Result<RouteId, Refusal> {
    if parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len()) > conn.max_uri_length {
        return Err(Refusal::UriTooLong);
    }
    let host = request_host(parts);
    let router = &snapshot.routers[conn.listener];
    router.find(&snapshot.routes, host.as_deref().unwrap_or_default(), parts).ok_or(Refusal::NoRoute)
}

/// The route's stages, its action, then its response header edits.
async fn run_route(
    snapshot: &Snapshot,
    route: &Route,
    conn: &ConnContext,
    parts: Parts,
    body: Incoming,
    id: &HeaderValue,
    arrived: Instant,
) -> Result<Response<ResponseBody>, Refusal> {
    let admission = match route.rate_limit.check(&conn.peer, &parts).await {
        Ok(admission) => admission,
        Err(limited) => return Ok(limited.into_response(&route.metrics)),
    };
    let mut response = match &route.action {
        Action::Direct(direct) => direct_response(direct),
        Action::Proxy(cluster) => {
            let arrived = tokio::time::Instant::from_std(arrived);
            proxy(snapshot, route, cluster, conn, parts, body, id, arrived).await?
        }
    };
    admission.apply(response.headers_mut());
    route.response_headers.apply(response.headers_mut());
    Ok(response)
}

fn direct_response(direct: &DirectResponse) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(direct.body.clone()));
    *response.status_mut() = direct.status;
    *response.headers_mut() = direct.headers.clone();
    response
}

/// The host a request is for, lower-case, without a port: from the target URI, else `Host`.
fn request_host(parts: &Parts) -> Option<Cow<'_, str>> {
    let raw = match parts.uri.host() {
        Some(host) => host,
        None => parts.headers.get(HOST)?.to_str().ok()?,
    };
    let host = strip_port(raw);
    Some(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_once(']').map_or(authority, |(v6, _)| &authority[..=v6.len()]);
    }
    authority.rsplit_once(':').map_or(authority, |(host, _)| host)
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("a.com:8080"), "a.com");
        assert_eq!(strip_port("a.com"), "a.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
