//! The access log's cost on the request path for one request: capturing the head when it arrives,
//! then (when the request is logged) formatting the line and queueing it for the writer thread.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request};
use weir_proxy::access::AccessLog;
use weir_proxy::upstream_notes::Attempts;
use weir_telemetry::Metrics;

fn access_log(sample_ratio: f64) -> Arc<AccessLog> {
    let config = weir_config::AccessLog {
        path: Some("/dev/null".into()),
        sample_ratio,
        always_log_errors: false,
        ..Default::default()
    };
    Arc::new(AccessLog::start(&config, &Metrics::new()).expect("open /dev/null"))
}

fn access_record(c: &mut Criterion) {
    let request = Request::get("/users/42/posts?page=2")
        .header("host", "api.example.com")
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .body(())
        .unwrap();
    let id = HeaderValue::from_static("4d9c0e7f1a2b3c4d5e6f708192a3b4c5");
    let route: Arc<str> = "users".into();
    let client = "192.0.2.7:51000".parse().unwrap();
    let attempts = Attempts { endpoint: Some("10.0.1.10:8080".parse().unwrap()), count: 1, ..Default::default() };
    for (name, ratio) in [("logged", 1.0), ("sampled_out", 0.0)] {
        let log = access_log(ratio);
        c.bench_function(&format!("access_record/{name}"), |b| {
            b.iter(|| {
                let mut record = log.begin(black_box(&request), client, Instant::now());
                record.identified(&id);
                record.routed(&route);
                record.answered(200, None, attempts.clone());
                record.finish(1834, true);
            })
        });
        log.flush(std::time::Duration::from_secs(5));
    }
}

criterion_group!(benches, access_record);
criterion_main!(benches);
