//! Every response weir makes on its own behalf when it cannot or will not serve a request comes from
//! [`Refusal::into_response`]: the status, a short body, and a `proxy-status` header (RFC 9209) with
//! the RFC's error type and weir's own reason, which is also the reason logged and counted.

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};

use crate::body::ResponseBody;
use crate::framing::Violation;

/// Why weir refused a request or could not get it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request's framing or syntax is unacceptable.
    BadRequest(Violation),
    /// The request head did not arrive in time.
    HeadTimeout,
    /// The request head is larger than the listener allows.
    HeadTooLarge,
    /// The request head has more header fields than the listener allows.
    TooManyHeaders,
    UriTooLong,
    /// The request body is larger than the route allows.
    BodyTooLarge,
    /// The client stopped sending the request body part-way.
    BodyIncomplete,
    /// No route matches the request.
    NoRoute,
    /// No connection could be made to the upstream endpoint.
    ConnectError,
    ConnectTimeout,
    /// The upstream did not send response headers within the route's timeout.
    UpstreamTimeout,
    /// The upstream closed or reset the connection before a whole response.
    UpstreamReset,
    /// The upstream's response could not be parsed.
    UpstreamProtocolError,
    /// The upstream has no endpoint at all (a discovered name that resolves to nothing).
    NoHealthyEndpoint,
    /// Every connection to the endpoint was busy, and none came free within the pool's acquire timeout.
    PoolExhausted,
    /// The request's deadline (the route's timeout or the client's shorter one) left no time for a try.
    DeadlineExceeded,
    /// A try failed and a retry would have helped, but the route's retry budget was spent.
    BudgetExhausted,
    /// The upstream's circuit breaker is open; calls resume (as probes) in `retry_after_secs`.
    BreakerOpen {
        retry_after_secs: u32,
    },
    /// A rate-limit rule refused the request; see [`Refusal::rate_limited`].
    RateLimited,
    /// A concurrency limit (the route's or its upstream's) was full, and so was its queue, or the
    /// request waited in the queue too long.
    Shed,
    /// A fault injected on purpose: the configured status (gRPC requests: the gRPC status).
    FaultAbort {
        status: StatusCode,
        grpc: Option<u8>,
    },
    /// A fault injected on purpose: the connection closes without an answer (HTTP/2: the stream
    /// is reset). The server does this; the response made here is never sent.
    FaultReset,
    /// An `x-weir-fault-*` header weir cannot read; the message says which and what is valid.
    BadFaultHeader(&'static str),
}

impl Refusal {
    /// Every reason, in [`Refusal::reason_index`] order: the metric series made for each route.
    pub const REASONS: [&'static str; 22] = [
        "bad_request",
        "head_timeout",
        "head_too_large",
        "too_many_headers",
        "uri_too_long",
        "body_too_large",
        "body_incomplete",
        "no_route",
        "connect_error",
        "connect_timeout",
        "upstream_timeout",
        "upstream_reset",
        "upstream_protocol_error",
        "no_healthy_endpoint",
        "pool_exhausted",
        "deadline_exceeded",
        "budget_exhausted",
        "breaker_open",
        "rate_limited",
        "shed",
        "fault_injected",
        "bad_fault_header",
    ];

    /// The position of this refusal's reason in [`Refusal::REASONS`].
    pub fn reason_index(self) -> usize {
        match self {
            Refusal::BadRequest(_) => 0,
            Refusal::HeadTimeout => 1,
            Refusal::HeadTooLarge => 2,
            Refusal::TooManyHeaders => 3,
            Refusal::UriTooLong => 4,
            Refusal::BodyTooLarge => 5,
            Refusal::BodyIncomplete => 6,
            Refusal::NoRoute => 7,
            Refusal::ConnectError => 8,
            Refusal::ConnectTimeout => 9,
            Refusal::UpstreamTimeout => 10,
            Refusal::UpstreamReset => 11,
            Refusal::UpstreamProtocolError => 12,
            Refusal::NoHealthyEndpoint => 13,
            Refusal::PoolExhausted => 14,
            Refusal::DeadlineExceeded => 15,
            Refusal::BudgetExhausted => 16,
            Refusal::BreakerOpen { .. } => 17,
            Refusal::RateLimited => 18,
            Refusal::Shed => 19,
            Refusal::FaultAbort { .. } | Refusal::FaultReset => 20,
            Refusal::BadFaultHeader(_) => 21,
        }
    }

    /// weir's reason: in logs, in the `weir_refusals_total` metric, and (but for bad requests, which
    /// name the exact violation) in `proxy-status`.
    pub fn reason(self) -> &'static str {
        Self::REASONS[self.reason_index()]
    }

    pub fn status(self) -> StatusCode {
        match self {
            Refusal::BadRequest(_) | Refusal::BodyIncomplete | Refusal::BadFaultHeader(_) => StatusCode::BAD_REQUEST,
            Refusal::FaultAbort { status, .. } => status,
            Refusal::FaultReset => StatusCode::BAD_GATEWAY,
            Refusal::HeadTimeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::HeadTooLarge | Refusal::TooManyHeaders => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::UriTooLong => StatusCode::URI_TOO_LONG,
            Refusal::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::NoRoute => StatusCode::NOT_FOUND,
            Refusal::ConnectError | Refusal::UpstreamReset | Refusal::UpstreamProtocolError => StatusCode::BAD_GATEWAY,
            Refusal::ConnectTimeout | Refusal::UpstreamTimeout | Refusal::DeadlineExceeded => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Refusal::NoHealthyEndpoint
            | Refusal::PoolExhausted
            | Refusal::BudgetExhausted
            | Refusal::BreakerOpen { .. }
            | Refusal::Shed => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// Whether the refusal is about the request's own bytes (its framing, size or pace). Such a
    /// refusal closes the client connection: its byte stream is no longer trustworthy.
    fn faults_request(self) -> bool {
        matches!(
            self,
            Refusal::BadRequest(_)
                | Refusal::HeadTimeout
                | Refusal::HeadTooLarge
                | Refusal::TooManyHeaders
                | Refusal::UriTooLong
                | Refusal::BodyTooLarge
                | Refusal::BodyIncomplete
        )
    }

    /// The error type registered by RFC 9209 that fits best.
    fn proxy_status_error(self) -> &'static str {
        match self {
            refusal if refusal.faults_request() => "http_request_error",
            Refusal::NoRoute => "destination_not_found",
            Refusal::ConnectError => "connection_refused",
            Refusal::ConnectTimeout => "connection_timeout",
            Refusal::UpstreamTimeout => "http_response_timeout",
            Refusal::UpstreamReset => "http_response_incomplete",
            Refusal::UpstreamProtocolError => "http_protocol_error",
            Refusal::NoHealthyEndpoint => "destination_unavailable",
            Refusal::PoolExhausted => "connection_limit_reached",
            Refusal::DeadlineExceeded => "http_response_timeout",
            Refusal::BudgetExhausted | Refusal::BreakerOpen { .. } => "destination_unavailable",
            Refusal::RateLimited | Refusal::Shed => "http_request_denied",
            Refusal::FaultAbort { .. } | Refusal::FaultReset => "proxy_internal_response",
            _ => "http_request_error",
        }
    }

    /// The most specific name for what happened: the framing violation for a bad request, else the
    /// reason. It is the `details` of `proxy-status`.
    pub fn detail(self) -> &'static str {
        match self {
            Refusal::BadRequest(violation) => violation.as_str(),
            Refusal::BadFaultHeader(message) => message,
            other => other.reason(),
        }
    }

    /// The response for this refusal.
    pub fn into_response(self) -> Response<ResponseBody> {
        let detail = self.detail();
        let proxy_status = format!("weir; error={}; details=\"{}\"", self.proxy_status_error(), detail);
        let body = format!("{} {}\n", self.status().as_u16(), detail);
        let mut response = Response::new(ResponseBody::full(Bytes::from(body)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        if let Ok(value) = HeaderValue::from_str(&proxy_status) {
            headers.insert("proxy-status", value);
        }
        if self.faults_request() {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if let Refusal::BreakerOpen { retry_after_secs } = self {
            headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)));
        }
        response.extensions_mut().insert(self);
        response
    }
}

impl Refusal {
    /// The 429 for a request the rule `rule` refused: `Retry-After` in whole seconds, and the rule's
    /// name in the body. The rate-limit stage adds the rule's `RateLimit` fields.
    pub fn rate_limited(rule: &str, retry_after_secs: u64) -> Response<ResponseBody> {
        let mut response = Refusal::RateLimited.into_response();
        *response.body_mut() = ResponseBody::full(Bytes::from(format!("429 rate_limited by rule {rule}\n")));
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
        response
    }
}

impl Refusal {
    /// The gRPC status a gRPC client gets for this refusal.
    pub fn grpc_code(self) -> u8 {
        match self {
            Refusal::FaultAbort { grpc: Some(code), .. } => code,
            Refusal::FaultAbort { status, .. } => grpc_code_for_status(status),
            Refusal::RateLimited | Refusal::BodyTooLarge => GRPC_RESOURCE_EXHAUSTED,
            Refusal::DeadlineExceeded | Refusal::UpstreamTimeout => GRPC_DEADLINE_EXCEEDED,
            Refusal::NoRoute => GRPC_UNIMPLEMENTED,
            Refusal::BadFaultHeader(_) => GRPC_INVALID_ARGUMENT,
            refusal if refusal.faults_request() => GRPC_INTERNAL,
            _ => GRPC_UNAVAILABLE,
        }
    }
}

const GRPC_UNKNOWN: u8 = 2;
const GRPC_INVALID_ARGUMENT: u8 = 3;
const GRPC_DEADLINE_EXCEEDED: u8 = 4;
const GRPC_PERMISSION_DENIED: u8 = 7;
const GRPC_RESOURCE_EXHAUSTED: u8 = 8;
const GRPC_UNIMPLEMENTED: u8 = 12;
const GRPC_INTERNAL: u8 = 13;
const GRPC_UNAVAILABLE: u8 = 14;
const GRPC_UNAUTHENTICATED: u8 = 16;

/// The gRPC status for an HTTP status, as gRPC maps the statuses of HTTP intermediaries.
fn grpc_code_for_status(status: StatusCode) -> u8 {
    match status.as_u16() {
        400 => GRPC_INTERNAL,
        401 => GRPC_UNAUTHENTICATED,
        403 => GRPC_PERMISSION_DENIED,
        404 => GRPC_UNIMPLEMENTED,
        429 | 502 | 503 | 504 => GRPC_UNAVAILABLE,
        _ => GRPC_UNKNOWN,
    }
}

/// A response weir made for a gRPC request, in gRPC form: HTTP 200, trailers-only (the status in
/// the head and no body), `grpc-status` from the refusal and `grpc-message` naming the reason.
/// Other responses pass unchanged.
pub fn grpc_form(mut response: Response<ResponseBody>) -> Response<ResponseBody> {
    let Some(refusal) = response.extensions().get::<Refusal>().copied() else { return response };
    *response.status_mut() = StatusCode::OK;
    *response.body_mut() = ResponseBody::Full(None);
    let headers = response.headers_mut();
    headers.remove(http::header::CONTENT_LENGTH);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(u16::from(refusal.grpc_code())));
    if let Ok(message) = HeaderValue::from_str(&grpc_message(refusal.detail())) {
        headers.insert("grpc-message", message);
    }
    response
}

/// Percent-encodes what `grpc-message` may not carry as is.
fn grpc_message(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

impl From<Violation> for Refusal {
    fn from(violation: Violation) -> Self {
        match violation {
            Violation::HeadTooLarge => Refusal::HeadTooLarge,
            Violation::TooManyHeaders => Refusal::TooManyHeaders,
            Violation::UriTooLong => Refusal::UriTooLong,
            Violation::HeadTimeout => Refusal::HeadTimeout,
            other => Refusal::BadRequest(other),
        }
    }
}
