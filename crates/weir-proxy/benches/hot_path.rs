//! Hot functions on the request path: route matching over small and large route tables, finding
//! the connection's listener's router by name, and the header work done on every proxied request.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Request};
use weir_config::{Format, parse_str};
use weir_proxy::Snapshot;
use weir_proxy::forward::{Peer, add_forwarding_headers, new_request_id, strip_hop_by_hop};

/// A route table shaped like a real API: per service an exact health path, a template, a prefix and
/// a method-conditioned prefix, spread over a few hosts, plus a catch-all.
fn route_table(services: usize) -> Snapshot {
    let mut text = String::from("listeners:\n  - { name: public, address: \"127.0.0.1:0\" }\nroutes:\n");
    for i in 0..services {
        let host = ["api.example.com", "*.example.org", "*"][i % 3];
        text.push_str(&format!(
            "  - {{ match: {{ host: \"{host}\", path: /svc{i}/health }}, direct_response: {{ status: 200 }} }}\n\
             \x20 - {{ match: {{ host: \"{host}\", path_template: \"/svc{i}/items/{{id}}\" }}, direct_response: {{ status: 200 }} }}\n\
             \x20 - {{ match: {{ host: \"{host}\", path_prefix: /svc{i}, method: POST }}, direct_response: {{ status: 201 }} }}\n\
             \x20 - {{ match: {{ host: \"{host}\", path_prefix: /svc{i} }}, direct_response: {{ status: 200 }} }}\n"
        ));
    }
    text.push_str("  - { direct_response: { status: 404 } }\n");
    let config = parse_str(&text, Format::Yaml, "bench.yaml").expect("bench config");
    Snapshot::build(&config, &weir_telemetry::Metrics::new()).expect("bench snapshot")
}

fn requests(services: usize) -> Vec<(String, http::request::Parts)> {
    let last = services - 1;
    let paths = [
        ("api.example.com", format!("/svc{last}/health")),
        ("www.example.org", format!("/svc{}/items/42", last - 1)),
        ("other.test", format!("/svc{}/deep/path", last - 2)),
        ("api.example.com", "/nowhere".to_string()),
    ];
    paths
        .into_iter()
        .map(|(host, path)| {
            let (parts, ()) = Request::get(path).header("host", host).body(()).unwrap().into_parts();
            (host.to_string(), parts)
        })
        .collect()
}

fn route_matching(c: &mut Criterion) {
    for services in [3, 250] {
        let snapshot = route_table(services);
        let requests = requests(services);
        let routes = snapshot.routes.len();
        c.bench_function(&format!("route_match/{routes}_routes"), |b| {
            b.iter(|| {
                for (host, parts) in &requests {
                    black_box(snapshot.routers[0].1.find(&snapshot.routes, host, parts));
                }
            })
        });
    }
}

/// What a request pays to find its listener's routes by name (the last of four listeners) in the
/// snapshot it loaded: once to choose the snapshot, once to match.
fn listener_lookup(c: &mut Criterion) {
    let names = ["public", "internal", "partners", "metrics-scrape"];
    let mut text = String::from("listeners:\n");
    for (i, name) in names.iter().enumerate() {
        text.push_str(&format!("  - {{ name: {name}, address: \"127.0.0.{}:0\" }}\n", i + 1));
    }
    text.push_str("routes:\n  - { direct_response: { status: 200 } }\n");
    let config = parse_str(&text, Format::Yaml, "bench.yaml").expect("bench config");
    let snapshot = std::sync::Arc::new(Snapshot::build(&config, &weir_telemetry::Metrics::new()).expect("snapshot"));
    let id = weir_proxy::listeners::ListenerId::new("metrics-scrape");
    c.bench_function("listener_router/4_listeners", |b| {
        b.iter(|| {
            let serving = id.serving(black_box(snapshot.clone()));
            black_box(serving.router(id.name()).is_some())
        })
    });
}

fn typical_request_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "api.example.com"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("accept-encoding", "gzip, br"),
        ("authorization", "Bearer abcdefghijklmnopqrstuvwxyz0123456789"),
        ("connection", "keep-alive"),
        ("content-type", "application/json"),
        ("x-forwarded-for", "203.0.113.9"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
}

fn header_work(c: &mut Criterion) {
    let peer = Peer::new("192.0.2.10:40000".parse().unwrap(), &[]);
    let host = HeaderValue::from_static("api.example.com");
    c.bench_function("headers/upstream_request", |b| {
        b.iter_batched(
            typical_request_headers,
            |mut headers| {
                strip_hop_by_hop(&mut headers);
                add_forwarding_headers(&mut headers, &peer, Some(&host));
                headers.insert("x-request-id", new_request_id());
                headers
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, route_matching, listener_lookup, header_work);
criterion_main!(benches);
