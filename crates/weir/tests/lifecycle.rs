//! Shutdown: listeners close at once, in-flight requests finish, the drain reports how it ended.

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use weir_proxy::Drained;
use weir_test::{MockUpstream, TestGateway, http1_request};

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_refuses_new_connections() {
    let mock = MockUpstream::start("slow").await;
    let text = format!(
        "server:\n  drain_timeout: 10s\nlisteners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n  backend:\n    endpoints: [\"{}\"]\nroutes:\n  - upstream: backend\n",
        mock.addr()
    );
    let mut gateway = TestGateway::start(&text).await;
    let addr = gateway.addr();
    let in_flight = tokio::spawn(async move {
        let request = Request::get("/slow").header("x-mock-delay-ms", "1500").body(Empty::<Bytes>::new()).unwrap();
        http1_request(addr, request).await
    });
    mock.wait_for(1).await;
    gateway.begin_shutdown();
    gateway.listeners_closed().await;
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "a new connection was accepted during the drain");
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello from slow");
    assert_eq!(gateway.stop().await, Drained::Clean);
}

#[tokio::test]
async fn drain_deadline_ends_requests_that_take_too_long() {
    let mock = MockUpstream::start("stuck").await;
    let text = format!(
        "server:\n  drain_timeout: 200ms\nlisteners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n  backend:\n    endpoints: [\"{}\"]\nroutes:\n  - upstream: backend\n    timeout: 60s\n",
        mock.addr()
    );
    let gateway = TestGateway::start(&text).await;
    let addr = gateway.addr();
    let _in_flight = tokio::spawn(async move {
        let request = Request::get("/").header("x-mock-delay-ms", "30000").body(Empty::<Bytes>::new()).unwrap();
        http1_request(addr, request).await
    });
    mock.wait_for(1).await;
    assert_eq!(gateway.stop().await, Drained::TimedOut);
}
