//! Upstream failures become refusals from the one mapping function: status, body and proxy-status.

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use weir_test::{MockUpstream, TestGateway, http1_request};

fn get(headers: &[(&str, &str)]) -> Request<Empty<Bytes>> {
    let mut builder = Request::get("/");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Empty::new()).unwrap()
}

async fn gateway(endpoint: &str, timeout: &str) -> TestGateway {
    let text = format!(
        "listeners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n  backend:\n    endpoints: [\"{endpoint}\"]\n    connect_timeout: 1s\nroutes:\n  - upstream: backend\n    timeout: {timeout}\n"
    );
    TestGateway::start(&text).await
}

#[tokio::test]
async fn closed_port_is_502_connect_error() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = unused.local_addr().unwrap();
    drop(unused);
    let gateway = gateway(&addr.to_string(), "2s").await;
    let response = http1_request(gateway.addr(), get(&[])).await.unwrap();
    assert_eq!(response.status, 502);
    assert_eq!(response.header("proxy-status"), Some("weir; error=connection_refused; details=\"connect_error\""));
    assert_eq!(response.text(), "502 connect_error\n");
}

#[tokio::test]
async fn slow_upstream_is_504_upstream_timeout() {
    let mock = MockUpstream::start("a").await;
    let gateway = gateway(&mock.addr().to_string(), "200ms").await;
    let response = http1_request(gateway.addr(), get(&[("x-mock-delay-ms", "3000")])).await.unwrap();
    assert_eq!(response.status, 504);
    assert_eq!(
        response.header("proxy-status"),
        Some("weir; error=http_response_timeout; details=\"upstream_timeout\"")
    );
}

#[tokio::test]
async fn upstream_reset_is_502() {
    let mock = MockUpstream::start("a").await;
    let gateway = gateway(&mock.addr().to_string(), "2s").await;
    let response = http1_request(gateway.addr(), get(&[("x-mock-reset", "1")])).await.unwrap();
    assert_eq!(response.status, 502);
    assert!(response.header("proxy-status").unwrap().contains("details=\"upstream_reset\""));
    // The next request is served on a fresh upstream connection.
    let response = http1_request(gateway.addr(), get(&[])).await.unwrap();
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn upstream_statuses_pass_through_untouched() {
    let mock = MockUpstream::start("a").await;
    let gateway = gateway(&mock.addr().to_string(), "2s").await;
    let response = http1_request(gateway.addr(), get(&[("x-mock-status", "503")])).await.unwrap();
    assert_eq!(response.status, 503);
    assert!(response.header("proxy-status").is_none());
}
