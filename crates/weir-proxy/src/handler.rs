//! One request's way through weir. [`serve_request`] reads top to bottom as the request path:
//! refusals raised by the connection, the snapshot, the request id, route matching, the request's
//! trace span (whose `traceparent` goes upstream), then the route's
//! action (a direct response, or forwarding to an upstream), then response edits, and the request's
//! metrics (counted by status and refusal reason, timed to the end of the response body) and
//! access-log record (finished by the response body).

use std::borrow::Cow;
use std::time::Instant;

use http::header::HOST;
use http::request::Parts;
use http::{HeaderValue, Request, Response};
use weir_telemetry::RouteMetrics;
use weir_upstream::Cluster;

use crate::access::Record;
use crate::body::{RequestBody, ResponseBody, TimedBody};
use crate::client_body::ClientBody;
use crate::forward::{self, Peer};
use crate::framing::Violation;
use crate::proxy::proxy;
use crate::proxy::tunnel::TunnelRequested;
use crate::refusal::Refusal;
use crate::route::{Action, DirectResponse, Fallback, Route};
use crate::router::RouteId;
use crate::server::Gateway;
use crate::snapshot::Snapshot;
use crate::stages::fault;
use crate::stages::rate_limit::client_ip;
use crate::trace;
use crate::upstream_notes::{self, Attempts};

/// What a request needs to know about the connection it came on.
pub struct ConnContext {
    /// The listener the connection came on, by name; it outlives the listener's removal.
    pub listener: std::sync::Arc<crate::listeners::ListenerId>,
    pub peer: Peer,
    pub max_uri_length: usize,
    /// Counts the connection under its protocol once the first request shows it.
    pub protocol: std::sync::OnceLock<weir_telemetry::OpenConnection>,
    /// What the TLS handshake settled, on a TLS listener.
    pub tls: Option<std::sync::Arc<crate::tls::TlsInfo>>,
}

/// A request whose answer is a reset connection (an injected fault): the HTTP/1.1 server drops the
/// connection, and hyper's HTTP/2 server resets the stream, when a request's service fails.
#[derive(Debug, thiserror::Error)]
#[error("connection reset by an injected fault")]
pub struct FaultReset;

/// Serves one request. `violation` is what its head was refused for, if anything: the request is
/// then a stand-in and is answered with the refusal.
pub async fn serve_request(
    gateway: &Gateway,
    conn: &ConnContext,
    violation: Option<Violation>,
    request: Request<ClientBody>,
) -> Result<Response<TimedBody>, FaultReset> {
    let started = Instant::now();
    let snapshot = conn.listener.serving(gateway.snapshot());
    let mut record = gateway.access_log().map(|log| log.begin(&request, conn.peer.addr, started));
    if let (Some(record), Some(tls)) = (&mut record, &conn.tls) {
        record.secured(tls);
    }
    if let Some(violation) = violation {
        return Ok(refuse_unread(&snapshot, conn, Refusal::from(violation), started, record));
    }
    let grpc = fault::is_grpc(request.headers());
    let tunnel = request.extensions().get::<TunnelRequested>().is_some();
    let id = snapshot.request_id.enabled.then(|| forward::request_id(request.headers(), &snapshot.request_id));
    let (mut parts, body) = request.into_parts();
    if let Some(tls) = conn.tls.as_ref().filter(|tls| tls.client.is_some()) {
        // For routes that match on the client's identity.
        parts.extensions.insert(tls.clone());
    }
    let matched = match_route(&snapshot, conn, &parts).map(|route| &snapshot.routes[route as usize]);
    let route = matched.as_ref().ok().copied();
    let mut span = trace::begin(gateway.tracer(), &mut parts, conn, started, route);
    let metrics = route.map_or(&snapshot.unmatched, |route| &route.metrics);
    metrics.received(&parts.method);
    let timer = metrics.timer(started);
    if let Some(record) = &mut record {
        if let Some(id) = &id {
            record.identified(id);
        }
        route.inspect(|route| record.routed(&route.name));
        record.traced(&span);
    }
    let want_tally = record.as_ref().is_some_and(|record| record.wants_bytes_in());
    let stages = async {
        match matched {
            Ok(route) => run_route(&snapshot, route, conn, parts, body, id.as_ref(), started, grpc).await,
            Err(refusal) => Err(refusal),
        }
    };
    // Boxed, so the futures that hold it (this one, the server's) stay small to move.
    let stages = Box::pin(stages);
    let (outcome, attempts) = upstream_notes::observe(Some(metrics.request_bytes().clone()), want_tally, stages).await;
    let refusal = outcome.as_ref().err().copied();
    if refusal == Some(Refusal::FaultReset) {
        metrics.refused(Refusal::FaultReset.reason_index());
        if let Some(mut record) = record {
            record.answered(0, refusal, attempts);
            record.finish(0, false);
        }
        return Err(FaultReset);
    }
    let mut response = outcome.unwrap_or_else(|refusal| refuse(refusal, conn, metrics));
    if grpc {
        response = crate::refusal::grpc_form(response);
    }
    if tunnel && response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        // What follows the upgrade head may be the tunnel's bytes: nothing more is read from this connection.
        response.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    metrics.answered(response.status().as_u16());
    if let (Some(first), None) = (attempts.first_at, refusal) {
        metrics.upstream_answered(first.elapsed());
    }
    trace::answered(&mut span, response.status().as_u16(), refusal, &attempts);
    if let Some(record) = &mut record {
        record.answered(response.status().as_u16(), refusal, attempts);
    }
    if let Some(id) = id.filter(|_| snapshot.request_id.in_response) {
        response.headers_mut().insert(snapshot.request_id.header.clone(), id);
    }
    if let Some(record) = &mut record {
        record.responded(response.headers());
    }
    Ok(response.map(|body| TimedBody::new(body, timer, record).traced(span)))
}

/// Answers a request whose head was refused, before anything of it is looked at.
fn refuse_unread(
    snapshot: &Snapshot,
    conn: &ConnContext,
    refusal: Refusal,
    started: Instant,
    mut record: Option<Box<Record>>,
) -> Response<TimedBody> {
    let metrics = &snapshot.unmatched;
    let timer = metrics.timer(started);
    let response = refuse(refusal, conn, metrics);
    let status = response.status().as_u16();
    metrics.answered(status);
    if let Some(record) = &mut record {
        record.head_unread();
        record.answered(status, Some(refusal), Attempts::default());
    }
    response.map(|body| TimedBody::new(body, timer, record))
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
    let router = snapshot.router(conn.listener.name()).ok_or(Refusal::NoRoute)?;
    router.find(&snapshot.routes, host.as_deref().unwrap_or_default(), parts).ok_or(Refusal::NoRoute)
}

/// The route's stages, its action, then its response header edits.
#[allow(clippy::too_many_arguments)]
async fn run_route(
    snapshot: &Snapshot,
    route: &Route,
    conn: &ConnContext,
    mut parts: Parts,
    body: ClientBody,
    id: Option<&HeaderValue>,
    arrived: Instant,
    grpc: bool,
) -> Result<Response<ResponseBody>, Refusal> {
    let throttle = inject_faults(snapshot, route, conn, &mut parts, grpc).await?;
    let admission = match route.rate_limit.check(&conn.peer, &parts).await {
        Ok(admission) => admission,
        Err(limited) => return Ok(limited.into_response(&route.metrics)),
    };
    let _slots = route.concurrency.admit(arrived).await?;
    let mut response = match &route.action {
        Action::Direct(direct) => direct_response(direct),
        Action::Proxy(cluster) => {
            let arrived = tokio::time::Instant::from_std(arrived);
            match breaker_fallback(route, cluster) {
                Some(Fallback::Direct(direct)) => direct_response(direct),
                Some(Fallback::Upstream(other)) => {
                    Box::pin(proxy(snapshot, route, other, conn, parts, body, id, arrived)).await?
                }
                // Boxed: the proxy's future is large (the retry loop, the connection, the upstream
                // exchange), and every future around it would otherwise be moved with it.
                None => Box::pin(proxy(snapshot, route, cluster, conn, parts, body, id, arrived)).await?,
            }
        }
    };
    admission.apply(response.headers_mut());
    route.response_headers.apply(response.headers_mut());
    Ok(match throttle {
        Some(rate) => response.map(|body| body.throttled(rate)),
        None => response,
    })
}

/// The fault stage: waits out an injected delay and answers an injected abort; returns the byte
/// rate to throttle the response to, when one was injected.
async fn inject_faults(
    snapshot: &Snapshot,
    route: &Route,
    conn: &ConnContext,
    parts: &mut Parts,
    grpc: bool,
) -> Result<Option<u64>, Refusal> {
    let faults = &snapshot.faults;
    let client = |parts: &Parts| client_ip(parts, &conn.peer, &snapshot.trusted_proxies);
    let deciding = fault::Deciding {
        dice: &faults.dice,
        experiments: &faults.experiments,
        route: &route.name,
        client: &client,
        grpc,
    };
    let injected = route.faults.decide(parts, &deciding).map_err(Refusal::BadFaultHeader)?;
    if let Some(delay) = injected.delay {
        // Boxed: a timer inlined would make every request's stages larger to allocate.
        Box::pin(tokio::time::sleep(delay)).await;
    }
    match injected.abort {
        Some(abort) => Err(fault::abort_refusal(abort, Refusal::FaultReset)),
        None => Ok(injected.throttle),
    }
}

/// The route's fallback, when its upstream's breaker is refusing calls.
fn breaker_fallback<'r>(route: &'r Route, cluster: &Cluster<RequestBody>) -> Option<&'r Fallback> {
    let fallback = route.fallback.as_ref()?;
    cluster.breaker()?.is_refusing(tokio::time::Instant::now()).then_some(fallback)
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
