//! Shutdown order: readiness turns false first and weir keeps accepting for the pre-drain delay;
//! then listeners close, idle keep-alive connections (HTTP/1 and HTTP/2) are closed at once, and
//! the drain ends clean without waiting for their idle timeout.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use weir_proxy::Drained;
use weir_test::{TEST_TIMEOUT, TestGateway, http1_request};

const CONFIG: &str = "server: { drain_delay: 3s, drain_timeout: 60s }\nadmin: { address: \"127.0.0.1:0\" }\nlisteners: [{ name: public, address: \"127.0.0.1:0\", idle_timeout: 1h }]\nroutes:\n  - { direct_response: { status: 200, body: up } }\n";

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path).header("host", "weir.test").body(Empty::new()).unwrap()
}

#[tokio::test]
async fn readiness_turns_false_while_weir_still_accepts_for_the_delay() {
    let mut gateway = TestGateway::start(CONFIG).await;
    assert_eq!(http1_request(gateway.admin(), get("/readyz")).await.unwrap().status, 200);
    gateway.begin_shutdown();
    tokio::time::timeout(TEST_TIMEOUT, async {
        while http1_request(gateway.admin(), get("/readyz")).await.unwrap().status != 503 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("readiness never turned false");
    // Not ready, yet a client that has not noticed is still served on a new connection.
    let response = http1_request(gateway.addr(), get("/")).await.unwrap();
    assert_eq!(response.text(), "up");
    gateway.listeners_closed().await;
    assert!(tokio::net::TcpStream::connect(gateway.addr()).await.is_err());
    assert_eq!(gateway.stop().await, Drained::Clean);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_when_the_drain_begins() {
    let text = CONFIG.replace("drain_delay: 3s", "drain_delay: 0s");
    let gateway = TestGateway::start(&text).await;
    let stream = tokio::net::TcpStream::connect(gateway.addr()).await.unwrap();
    let (mut http1, http1_conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    let http1_conn = tokio::spawn(http1_conn);
    let stream = tokio::net::TcpStream::connect(gateway.addr()).await.unwrap();
    let (mut h2, h2_conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    let h2_conn = tokio::spawn(h2_conn);
    http1.send_request(get("/")).await.unwrap().into_body().collect().await.unwrap();
    h2.send_request(get("/")).await.unwrap().into_body().collect().await.unwrap();

    // Both connections are idle now; the idle timeout is an hour, the drain deadline a minute.
    assert_eq!(gateway.stop().await, Drained::Clean);
    let closed = tokio::time::timeout(TEST_TIMEOUT, async { (http1_conn.await, h2_conn.await) }).await;
    let (http1_end, h2_end) = closed.expect("idle connections were left open");
    assert!(http1_end.unwrap().is_ok() && h2_end.unwrap().is_ok());
}
