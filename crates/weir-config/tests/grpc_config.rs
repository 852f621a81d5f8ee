//! Upstream protocols, HTTP/2 settings, gRPC health checks and gRPC route conditions: good files
//! load with their defaults, and mistakes name the field and what would be valid.

use weir_config::{Format, HealthCheckKind, UpstreamProtocol, parse_str};

fn config(upstream: &str, route: &str) -> String {
    format!(
        "listeners: [{{ name: public, address: \"127.0.0.1:8080\" }}]\nupstreams:\n  orders:\n    endpoints: [\"127.0.0.1:50051\"]\n{upstream}routes:\n  - upstream: orders\n{route}"
    )
}

fn problems(text: &str) -> Vec<String> {
    match parse_str(text, Format::Yaml, "grpc.yaml") {
        Ok(_) => panic!("expected an error:\n{text}"),
        Err(e) => e.problems().iter().map(|p| format!("{}: {}", p.field, p.message)).collect(),
    }
}

#[test]
fn upstreams_speak_http1_unless_told_otherwise() {
    let config = parse_str(&config("", ""), Format::Yaml, "grpc.yaml").unwrap();
    let orders = &config.upstreams["orders"];
    assert_eq!(orders.protocol, UpstreamProtocol::Http1);
    assert_eq!(orders.http2.max_concurrent_streams, 100);
    assert_eq!(orders.http2.keepalive_interval.0, std::time::Duration::from_secs(30));
}

#[test]
fn grpc_upstreams_and_routes_load() {
    let upstream = "    protocol: http2\n    http2: { max_concurrent_streams: 8, keepalive_interval: 0s }\n    health_check: { type: grpc, service: shop.Orders }\n";
    let route = "    match: { grpc: { service: shop.Orders, method: Place } }\n";
    let config = parse_str(&config(upstream, route), Format::Yaml, "grpc.yaml").unwrap();
    let orders = &config.upstreams["orders"];
    assert_eq!((orders.protocol, orders.http2.max_concurrent_streams), (UpstreamProtocol::Http2, 8));
    let check = orders.health_check.as_ref().unwrap();
    assert_eq!((check.kind, check.service.as_str()), (HealthCheckKind::Grpc, "shop.Orders"));
    let grpc = config.routes[0].matches.grpc.as_ref().unwrap();
    assert_eq!(grpc.path(), "/shop.Orders/Place");
}

#[test]
fn auto_needs_tls() {
    let found = problems(&config("    protocol: auto\n", ""));
    assert!(
        found[0].starts_with("upstreams.orders.protocol: auto picks the version by ALPN, which needs tls"),
        "{found:?}"
    );
}

#[test]
fn stream_limits_are_bounded() {
    for streams in [0, 10_001] {
        let found = problems(&config(&format!("    http2: {{ max_concurrent_streams: {streams} }}\n"), ""));
        assert_eq!(found, ["upstreams.orders.http2.max_concurrent_streams: must be between 1 and 10000"]);
    }
}

#[test]
fn grpc_health_checks_need_http2() {
    let found = problems(&config("    health_check: { type: grpc }\n", ""));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("upstreams.orders.health_check.type: gRPC health checks speak HTTP/2"), "{found:?}");
}

#[test]
fn grpc_conditions_name_a_service_and_stand_alone() {
    let found = problems(&config("", "    match: { grpc: { service: \"shop..Orders\", method: \"Pl/ace\" } }\n"));
    assert!(found.iter().any(|p| p.starts_with("routes[0].match.grpc.service: \"shop..Orders\"")), "{found:?}");
    assert!(found.iter().any(|p| p.starts_with("routes[0].match.grpc.method: \"Pl/ace\"")), "{found:?}");
    let found = problems(&config("", "    match: { grpc: { service: shop.Orders }, path_prefix: /x }\n"));
    assert_eq!(found, ["routes[0].match.grpc: grpc sets the route's path: use it without path conditions"]);
}
