//! Retries, budgets and deadlines over real sockets.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{Empty, Full};
use weir_test::{MockUpstream, TestGateway, http1_request};

fn config(mocks: &[&MockUpstream], route_extra: &str, server_extra: &str) -> String {
    let endpoints: Vec<String> = mocks.iter().map(|m| format!("\"{}\"", m.addr())).collect();
    format!(
        "server:\n  workers: 1\n{server_extra}listeners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n  backend:\n    endpoints: [{}]\n    outlier_detection: {{ enabled: false }}\nroutes:\n  - upstream: backend\n{route_extra}",
        endpoints.join(", ")
    )
}

async fn get(gateway: &TestGateway, headers: &[(&str, &str)]) -> weir_test::Exchange {
    let mut request = Request::get("/");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    http1_request(gateway.addr(), request.body(Empty::<Bytes>::new()).unwrap()).await.unwrap()
}

#[tokio::test]
async fn a_failed_try_is_retried_on_another_endpoint() {
    let (a, b) = (MockUpstream::start("a").await, MockUpstream::start("b").await);
    a.set_status("", 503);
    let gateway = TestGateway::start(&config(&[&a, &b], "    retry: { attempts: 2, on: [503] }\n", "")).await;
    for _ in 0..20 {
        let response = get(&gateway, &[]).await;
        assert_eq!((response.status.as_u16(), response.header("x-upstream")), (200, Some("b")));
    }
    assert!(a.count() >= 5, "a was tried first about half the time: {}", a.count());
}

#[tokio::test]
async fn requests_that_are_not_idempotent_are_retried_only_with_a_key() {
    let (a, b) = (MockUpstream::start("a").await, MockUpstream::start("b").await);
    a.set_status("", 503);
    let gateway = TestGateway::start(&config(&[&a, &b], "    retry: { attempts: 2, on: [503] }\n", "")).await;
    let post = |key: Option<&str>| {
        let mut request = Request::post("/").header("content-length", "5");
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.body(Full::new(Bytes::from_static(b"hello"))).unwrap()
    };
    let mut plain = Vec::new();
    for _ in 0..4 {
        plain.push(http1_request(gateway.addr(), post(None)).await.unwrap().status.as_u16());
    }
    assert!(plain.contains(&503), "round robin sent some POSTs to a, and they were not retried: {plain:?}");
    for i in 0..4 {
        let response = http1_request(gateway.addr(), post(Some(&format!("k{i}")))).await.unwrap();
        assert_eq!(response.status, 200);
    }
    // The body went to b whole, on the retry too.
    assert!(b.received().iter().all(|r| r.body == Bytes::from_static(b"hello")));
}

#[tokio::test]
async fn the_budget_caps_what_retries_add_to_a_failing_upstream() {
    let a = MockUpstream::start("a").await;
    a.set_status("", 503);
    let route = "    retry: { attempts: 5, on: [503], backoff: { base: 1ms, max: 2ms }, budget: { ratio: 20%, min_per_second: 0 } }\n";
    let gateway = TestGateway::start(&config(&[&a], route, "")).await;
    const REQUESTS: usize = 200;
    for _ in 0..REQUESTS {
        assert_eq!(get(&gateway, &[]).await.status, 503);
    }
    // Without the budget the upstream would see five times the requests.
    let seen = a.count();
    assert!(seen <= REQUESTS * 120 / 100 + 1, "{seen} requests reached the upstream");
    assert!(seen > REQUESTS, "retries happened within the budget: {seen}");
}

#[tokio::test]
async fn a_down_upstream_with_the_budget_spent_is_refused_as_such() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = unused.local_addr().unwrap();
    drop(unused);
    let text = format!(
        "listeners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n  backend:\n    endpoints: [\"{addr}\"]\nroutes:\n  - upstream: backend\n    retry: {{ attempts: 3, on: [connect_failure], backoff: {{ base: 1ms, max: 1ms }}, budget: {{ ratio: 0, min_per_second: 0 }} }}\n"
    );
    let gateway = TestGateway::start(&text).await;
    let response = get(&gateway, &[]).await;
    assert_eq!(response.status, 503);
    assert_eq!(
        response.header("proxy-status"),
        Some("weir; error=destination_unavailable; details=\"budget_exhausted\"")
    );
}

#[tokio::test]
async fn a_slow_try_is_cut_and_retried_elsewhere() {
    let (a, b) = (MockUpstream::start("a").await, MockUpstream::start("b").await);
    a.set_delay(5_000);
    let route = "    retry: { attempts: 2, on: [timeout], per_try_timeout: 100ms }\n";
    let gateway = TestGateway::start(&config(&[&a, &b], route, "")).await;
    for _ in 0..4 {
        let started = tokio::time::Instant::now();
        let response = get(&gateway, &[]).await;
        assert_eq!((response.status.as_u16(), response.header("x-upstream")), (200, Some("b")));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

/// A `grpc-timeout` value in milliseconds, whatever its unit.
fn grpc_timeout_ms(value: &str) -> f64 {
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: f64 = digits.parse().unwrap();
    amount
        * match unit {
            "n" => 1e-6,
            "u" => 1e-3,
            "m" => 1.0,
            "S" => 1e3,
            other => panic!("unit {other}"),
        }
}

#[tokio::test]
async fn grpc_timeout_travels_upstream_shrunk_and_cuts_the_request() {
    let a = MockUpstream::start("a").await;
    let gateway = TestGateway::start(&config(&[&a], "", "")).await;
    let response = get(&gateway, &[("grpc-timeout", "500m")]).await;
    assert_eq!(response.status, 200);
    let sent = a.received()[0].headers["grpc-timeout"].to_str().unwrap().to_string();
    let ms = grpc_timeout_ms(&sent);
    assert!(ms > 0.0 && ms <= 500.0, "{sent}");
    a.set_delay(3_000);
    let started = tokio::time::Instant::now();
    let response = get(&gateway, &[("grpc-timeout", "500m")]).await;
    assert_eq!(response.status, 504);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(450) && took < Duration::from_millis(2_500), "{took:?}");
}

#[tokio::test]
async fn the_deadline_header_is_honoured_and_sent_on() {
    let a = MockUpstream::start("a").await;
    let gateway =
        TestGateway::start(&config(&[&a], "    timeout: 2s\n", "  deadline_header: x-request-timeout-ms\n")).await;
    assert_eq!(get(&gateway, &[("x-request-timeout-ms", "300")]).await.status, 200);
    assert_eq!(get(&gateway, &[]).await.status, 200);
    let received = a.received();
    let left = |i: usize| received[i].headers["x-request-timeout-ms"].to_str().unwrap().parse::<u64>().unwrap();
    assert!(left(0) <= 300 && left(0) > 0, "{}", left(0));
    assert!(left(1) <= 2_000 && left(1) > 300, "the route's own timeout: {}", left(1));
    // A deadline already spent is answered at once, without calling the upstream.
    let response = get(&gateway, &[("x-request-timeout-ms", "0")]).await;
    assert_eq!(response.status, 504);
    assert_eq!(
        response.header("proxy-status"),
        Some("weir; error=http_response_timeout; details=\"deadline_exceeded\"")
    );
    assert_eq!(a.count(), 2);
}

const BREAKER: &str = "    breaker: { failure_rate: 50%, min_calls: 10, window: 10s, open_for: 300ms, max_open_for: 1s, half_open_probes: 2 }\n";

/// Drives 20 requests of which 60% fail with a 500 from the upstream itself.
async fn fail_sixty_percent(gateway: &TestGateway) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..20 {
        let headers: &[(&str, &str)] = if i % 5 < 3 { &[("x-mock-status", "500")] } else { &[] };
        statuses.push(get(gateway, headers).await.status.as_u16());
    }
    statuses
}

fn breaker_config(mock: &MockUpstream, route_extra: &str) -> String {
    format!(
        "admin: {{ address: \"127.0.0.1:0\" }}\nlisteners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n  backend:\n    endpoints: [\"{}\"]\n    outlier_detection: {{ enabled: false }}\n{BREAKER}routes:\n  - upstream: backend\n{route_extra}",
        mock.addr()
    )
}

async fn breaker_state(gateway: &TestGateway) -> String {
    let request = Request::get("/upstreams").body(Empty::<Bytes>::new()).unwrap();
    let body = http1_request(gateway.admin(), request).await.unwrap().text();
    let state = body.split("\"breaker\":{\"state\":\"").nth(1).expect("a breaker in /upstreams");
    state.split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn a_failing_upstream_trips_its_breaker_and_heals_through_half_open() {
    let mock = MockUpstream::start("a").await;
    let gateway = TestGateway::start(&breaker_config(&mock, "")).await;
    let statuses = fail_sixty_percent(&gateway).await;
    assert!(statuses.contains(&503), "the breaker opened part-way: {statuses:?}");
    assert_eq!(breaker_state(&gateway).await, "open");
    let before = mock.count();
    let started = tokio::time::Instant::now();
    let response = get(&gateway, &[]).await;
    assert_eq!(response.status, 503);
    assert_eq!(response.header("proxy-status"), Some("weir; error=destination_unavailable; details=\"breaker_open\""));
    assert_eq!(response.header("retry-after"), Some("1"));
    assert!(started.elapsed() < Duration::from_millis(250), "refused at once");
    assert_eq!(mock.count(), before, "an open breaker calls nothing");
    // The upstream has healed: once the open time is over, two probes pass and the breaker closes.
    let healed = async {
        while get(&gateway, &[]).await.status != 200 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(weir_test::TEST_TIMEOUT, healed).await.expect("probes were let through");
    assert_eq!(breaker_state(&gateway).await, "half_open");
    assert_eq!(get(&gateway, &[]).await.status, 200);
    assert_eq!(breaker_state(&gateway).await, "closed");
    let metrics = http1_request(gateway.admin(), Request::get("/metrics").body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap()
        .text();
    assert!(metrics.contains("weir_upstream_breaker_trips_total{upstream=\"backend\"} 1"), "{metrics}");
    assert!(metrics.contains("weir_upstream_breaker_state{upstream=\"backend\",state=\"closed\"} 1"), "{metrics}");
}

#[tokio::test]
async fn an_open_breaker_serves_the_fallback() {
    let mock = MockUpstream::start("a").await;
    let fallback = "    fallback: { direct_response: { status: 200, body: \"cached answer\" } }\n";
    let gateway = TestGateway::start(&breaker_config(&mock, fallback)).await;
    let statuses = fail_sixty_percent(&gateway).await;
    assert!(statuses.iter().all(|s| *s == 200 || *s == 500), "{statuses:?}");
    let response = get(&gateway, &[]).await;
    assert_eq!((response.status.as_u16(), response.text()), (200, "cached answer".to_string()));
}

#[tokio::test]
async fn an_upstream_body_that_goes_quiet_is_cut_at_the_idle_timeout() {
    let a = MockUpstream::start("a").await;
    let gateway = TestGateway::start(&config(&[&a], "    body_idle_timeout: 200ms\n", "")).await;
    // Chunks every 50 ms keep the body alive; the whole of it arrives.
    let steady = get(&gateway, &[("x-mock-chunks", "5"), ("x-mock-chunk-size", "10"), ("x-mock-chunk-delay-ms", "50")]);
    let steady = steady.await;
    assert_eq!((steady.status.as_u16(), steady.body.len()), (200, 50));
    // A pause of 3 s after the head: the client gets the head, then the body is cut, well before 3 s.
    let started = tokio::time::Instant::now();
    let request = Request::get("/")
        .header("x-mock-chunks", "2")
        .header("x-mock-chunk-delay-ms", "3000")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let cut = http1_request(gateway.addr(), request).await;
    assert!(cut.is_err(), "the body ended early: {cut:?}");
    assert!(started.elapsed() < Duration::from_millis(2_500), "cut at the idle timeout, not at the pause's end");
}
