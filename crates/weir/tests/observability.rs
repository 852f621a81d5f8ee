//! The admin API: health, readiness through a drain, the bearer token, and metrics that count what
//! the data plane did.

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use weir_test::{Exchange, MockUpstream, TestGateway, http1_request};

async fn admin_get(gateway: &TestGateway, path: &str, token: Option<&str>) -> Exchange {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    http1_request(gateway.admin(), request.body(Empty::<Bytes>::new()).unwrap()).await.unwrap()
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path).body(Empty::new()).unwrap()
}

fn config(mock: &MockUpstream, admin: &str) -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    format!(
        "server:\n  drain_timeout: 10s\nadmin: {admin}\nlisteners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n  live:\n    endpoints: [\"{}\"]\n  dead:\n    endpoints: [\"{closed}\"]\nroutes:\n  - {{ name: users, match: {{ path_prefix: /users }}, upstream: live }}\n  - {{ name: broken, match: {{ path_prefix: /broken }}, upstream: dead }}\n",
        mock.addr()
    )
}

#[tokio::test]
async fn metrics_count_requests_refusals_durations_and_connections() {
    let mock = MockUpstream::start("a").await;
    let gateway = TestGateway::start(&config(&mock, "{ address: \"127.0.0.1:0\" }")).await;
    for path in ["/users/1", "/users/2", "/broken", "/nowhere"] {
        http1_request(gateway.addr(), get(path)).await.unwrap();
    }
    let metrics = admin_get(&gateway, "/metrics", None).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    let text = metrics.text();
    for expected in [
        "weir_requests_total{route=\"users\",code_class=\"2xx\"} 2",
        "weir_requests_total{route=\"broken\",code_class=\"5xx\"} 1",
        "weir_refusals_total{route=\"broken\",reason=\"connect_error\"} 1",
        "weir_requests_total{route=\"\",code_class=\"4xx\"} 1",
        "weir_refusals_total{route=\"\",reason=\"no_route\"} 1",
        "weir_request_duration_seconds_count{route=\"users\"} 2",
        "weir_connections_total{listener=\"public\"} 4",
        "weir_build_info{version=\"",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn readiness_turns_false_while_draining_and_admin_keeps_answering() {
    let mock = MockUpstream::start("slow").await;
    let mut gateway = TestGateway::start(&config(&mock, "{ address: \"127.0.0.1:0\" }")).await;
    assert_eq!(admin_get(&gateway, "/readyz", None).await.status, 200);
    assert_eq!(admin_get(&gateway, "/healthz", None).await.text(), "ok\n");
    let addr = gateway.addr();
    let in_flight = tokio::spawn(async move {
        let request = Request::get("/users/slow").header("x-mock-delay-ms", "1000").body(Empty::<Bytes>::new());
        http1_request(addr, request.unwrap()).await
    });
    mock.wait_for(1).await;
    gateway.begin_shutdown();
    gateway.listeners_closed().await;
    let readiness = admin_get(&gateway, "/readyz", None).await;
    assert_eq!(readiness.status, 503);
    assert_eq!(readiness.text(), "draining\n");
    assert_eq!(in_flight.await.unwrap().unwrap().status, 200);
}

#[tokio::test]
async fn token_guards_everything_but_healthz() {
    let mock = MockUpstream::start("a").await;
    let token = "0123456789abcdef-secret";
    let gateway =
        TestGateway::start(&config(&mock, &format!("{{ address: \"127.0.0.1:0\", token: \"{token}\" }}"))).await;
    assert_eq!(admin_get(&gateway, "/healthz", None).await.status, 200);
    assert_eq!(admin_get(&gateway, "/metrics", None).await.status, 401);
    assert_eq!(admin_get(&gateway, "/metrics", Some("0123456789abcdef-wrong!")).await.status, 401);
    assert_eq!(admin_get(&gateway, "/metrics", Some(token)).await.status, 200);
    assert_eq!(admin_get(&gateway, "/readyz", Some(token)).await.status, 200);
    assert_eq!(admin_get(&gateway, "/nothing", Some(token)).await.status, 404);
}
