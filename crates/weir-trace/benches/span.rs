//! The request path's cost of tracing: starting a span from a caller's `traceparent`, writing the
//! `traceparent` sent upstream, filling the span's fields and ending it into the export queue; for
//! a sampled request, an unsampled one, and a sampled one while the queue is full (collector down).
//! Also the exporter's cost of encoding a batch, which runs off the request path.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Method};
use weir_telemetry::TraceMetrics;
use weir_trace::export::{Export, ExportError};
use weir_trace::otlp::Encoder;
use weir_trace::{BatchSettings, HttpFields, RequestSpan, SpanData, Tracer, TracerSettings};

/// A collector that accepts everything at once, or never answers.
struct StandIn {
    hang: bool,
}

impl Export for StandIn {
    async fn export(&mut self, message: Vec<u8>) -> Result<(), ExportError> {
        if self.hang {
            std::future::pending::<()>().await;
        }
        black_box(message);
        Ok(())
    }
}

fn tracer(ratio: f64, hang: bool) -> Tracer {
    let settings = TracerSettings {
        endpoint: "http://127.0.0.1:4317".parse().unwrap(),
        http_protobuf: false,
        service_name: "bench".into(),
        resource: Vec::new(),
        sampling_ratio: ratio,
        batch: BatchSettings {
            batch_size: 512,
            batch_delay: Duration::from_millis(5),
            queue_size: 2048,
            export_timeout: Duration::from_secs(10),
        },
    };
    Tracer::with_exporter(settings, TraceMetrics::unregistered(), StandIn { hang })
}

/// What the request path does with a span: begin, propagate, fill in, end.
fn one_request(tracer: &Tracer, traceparent: Option<&HeaderValue>, user_agent: &HeaderValue) {
    let mut span: RequestSpan = tracer.begin(traceparent, None, Instant::now());
    black_box(span.traceparent());
    if let Some(fields) = span.fields() {
        fields.method = Some(Method::GET);
        fields.user_agent = Some(user_agent.clone());
        fields.status = 200;
        fields.attempts = 1;
    }
    span.end();
}

fn request_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let _entered = runtime.enter();
    let sampled = HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let unsampled = HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    let agent = HeaderValue::from_static("bench/1.0");
    let on = tracer(1.0, false);
    c.bench_function("span/sampled", |b| b.iter(|| one_request(&on, Some(&sampled), &agent)));
    c.bench_function("span/unsampled_parent", |b| b.iter(|| one_request(&on, Some(&unsampled), &agent)));
    let off = tracer(0.0, false);
    c.bench_function("span/unsampled_root", |b| b.iter(|| one_request(&off, None, &agent)));
    let down = tracer(1.0, true);
    c.bench_function("span/sampled_queue_full", |b| b.iter(|| one_request(&down, Some(&sampled), &agent)));
}

fn encoding(c: &mut Criterion) {
    let span = SpanData {
        trace_id: [7; 16],
        span_id: [8; 8],
        parent_span_id: Some([9; 8]),
        trace_state: None,
        start: SystemTime::now(),
        arrived: Instant::now(),
        duration: Duration::from_micros(250),
        http: HttpFields {
            method: Some(Method::GET),
            target: Some("/users/42".parse().unwrap()),
            scheme: "http",
            host: Some(HeaderValue::from_static("api.example.com")),
            client: Some("10.0.0.1:5000".parse().unwrap()),
            user_agent: Some(HeaderValue::from_static("bench/1.0")),
            route: Some("users".into()),
            upstream: Some("users".into()),
            endpoint: Some("10.0.1.1:8080".parse().unwrap()),
            attempts: 1,
            status: 200,
            ..HttpFields::default()
        },
    };
    let batch = vec![span; 512];
    let encoder = Encoder::new("bench", &[]);
    c.bench_function("otlp/encode_512_spans", |b| b.iter(|| black_box(encoder.request(&batch))));
}

criterion_group!(benches, request_path, encoding);
criterion_main!(benches);
