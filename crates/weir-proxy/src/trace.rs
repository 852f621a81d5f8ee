//! Tracing on the request path. When a request's head is read, [`begin`] starts its span from the
//! caller's `traceparent` and replaces that header, in the head weir sends upstream, with one
//! naming weir's span (the caller's `tracestate` travels on unchanged, or is dropped with an
//! invalid `traceparent`). [`answered`] records the outcome; the span ends with the response body
//! ([`crate::body::TimedBody`]). Without a `tracing` section nothing here touches the request.

use std::sync::Arc;
use std::time::Instant;

use http::HeaderName;
use http::header::{HOST, USER_AGENT};
use http::request::Parts;
use weir_config::{OtlpProtocol, Tracing};
use weir_telemetry::Metrics;
use weir_trace::{BatchSettings, RequestSpan, Tracer, TracerSettings};

use crate::handler::ConnContext;
use crate::refusal::Refusal;
use crate::route::{Action, Route};
use crate::upstream_notes::Attempts;

pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Starts the process's tracer and its exporter task (needs a Tokio runtime).
pub fn start_tracer(config: &Tracing, metrics: &Metrics) -> Arc<Tracer> {
    let settings = TracerSettings {
        endpoint: config.otlp_endpoint.parse().expect("validation checked the endpoint"),
        http_protobuf: config.otlp_protocol == OtlpProtocol::HttpProtobuf,
        service_name: config.service_name.clone(),
        resource: config.resource.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        sampling_ratio: config.sampling_ratio,
        batch: BatchSettings {
            batch_size: config.batch_size,
            batch_delay: config.batch_delay.0,
            queue_size: config.queue_size,
            export_timeout: config.export_timeout.0,
        },
    };
    Arc::new(Tracer::start(settings, metrics.traces().clone()))
}

/// The request's span; its `traceparent` replaces the caller's in `parts`. The request fields are
/// copied (reference-counted, mostly) only when the request is sampled.
pub fn begin(
    tracer: Option<&Tracer>,
    parts: &mut Parts,
    conn: &ConnContext,
    arrived: Instant,
    route: Option<&Route>,
) -> RequestSpan {
    let Some(tracer) = tracer else { return RequestSpan::off() };
    let headers = &mut parts.headers;
    let mut span = tracer.begin(headers.get(&TRACEPARENT), headers.get(&TRACESTATE), arrived);
    if let Some(traceparent) = span.traceparent() {
        headers.insert(TRACEPARENT.clone(), traceparent);
    }
    if !span.continues_caller() {
        headers.remove(&TRACESTATE);
    }
    let Some(fields) = span.fields() else { return span };
    fields.method = Some(parts.method.clone());
    fields.target = parts.uri.path_and_query().cloned();
    fields.scheme = "http";
    fields.host = match parts.uri.authority() {
        Some(authority) => http::HeaderValue::from_str(authority.as_str()).ok(),
        None => parts.headers.get(HOST).cloned(),
    };
    fields.version = parts.version;
    fields.client = Some(conn.peer.addr);
    fields.user_agent = parts.headers.get(USER_AGENT).cloned();
    if let Some(route) = route {
        fields.route = Some(route.name.clone());
        if let Action::Proxy(cluster) = &route.action {
            fields.upstream = Some(cluster.name().into());
        }
    }
    span
}

/// Records the answer: its status, the refusal that made it, and the upstream attempts.
pub fn answered(span: &mut RequestSpan, status: u16, refusal: Option<Refusal>, attempts: &Attempts) {
    let Some(fields) = span.fields() else { return };
    fields.status = status;
    fields.refusal = refusal.map(Refusal::reason);
    fields.endpoint = attempts.endpoint;
    fields.attempts = attempts.count;
}
