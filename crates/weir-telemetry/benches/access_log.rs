//! Formatting one access-log line, as the request path does for every logged request: into a reused
//! buffer, then copied out as the line handed to the writer.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use weir_telemetry::access_log::{Entry, FieldSet, LineFormat};

fn entry() -> Entry<'static> {
    Entry {
        time: SystemTime::now(),
        request_id: Some(b"4d9c0e7f1a2b3c4d5e6f708192a3b4c5"),
        trace_id: Some(b"4bf92f3577b34da6a3ce929d0e0e4736"),
        client: "192.0.2.7:51000".parse().unwrap(),
        method: Some("GET"),
        host: Some(b"api.example.com"),
        path_and_query: Some(b"/users/42/posts?page=2&sort=recent"),
        protocol: "HTTP/1.1",
        status: 200,
        bytes_in: 0,
        bytes_out: 1834,
        duration: Duration::from_micros(2_512),
        upstream: Some("10.0.1.10:8080".parse().unwrap()),
        attempts: 1,
        route: Some("users"),
        reason: None,
        faults: None,
        aborted: false,
        user_agent: Some(b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
        request_headers: &[],
        response_headers: &[],
        tls: None,
    }
}

fn access_log_line(c: &mut Criterion) {
    let format = LineFormat { fields: FieldSet::ALL, query: false };
    let entry = entry();
    let mut buffer = Vec::with_capacity(1024);
    c.bench_function("access_log_line/all_fields", |b| {
        b.iter(|| {
            buffer.clear();
            format.write(black_box(&entry), &mut buffer);
            black_box(buffer.as_slice().to_vec())
        })
    });
    let headers = [
        (http::HeaderName::from_static("x-tenant"), http::HeaderValue::from_static("acme-industries")),
        (http::HeaderName::from_static("authorization"), http::HeaderValue::from_static("[redacted]")),
    ];
    let response = [(http::HeaderName::from_static("x-cache"), http::HeaderValue::from_static("hit"))];
    let mut with_headers = entry.clone();
    (with_headers.request_headers, with_headers.response_headers) = (&headers, &response);
    c.bench_function("access_log_line/with_three_headers", |b| {
        b.iter(|| {
            buffer.clear();
            format.write(black_box(&with_headers), &mut buffer);
            black_box(buffer.as_slice().to_vec())
        })
    });
    let mut hostile = entry.clone();
    hostile.path_and_query = Some(b"/search/\"quoted\"/\\back\x01slash\xff?q=1");
    c.bench_function("access_log_line/escaped_path", |b| {
        b.iter(|| {
            buffer.clear();
            format.write(black_box(&hostile), &mut buffer);
            black_box(buffer.as_slice().to_vec())
        })
    });
}

criterion_group!(benches, access_log_line);
criterion_main!(benches);
