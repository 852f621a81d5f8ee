//! Tracing's cost on the request path for one request, as the handler pays it: starting the span
//! from the caller's `traceparent` and putting weir's into the upstream head, recording the answer,
//! and ending the span into the export queue (drained by the exporter's task toward a collector
//! address where nothing listens, so sampled spans are dropped after failed exports, as in an outage).

use std::hint::black_box;
use std::time::Instant;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::Request;
use weir_proxy::forward::Peer;
use weir_proxy::handler::ConnContext;
use weir_proxy::trace;
use weir_proxy::upstream_notes::Attempts;
use weir_telemetry::Metrics;

fn tracing_config(ratio: f64) -> weir_config::Tracing {
    let yaml = format!(
        "tracing:\n  otlp_endpoint: http://127.0.0.1:9\n  sampling_ratio: {ratio}\nlisteners:\n  - {{ name: l, address: \"127.0.0.1:0\" }}\n"
    );
    let config = weir_config::parse_str(&yaml, weir_config::Format::Yaml, "bench.yaml").expect("bench config");
    config.tracing.clone().expect("a tracing section")
}

fn trace_span(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let _entered = runtime.enter();
    let conn = ConnContext {
        listener: weir_proxy::listeners::ListenerId::new("bench"),
        peer: Peer::new("192.0.2.7:51000".parse().unwrap(), &[]),
        max_uri_length: 8192,
        protocol: std::sync::OnceLock::new(),
        tls: None,
    };
    let attempts = Attempts { endpoint: Some("10.0.1.10:8080".parse().unwrap()), count: 1, ..Default::default() };
    for (name, ratio, flags) in [("sampled", 1.0, "01"), ("unsampled", 1.0, "00"), ("root_unsampled", 0.0, "")] {
        let tracer = trace::start_tracer(&tracing_config(ratio), &Metrics::new());
        let mut request = Request::get("/users/42/posts?page=2")
            .header("host", "api.example.com")
            .header("user-agent", "bench/1.0")
            .header("accept", "application/json");
        if !flags.is_empty() {
            request =
                request.header("traceparent", format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}"));
        }
        let (parts, ()) = request.body(()).unwrap().into_parts();
        c.bench_function(&format!("trace_span/{name}"), |b| {
            b.iter_batched_ref(
                || parts.clone(),
                |parts| {
                    let mut span = trace::begin(Some(&tracer), parts, &conn, Instant::now(), None);
                    trace::answered(&mut span, 200, None, &attempts);
                    black_box(span).end();
                },
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(benches, trace_span);
criterion_main!(benches);
