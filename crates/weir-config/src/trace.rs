//! The `tracing` section: where finished spans are exported (an OpenTelemetry collector speaking
//! OTLP/gRPC, or OTLP/HTTP), which requests are sampled, and how the exporter batches. Tracing is
//! off when the section is absent.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::validate::Checker;
use crate::values::Duration;

/// Distributed tracing with W3C trace context, exported over OTLP/gRPC.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tracing {
    /// The collector's address, `http://host:port` (4317 for gRPC, 4318 for HTTP when left out).
    pub otlp_endpoint: String,
    /// How spans travel to the collector.
    #[serde(default)]
    pub otlp_protocol: OtlpProtocol,
    /// The share of requests starting a trace that are sampled, from 0 to 1. Requests that come
    /// with a `traceparent` follow their caller's decision instead.
    #[serde(default = "default_ratio")]
    pub sampling_ratio: f64,
    /// The `service.name` resource attribute.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// More resource attributes, such as `deployment.environment.name: prod`.
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
    /// Most spans in one export call.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest a finished span waits for its batch to fill before it is exported.
    #[serde(default = "default_batch_delay")]
    pub batch_delay: Duration,
    /// Finished spans waiting for export; more are dropped and counted.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// Longest one export call may take; also bounds the flush at shutdown.
    #[serde(default = "default_export_timeout")]
    pub export_timeout: Duration,
}

/// The OTLP transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtlpProtocol {
    /// `TraceService/Export` over HTTP/2.
    #[default]
    Grpc,
    /// `POST /v1/traces` with a protobuf body over HTTP/1.1.
    HttpProtobuf,
}

fn default_ratio() -> f64 {
    1.0
}

fn default_service_name() -> String {
    "weir".into()
}

fn default_batch_size() -> usize {
    512
}

fn default_batch_delay() -> Duration {
    Duration(std::time::Duration::from_secs(1))
}

fn default_queue_size() -> usize {
    2048
}

fn default_export_timeout() -> Duration {
    Duration::from_secs(10)
}

const MAX_QUEUE: usize = 1_000_000;

/// Checks the section, when present.
pub(crate) fn check(checker: &mut Checker, tracing: Option<&Tracing>) {
    let Some(tracing) = tracing else { return };
    if let Err(problem) = endpoint_problem(&tracing.otlp_endpoint) {
        checker.fail("tracing.otlp_endpoint".into(), problem);
    }
    if !(0.0..=1.0).contains(&tracing.sampling_ratio) {
        checker.fail("tracing.sampling_ratio".into(), "must be between 0 and 1, such as 0.05 for one in twenty".into());
    }
    if tracing.service_name.is_empty() {
        checker.fail("tracing.service_name".into(), "must not be empty".into());
    }
    if tracing.resource.keys().any(String::is_empty) {
        checker.fail("tracing.resource".into(), "attribute names must not be empty".into());
    }
    if !(1..=MAX_QUEUE).contains(&tracing.queue_size) {
        checker.fail("tracing.queue_size".into(), format!("must be between 1 and {MAX_QUEUE}"));
    }
    if !(1..=tracing.queue_size.max(1)).contains(&tracing.batch_size) {
        checker.fail("tracing.batch_size".into(), "must be between 1 and queue_size".into());
    }
    for (name, value) in [("batch_delay", tracing.batch_delay), ("export_timeout", tracing.export_timeout)] {
        if value.0.is_zero() {
            checker.fail(format!("tracing.{name}"), "must be longer than zero".into());
        }
    }
}

/// What is wrong with an endpoint, if anything: it must be `http://host[:port]` with no path.
fn endpoint_problem(endpoint: &str) -> Result<(), String> {
    let hint = "write it like \"http://otel-collector:4317\"";
    let uri: http::Uri = endpoint.parse().map_err(|e| format!("{endpoint:?} is not a URL ({e}); {hint}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(format!("TLS to the collector is not supported; use http:// ({hint})")),
        _ => return Err(format!("{endpoint:?} needs the http:// scheme; {hint}")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{endpoint:?} names no host; {hint}"));
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty()) {
        return Err(format!("{endpoint:?} has a path; weir adds the gRPC method's or /v1/traces ({hint})"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::endpoint_problem;

    #[test]
    fn endpoints_are_plain_http_host_and_port() {
        assert!(endpoint_problem("http://collector:4317").is_ok());
        assert!(endpoint_problem("http://127.0.0.1:4317/").is_ok());
        assert!(endpoint_problem("http://collector").is_ok());
        for bad in ["collector:4317", "https://collector:4317", "http://collector:4317/v1/traces", "http://", ""] {
            assert!(endpoint_problem(bad).is_err(), "{bad}");
        }
    }
}
