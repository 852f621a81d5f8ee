//! One request's way through weir. [`serve_request`] reads top to bottom as the request path:
//! refusals raised by the connection, the snapshot, the request id, route matching, then the route's
//! action (a direct response, or forwarding to an upstream), then response edits, and the request's
//! metrics (counted by status and refusal reason, timed to the end of the response body).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Instant;

use http::header::{CONTENT_LENGTH, EXPECT, HOST};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri, Version};
use hyper::body::Incoming;
use weir_telemetry::RouteMetrics;
use weir_upstream::{Attempt, Cluster, Connection, Outcome, UpstreamError};

use crate::body::{RequestBody, RequestBodyError, ResponseBody, TimedBody};
use crate::forward::{self, Peer};
use crate::framing::{BodyFramingError, Violation};
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
        Ok(route) => run_route(&snapshot, &snapshot.routes[route as usize], conn, parts, body, &id).await,
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
) -> Result<Response<ResponseBody>, Refusal> {
    let admission = match route.rate_limit.check(&conn.peer, &parts).await {
        Ok(admission) => admission,
        Err(limited) => return Ok(limited.into_response(&route.metrics)),
    };
    let mut response = match &route.action {
        Action::Direct(direct) => direct_response(direct),
        Action::Proxy(cluster) => proxy(snapshot, route, cluster, conn, parts, body, id).await?,
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

async fn proxy(
    snapshot: &Snapshot,
    route: &Route,
    cluster: &Cluster<RequestBody>,
    conn: &ConnContext,
    parts: Parts,
    body: Incoming,
    id: &HeaderValue,
) -> Result<Response<ResponseBody>, Refusal> {
    if declared_length(&parts).is_some_and(|len| len > route.max_body) {
        return Err(Refusal::BodyTooLarge);
    }
    let key = cluster.hash_key().and_then(|key| key.hash(&parts, conn.peer.addr.ip()));
    let deadline = tokio::time::Instant::now() + route.timeout;
    let (attempt, connection) = connect(cluster, key, deadline).await?;
    let mut request = upstream_request(route, conn, parts, body, attempt.endpoint().addr)?;
    let headers = request.headers_mut();
    headers.insert(snapshot.request_id.header.clone(), id.clone());
    // The route's edits come last, so they can change anything weir set, Host included.
    route.request_headers.apply(headers);
    let sent = tokio::time::timeout_at(deadline, connection.send(request)).await;
    let sent = sent.map_err(|_| Refusal::UpstreamTimeout).and_then(|sent| sent.map_err(|e| classify(&e)));
    attempt.finish(match &sent {
        Ok(response) => Outcome::Response(response.status()),
        Err(refusal) => attempt_outcome(*refusal),
    });
    let mut response = sent?;
    forward::strip_hop_by_hop(response.headers_mut());
    Ok(response.map(ResponseBody::Upstream))
}

/// Endpoints tried for one request when connections fail. A connection that was never made sent
/// nothing, so another endpoint can take the request as it is (what nginx and HAProxy do too).
const CONNECT_TRIES: usize = 3;

/// A connection to an endpoint of the cluster, and the attempt it belongs to.
async fn connect(
    cluster: &Cluster<RequestBody>,
    key: Option<u64>,
    deadline: tokio::time::Instant,
) -> Result<(Attempt<'_, RequestBody>, Connection<RequestBody>), Refusal> {
    let mut failed = Vec::new();
    loop {
        let attempt = cluster.pick_avoiding(key, &failed).ok_or(Refusal::NoHealthyEndpoint)?;
        let refusal = match tokio::time::timeout_at(deadline, attempt.endpoint().pool.connection()).await {
            Ok(Ok(connection)) => return Ok((attempt, connection)),
            Ok(Err(error)) => classify(&error),
            Err(_) => Refusal::UpstreamTimeout,
        };
        let (outcome, addr) = (attempt_outcome(refusal), attempt.endpoint().addr);
        attempt.finish(outcome);
        if outcome != Outcome::ConnectFailure || failed.len() + 1 >= CONNECT_TRIES {
            return Err(refusal);
        }
        tracing::debug!(upstream = cluster.name(), endpoint = %addr, reason = refusal.reason(), "connect failed: trying another endpoint");
        failed.push(addr);
    }
}

/// What a failed attempt says about the endpoint. Failures of the client's or weir's own making
/// (a body over the limit, a client that stopped sending, a full pool) say nothing.
fn attempt_outcome(refusal: Refusal) -> Outcome {
    match refusal {
        Refusal::ConnectError | Refusal::ConnectTimeout => Outcome::ConnectFailure,
        Refusal::UpstreamReset | Refusal::UpstreamProtocolError => Outcome::Reset,
        Refusal::UpstreamTimeout => Outcome::Timeout,
        _ => Outcome::Local,
    }
}

/// The request as the upstream gets it: HTTP/1.1, origin-form target, hop-by-hop headers gone,
/// forwarding headers added, the route's path and host rewrites applied. `Expect` is answered by weir itself (hyper
/// sends `100 Continue` when the body is first read), so it is not passed on. A request without a
/// host gets the endpoint's address as `Host`, which HTTP/1.1 requires.
fn upstream_request(
    route: &Route,
    conn: &ConnContext,
    mut parts: Parts,
    body: Incoming,
    endpoint: SocketAddr,
) -> Result<Request<RequestBody>, Refusal> {
    let client_host = parts.uri.authority().map(|a| a.as_str()).and_then(|a| HeaderValue::from_str(a).ok());
    let client_host = client_host.or_else(|| parts.headers.get(HOST).cloned());
    let headers = &mut parts.headers;
    forward::strip_hop_by_hop(headers);
    headers.remove(EXPECT);
    forward::add_forwarding_headers(headers, &conn.peer, client_host.as_ref());
    let host = match route.host_rewrite.as_ref().or(client_host.as_ref()) {
        Some(host) => host.clone(),
        None => HeaderValue::from_str(&endpoint.to_string()).expect("a socket address is a valid header value"),
    };
    headers.insert(HOST, host);
    let path_and_query = upstream_target(route, &parts.uri)?;
    let mut request = Request::new(RequestBody::new(body, route.max_body));
    *request.method_mut() = parts.method;
    *request.uri_mut() = path_and_query;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = parts.headers;
    Ok(request)
}

/// The origin-form target for the upstream: the client's path and query, shared rather than copied
/// when no rewrite applies.
fn upstream_target(route: &Route, uri: &Uri) -> Result<Uri, Refusal> {
    let Some(new_path) = route.rewrite.apply(uri.path()) else {
        let mut parts = http::uri::Parts::default();
        parts.path_and_query = Some(uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")));
        return Uri::from_parts(parts).map_err(|_| Refusal::BadRequest(Violation::InvalidRequestLine));
    };
    // Validation keeps rewrites to valid path characters, so this fails only on a client's query.
    let target = match uri.query() {
        Some(query) => format!("{new_path}?{query}"),
        None => new_path,
    };
    Uri::try_from(target).map_err(|_| Refusal::BadRequest(Violation::InvalidRequestLine))
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

fn declared_length(parts: &Parts) -> Option<u64> {
    parts.headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Maps a failed upstream call to the refusal the client sees.
fn classify(error: &UpstreamError) -> Refusal {
    match error {
        UpstreamError::Connect { .. } | UpstreamError::Handshake { .. } => Refusal::ConnectError,
        UpstreamError::ConnectTimeout { .. } => Refusal::ConnectTimeout,
        UpstreamError::PoolExhausted { .. } => Refusal::PoolExhausted,
        UpstreamError::Exchange { source, .. } => {
            match find_cause::<RequestBodyError>(source) {
                Some(RequestBodyError::TooLarge { .. }) => return Refusal::BodyTooLarge,
                Some(RequestBodyError::Read(read)) => {
                    return find_cause::<BodyFramingError>(read)
                        .map_or(Refusal::BodyIncomplete, |e| Refusal::from(e.0));
                }
                None => {}
            }
            if source.is_parse() || source.is_parse_status() {
                Refusal::UpstreamProtocolError
            } else {
                Refusal::UpstreamReset
            }
        }
    }
}

/// The first error of type `E` in `error`'s chain, looking inside I/O errors too (their `source`
/// skips the error they carry).
fn find_cause<'a, E: std::error::Error + 'static>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a E> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && let Some(found) = inner.downcast_ref::<E>()
        {
            return Some(found);
        }
        current = e.source();
    }
    None
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
