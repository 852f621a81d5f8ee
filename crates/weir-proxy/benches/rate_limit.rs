//! The rate-limit stage on a request, as the handler runs it: the client address worked out, the key
//! hashed from the request, the local decision made. One client against a warm bucket, and 10,000
//! API keys in turn.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http::request::Parts;
use weir_config::{Format, parse_str};
use weir_proxy::forward::Peer;
use weir_proxy::stages::rate_limit::carry::Rebuild;
use weir_proxy::stages::rate_limit::{RateLimitStage, SharedRules};

fn stage(rule: &str) -> RateLimitStage {
    let text = format!(
        "listeners: [{{ name: b, address: \"127.0.0.1:0\" }}]\nroutes:\n  - name: r\n    direct_response: {{ status: 200 }}\n    rate_limit: [{rule}]\n"
    );
    let config = parse_str(&text, Format::Yaml, "bench.yaml").expect("bench config");
    let metrics = weir_telemetry::Metrics::new();
    let limiters = &mut Rebuild::fresh();
    let shared = SharedRules::build(&config, &metrics, limiters);
    RateLimitStage::build(&shared, &config, &config.routes[0], &Arc::from("r"), &metrics, limiters)
}

/// Runs a future that finishes without waiting, as local decisions do.
fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a local decision waited"),
    }
}

fn parts(api_key: &str) -> Parts {
    Request::get("/items?page=2").header("x-api-key", api_key).body(()).unwrap().into_parts().0
}

fn decisions(c: &mut Criterion) {
    let peer = Peer::new("203.0.113.7:40000".parse().unwrap(), &[]);
    let per_ip = stage("{ key: client_ip, rate: 1000000000/s }");
    let request = parts("k");
    c.bench_function("rate_limit_stage_client_ip", |b| {
        b.iter(|| now(per_ip.check(black_box(&peer), black_box(&request))).is_ok())
    });
    let per_key = stage("{ key: header:x-api-key, rate: 1000000000/s }");
    let requests: Vec<Parts> = (0..10_000).map(|i| parts(&format!("key-{i:05}"))).collect();
    let mut i = 0;
    c.bench_function("rate_limit_stage_10k_api_keys", |b| {
        b.iter(|| {
            i = (i + 1) % requests.len();
            now(per_key.check(&peer, black_box(&requests[i]))).is_ok()
        })
    });
}

criterion_group!(benches, decisions);
criterion_main!(benches);
