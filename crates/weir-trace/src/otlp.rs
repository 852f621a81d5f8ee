//! Spans as an OTLP `ExportTraceServiceRequest` (opentelemetry-proto, trace v1): one
//! `ResourceSpans` (the service's resource, written once at start), one `ScopeSpans` (scope
//! `weir`), and a server-kind `Span` per request with HTTP semantic-convention attributes.
//! Runs on the exporter's task, never on the request path.

use std::net::SocketAddr;
use std::time::UNIX_EPOCH;

use http::Version;

use crate::proto::ProtoWriter;
use crate::span::{HttpFields, SpanData};

/// `Span.SpanKind.SPAN_KIND_SERVER`.
const KIND_SERVER: u64 = 2;
/// `Status.StatusCode.STATUS_CODE_ERROR`.
const STATUS_ERROR: u64 = 2;
/// `SpanFlags`: the context's remote bit is known, and the bit saying the parent is remote.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// Writes export requests for one service.
#[derive(Debug, Clone)]
pub struct Encoder {
    /// The encoded `Resource` message.
    resource: Vec<u8>,
    /// The encoded `InstrumentationScope` message.
    scope: Vec<u8>,
}

impl Encoder {
    /// `attributes` come after `service.name`; a `service.name` among them is skipped.
    pub fn new(service_name: &str, attributes: &[(String, String)]) -> Encoder {
        let mut resource = ProtoWriter::default();
        string_attribute(&mut resource, 1, "service.name", service_name);
        for (key, value) in attributes.iter().filter(|(key, _)| key != "service.name") {
            string_attribute(&mut resource, 1, key, value);
        }
        let mut scope = ProtoWriter::default();
        scope.string(1, "weir");
        scope.string(2, env!("CARGO_PKG_VERSION"));
        Encoder { resource: resource.into_vec(), scope: scope.into_vec() }
    }

    /// The `ExportTraceServiceRequest` holding `spans`.
    pub fn request(&self, spans: &[SpanData]) -> Vec<u8> {
        let mut w = ProtoWriter::with_capacity(64 + self.resource.len() + spans.len() * 400);
        w.message(1, |resource_spans| {
            resource_spans.bytes(1, &self.resource);
            resource_spans.message(2, |scope_spans| {
                scope_spans.bytes(1, &self.scope);
                for span in spans {
                    scope_spans.message(2, |w| write_span(w, span));
                }
            });
        });
        w.into_vec()
    }
}

fn write_span(w: &mut ProtoWriter, span: &SpanData) {
    w.bytes(1, &span.trace_id);
    w.bytes(2, &span.span_id);
    if let Some(state) = &span.trace_state {
        w.string(3, &String::from_utf8_lossy(state.as_bytes()));
    }
    if let Some(parent) = &span.parent_span_id {
        w.bytes(4, parent);
    }
    w.string(5, &span_name(&span.http));
    w.varint(6, KIND_SERVER);
    let start = span.start.duration_since(UNIX_EPOCH).unwrap_or_default();
    w.fixed64(7, start.as_nanos() as u64);
    w.fixed64(8, (start + span.duration).as_nanos() as u64);
    write_attributes(w, &span.http);
    if span.http.status >= 500 {
        w.message(15, |status| {
            if let Some(reason) = span.http.refusal {
                status.string(2, reason);
            }
            status.varint(3, STATUS_ERROR);
        });
    }
    let remote = if span.parent_span_id.is_some() { IS_REMOTE } else { 0 };
    w.fixed32(16, 0x01 | HAS_IS_REMOTE | remote);
}

/// `{method} {route}`: low in cardinality, as span names must be; the method alone off any route.
fn span_name(http: &HttpFields) -> String {
    let method = http.method.as_ref().map_or("HTTP", |m| m.as_str());
    match &http.route {
        Some(route) => format!("{method} {route}"),
        None => method.to_string(),
    }
}

fn write_attributes(w: &mut ProtoWriter, http: &HttpFields) {
    const ATTRIBUTES: u32 = 9;
    if let Some(method) = &http.method {
        string_attribute(w, ATTRIBUTES, "http.request.method", method.as_str());
    }
    if let Some(target) = &http.target {
        string_attribute(w, ATTRIBUTES, "url.path", target.path());
    }
    string_attribute(w, ATTRIBUTES, "url.scheme", http.scheme);
    if let Some(host) = &http.host {
        let host = String::from_utf8_lossy(host.as_bytes());
        let (name, port) = split_port(&host);
        string_attribute(w, ATTRIBUTES, "server.address", name);
        if let Some(port) = port {
            int_attribute(w, ATTRIBUTES, "server.port", i64::from(port));
        }
    }
    string_attribute(w, ATTRIBUTES, "network.protocol.version", protocol_version(http.version));
    if http.status != 0 {
        int_attribute(w, ATTRIBUTES, "http.response.status_code", i64::from(http.status));
    }
    if http.status >= 500 {
        // The conventions' error.type: weir's reason when weir answered, else the status code.
        let status = http.status.to_string();
        string_attribute(w, ATTRIBUTES, "error.type", http.refusal.unwrap_or(&status));
    }
    if let Some(client) = &http.client {
        string_attribute(w, ATTRIBUTES, "client.address", &client.ip().to_canonical().to_string());
    }
    if let Some(agent) = &http.user_agent {
        string_attribute(w, ATTRIBUTES, "user_agent.original", &String::from_utf8_lossy(agent.as_bytes()));
    }
    write_weir_attributes(w, http);
}

fn write_weir_attributes(w: &mut ProtoWriter, http: &HttpFields) {
    const ATTRIBUTES: u32 = 9;
    if let Some(route) = &http.route {
        string_attribute(w, ATTRIBUTES, "weir.route", route);
    }
    if let Some(upstream) = &http.upstream {
        string_attribute(w, ATTRIBUTES, "weir.upstream", upstream);
    }
    if let Some(endpoint) = &http.endpoint {
        string_attribute(w, ATTRIBUTES, "weir.endpoint", &endpoint_text(endpoint));
    }
    int_attribute(w, ATTRIBUTES, "weir.attempts", i64::from(http.attempts));
    if let Some(reason) = http.refusal {
        string_attribute(w, ATTRIBUTES, "weir.refusal_reason", reason);
    }
}

fn endpoint_text(endpoint: &SocketAddr) -> String {
    endpoint.to_string()
}

/// `host:port` into host and port; an IPv6 literal keeps its brackets off.
fn split_port(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else { return (authority, None) };
        return (v6, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()),
        None => (authority, None),
    }
}

fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "",
    }
}

/// A `KeyValue` with a string `AnyValue`, as field `field` of the enclosing message.
fn string_attribute(w: &mut ProtoWriter, field: u32, key: &str, value: &str) {
    w.message(field, |kv| {
        kv.string(1, key);
        kv.message(2, |any| any.string(1, value));
    });
}

/// A `KeyValue` with an integer `AnyValue`.
fn int_attribute(w: &mut ProtoWriter, field: u32, key: &str, value: i64) {
    w.message(field, |kv| {
        kv.string(1, key);
        kv.message(2, |any| any.int64(3, value));
    });
}

#[cfg(test)]
mod tests;
