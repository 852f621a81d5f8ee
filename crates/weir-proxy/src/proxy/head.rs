//! The upstream request's head, built once per request and sent on every try: HTTP/1.1, origin-form
//! target (absolute form on an HTTP/2 connection), hop-by-hop headers gone, forwarding headers and the request id added
//! (unless turned off), the route's path,
//! host and header edits applied. `Expect` is answered by weir itself (its server sends `100 Continue`
//! when the body is first read), so it is not passed on.

use std::net::SocketAddr;

use http::header::{EXPECT, HOST};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Uri, Version};

use crate::body::RequestBody;
use crate::forward;
use crate::framing::Violation;
use crate::handler::ConnContext;
use crate::refusal::Refusal;
use crate::route::Route;
use crate::snapshot::Snapshot;

/// Headers weir adds to a request at most: `X-Forwarded-For`, `-Proto`, `-Host`, `Forwarded`, `Host`
/// and the request id.
const FORWARDING_HEADERS: usize = 6;

/// What every try of a request sends.
pub struct UpstreamHead {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl UpstreamHead {
    pub fn build(
        snapshot: &Snapshot,
        route: &Route,
        conn: &ConnContext,
        mut parts: Parts,
        id: Option<&HeaderValue>,
    ) -> Result<UpstreamHead, Refusal> {
        let authority = parts.uri.authority().map(|a| a.as_str()).and_then(|a| HeaderValue::from_str(a).ok());
        // An HTTP/1 head has one Host line at most (the HTTP/1.1 server refuses more): when it names
        // the target and no rewrite applies, it stays as it is.
        let keep_host = authority.is_none() && route.host_rewrite.is_none() && parts.version <= Version::HTTP_11;
        let client_host = authority.or_else(|| parts.headers.get(HOST).cloned());
        let headers = &mut parts.headers;
        // Room for what weir adds (forwarding headers, the request id), made once rather than by
        // the map doubling as they go in.
        headers.reserve(FORWARDING_HEADERS);
        // An HTTP/2 request carries no hop-by-hop field but `te: trailers`: the server refuses
        // the others as malformed (http2/request.rs).
        if parts.version != Version::HTTP_2 {
            forward::strip_hop_by_hop(headers);
        }
        headers.remove(EXPECT);
        if snapshot.forwarded_headers {
            forward::add_forwarding_headers(headers, &conn.peer, client_host.as_ref());
        }
        if let Some(host) = route.host_rewrite.as_ref().or(client_host.as_ref())
            && !keep_host
        {
            headers.insert(HOST, host.clone());
        }
        if let Some(id) = id {
            headers.insert(snapshot.request_id.header.clone(), id.clone());
        }
        // The route's edits come last, so they can change anything weir set, Host included.
        route.request_headers.apply(headers);
        let uri = upstream_target(route, &parts.uri)?;
        Ok(UpstreamHead { method: parts.method, uri, headers: parts.headers })
    }

    /// The headers every try sends, for a stage that adds to them.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// The request for one try. A request without a host (HTTP/1.0) gets the endpoint's address as
    /// `Host`, which HTTP/1.1 requires.
    pub fn request(&self, body: RequestBody, endpoint: SocketAddr) -> Request<RequestBody> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = self.headers.clone();
        add_endpoint_host(request.headers_mut(), endpoint);
        request
    }

    /// The request for the last try: the head moves into it, nothing is copied.
    pub fn into_request(self, body: RequestBody, endpoint: SocketAddr) -> Request<RequestBody> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = self.headers;
        add_endpoint_host(request.headers_mut(), endpoint);
        request
    }
}

fn add_endpoint_host(headers: &mut HeaderMap, endpoint: SocketAddr) {
    if !headers.contains_key(HOST) {
        let host = HeaderValue::from_str(&endpoint.to_string()).expect("a socket address is a valid header value");
        headers.insert(HOST, host);
    }
}

/// Puts a try's request in the form HTTP/2 sends: the target in absolute form with `Host` moved
/// into its authority (sent as `:authority`). A `Host` that is no authority stays a header, and the
/// endpoint's address names the authority instead.
pub fn into_http2(request: &mut Request<RequestBody>, scheme: Scheme, endpoint: SocketAddr) {
    let host = request.headers().get(HOST).and_then(|host| Authority::try_from(host.as_bytes()).ok());
    let authority = match host {
        Some(host) => {
            request.headers_mut().remove(HOST);
            host
        }
        None => Authority::try_from(endpoint.to_string()).expect("a socket address is an authority"),
    };
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    *request.uri_mut() = Uri::from_parts(parts).expect("scheme, authority and path make a URI");
    *request.version_mut() = Version::HTTP_2;
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
