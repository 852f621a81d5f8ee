//! Per-route traffic metrics after real traffic: body bytes both ways, time to the upstream's
//! response headers, in-flight requests (up during a slow request, back to zero after), and no
//! access-log lines dropped.

use bytes::Bytes;
use http::Request;
use http_body_util::{Empty, Full};
use weir_test::{MockUpstream, TestGateway, h2c_request, http1_request};

async fn metrics(gateway: &TestGateway) -> String {
    let request = Request::get("/metrics").body(Empty::<Bytes>::new()).unwrap();
    http1_request(gateway.admin(), request).await.unwrap().text()
}

fn assert_has(text: &str, expected: &[&str]) {
    for line in expected {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[tokio::test]
async fn bytes_upstream_durations_and_in_flight_requests_are_counted_by_route() {
    let mock = MockUpstream::start("a").await;
    let dir = std::env::temp_dir().join(format!("weir-route-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!(
        "admin: {{ address: \"127.0.0.1:0\" }}\naccess_log: {{ path: \"{}\" }}\nlisteners:\n  - {{ name: public, address: \"127.0.0.1:0\" }}\nupstreams:\n  live:\n    endpoints: [\"{}\"]\nroutes:\n  - {{ name: users, match: {{ path_prefix: /users }}, upstream: live }}\n  - {{ name: hello, match: {{ path: /hello }}, direct_response: {{ status: 200, body: hi }} }}\n",
        dir.join("access.log").display(),
        mock.addr()
    );
    let gateway = TestGateway::start(&text).await;
    for body in ["0123456789", "abcde"] {
        let request = Request::post("/users/1").header("x-mock-echo", "1").body(Full::new(Bytes::from(body)));
        assert_eq!(http1_request(gateway.addr(), request.unwrap()).await.unwrap().text(), body);
    }
    let hello = Request::get("/hello").body(Empty::<Bytes>::new()).unwrap();
    http1_request(gateway.addr(), hello).await.unwrap();
    assert_has(
        &metrics(&gateway).await,
        &[
            "weir_request_body_bytes_total{route=\"users\"} 15",
            "weir_response_body_bytes_total{route=\"users\"} 15",
            "weir_response_body_bytes_total{route=\"hello\"} 2",
            "weir_request_body_bytes_total{route=\"hello\"} 0",
            "weir_upstream_duration_seconds_count{route=\"users\"} 2",
            "weir_upstream_duration_seconds_count{route=\"hello\"} 0",
            "weir_requests_in_flight{route=\"users\"} 0",
            "weir_access_log_dropped_total 0",
        ],
    );
    let addr = gateway.addr();
    let slow = tokio::spawn(async move {
        let request = Request::get("/users/slow").header("x-mock-delay-ms", "1500").body(Empty::<Bytes>::new());
        http1_request(addr, request.unwrap()).await.unwrap()
    });
    mock.wait_for(3).await;
    assert_has(&metrics(&gateway).await, &["weir_requests_in_flight{route=\"users\"} 1"]);
    assert_eq!(slow.await.unwrap().status, 200);
    let after = metrics(&gateway).await;
    assert_has(
        &after,
        &["weir_requests_in_flight{route=\"users\"} 0", "weir_upstream_duration_seconds_count{route=\"users\"} 3"],
    );
    // The slow answer waited at least its 1.5 s delay: it sits above the 0.256 s bucket.
    assert_has(&after, &["weir_upstream_duration_seconds_bucket{le=\"0.256\",route=\"users\"} 2"]);
}

#[tokio::test]
async fn connections_are_counted_by_the_protocol_of_their_first_request() {
    let text = "admin: { address: \"127.0.0.1:0\" }\nlisteners:\n  - { name: public, address: \"127.0.0.1:0\" }\nroutes:\n  - direct_response: { status: 200 }\n";
    let gateway = TestGateway::start(text).await;
    for _ in 0..2 {
        http1_request(gateway.addr(), Request::get("/").body(Empty::<Bytes>::new()).unwrap()).await.unwrap();
    }
    let h2 = Request::get("http://a.example/").body(Empty::<Bytes>::new()).unwrap();
    assert_eq!(h2c_request(gateway.addr(), h2).await.unwrap().status, 200);
    let text = metrics(&gateway).await;
    assert_has(
        &text,
        &[
            "weir_http_connections_total{listener=\"public\",protocol=\"http1\"} 2",
            "weir_http_connections_total{listener=\"public\",protocol=\"http2\"} 1",
        ],
    );
}
