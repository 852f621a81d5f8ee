//! Proxying over real sockets: bodies, trailers, headers, h2c, balancing and the keep-alive pool.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Body, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_test::{MockUpstream, TestGateway, h2c_request, http1_request};

fn config(upstreams: &[(&str, &MockUpstream, u32)], routes: &str) -> String {
    let mut text = String::from("listeners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n");
    for (name, mock, weight) in upstreams {
        text.push_str(&format!(
            "  {name}:\n    endpoints:\n      - {{ address: \"{}\", weight: {weight} }}\n",
            mock.addr()
        ));
    }
    text.push_str("routes:\n");
    text.push_str(routes);
    text
}

async fn gateway_to(mock: &MockUpstream) -> TestGateway {
    TestGateway::start(&config(&[("backend", mock, 1)], "  - upstream: backend\n")).await
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path).header("host", "example.com").body(Empty::new()).unwrap()
}

#[tokio::test]
async fn get_is_proxied_with_forwarding_headers_and_request_id() {
    let mock = MockUpstream::start("a").await;
    let gateway = gateway_to(&mock).await;
    let response = http1_request(gateway.addr(), get("/some/path?q=1")).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello from a");
    let received = &mock.received()[0];
    assert_eq!(received.uri, "/some/path?q=1");
    assert_eq!(received.headers["host"], "example.com");
    assert_eq!(received.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(received.headers["x-forwarded-proto"], "http");
    assert_eq!(received.headers["x-forwarded-host"], "example.com");
    assert_eq!(received.headers["forwarded"], "for=127.0.0.1;proto=http;host=\"example.com\"");
    let id = received.headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 32);
    assert_eq!(response.header("x-request-id"), Some(id));
}

#[tokio::test]
async fn incoming_request_id_is_kept() {
    let mock = MockUpstream::start("a").await;
    let gateway = gateway_to(&mock).await;
    let request = Request::get("/").header("x-request-id", "client-id-1").body(Empty::<Bytes>::new()).unwrap();
    let response = http1_request(gateway.addr(), request).await.unwrap();
    assert_eq!(mock.received()[0].headers["x-request-id"], "client-id-1");
    assert_eq!(response.header("x-request-id"), Some("client-id-1"));
}

#[tokio::test]
async fn forwarding_headers_and_request_ids_can_be_turned_off() {
    let mock = MockUpstream::start("a").await;
    let routes = "  - upstream: backend\n";
    let text = format!(
        "server:\n  forwarded_headers: false\n  request_id: {{ enabled: false }}\n{}",
        config(&[("backend", &mock, 1)], routes)
    );
    let gateway = TestGateway::start(&text).await;
    let request = Request::get("/")
        .header("host", "example.com")
        .header("x-forwarded-for", "10.9.9.9")
        .header("x-request-id", "client-id-1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = http1_request(gateway.addr(), request).await.unwrap();
    assert_eq!(response.status, 200);
    let received = &mock.received()[0];
    // The client's own pass through as sent; weir adds none.
    assert_eq!(received.headers["x-forwarded-for"], "10.9.9.9");
    assert_eq!(received.headers["x-request-id"], "client-id-1");
    for added in ["x-forwarded-proto", "x-forwarded-host", "forwarded"] {
        assert!(!received.headers.contains_key(added), "{added} was added");
    }
    assert_eq!(received.headers["host"], "example.com");
    assert_eq!(response.header("x-request-id"), None);
}

#[tokio::test]
async fn bodies_pass_through_intact() {
    let mock = MockUpstream::start("a").await;
    let gateway = gateway_to(&mock).await;
    let megabyte: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    for body in [Vec::new(), b"small".to_vec(), megabyte] {
        let request =
            Request::post("/echo").header("x-mock-echo", "1").body(Full::new(Bytes::from(body.clone()))).unwrap();
        let response = http1_request(gateway.addr(), request).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body.len(), body.len());
        assert!(response.body == body, "echoed body differs");
    }
    let received = mock.received();
    assert_eq!(received[2].body.len(), 1 << 20);
    assert_eq!(received[2].headers["content-length"], "1048576");
}

fn chunked_body(chunks: usize, trailer: Option<(&'static str, &'static str)>) -> StreamBody<ChunkStream> {
    let mut frames: Vec<Frame<Bytes>> =
        (0..chunks).map(|i| Frame::data(Bytes::from(vec![b'a' + i as u8; 1000]))).collect();
    if let Some((name, value)) = trailer {
        let mut trailers = http::HeaderMap::new();
        trailers.insert(name, value.parse().unwrap());
        frames.push(Frame::trailers(trailers));
    }
    StreamBody::new(ChunkStream(frames.into()))
}

struct ChunkStream(std::collections::VecDeque<Frame<Bytes>>);

impl futures_core::Stream for ChunkStream {
    type Item = Result<Frame<Bytes>, std::convert::Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }
}

#[tokio::test]
async fn chunked_request_body_and_trailers_reach_the_upstream() {
    let mock = MockUpstream::start("a").await;
    let gateway = gateway_to(&mock).await;
    let request = Request::post("/upload")
        .header("trailer", "x-checksum")
        .header("te", "trailers")
        .body(chunked_body(5, Some(("x-checksum", "abc123"))))
        .unwrap();
    let response = http1_request(gateway.addr(), request).await.unwrap();
    assert_eq!(response.status, 200);
    let received = &mock.received()[0];
    assert_eq!(received.body.len(), 5000);
    assert_eq!(&received.body[..3], b"aaa");
    assert!(received.headers.get("transfer-encoding").is_some_and(|te| te == "chunked"));
    let trailers = received.trailers.as_ref().expect("trailers reached the upstream");
    assert_eq!(trailers["x-checksum"], "abc123");
}

#[tokio::test]
async fn chunked_response_and_trailers_reach_the_client() {
    let mock = MockUpstream::start("a").await;
    let gateway = gateway_to(&mock).await;
    let request = Request::get("/stream")
        .header("te", "trailers")
        .header("x-mock-chunks", "20")
        .header("x-mock-chunk-size", "4096")
        .header("x-mock-trailer", "grpc-status=0")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = http1_request(gateway.addr(), request).await.unwrap();
    assert_eq!(response.body.len(), 20 * 4096);
    let trailers = response.trailers.expect("trailers reached the client");
    assert_eq!(trailers["grpc-status"], "0");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let mock = MockUpstream::start("a").await;
    let gateway = gateway_to(&mock).await;
    let request = Request::get("/")
        .header("connection", "x-private")
        .header("x-private", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("x-mock-header", "keep-alive=timeout=99")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = http1_request(gateway.addr(), request).await.unwrap();
    let received = &mock.received()[0];
    for name in ["x-private", "keep-alive", "proxy-connection"] {
        assert!(!received.headers.contains_key(name), "{name} reached the upstream");
    }
    assert!(!response.headers.contains_key("keep-alive"));
}

#[tokio::test]
async fn h2c_clients_are_proxied_to_http1_upstreams() {
    let mock = MockUpstream::start("a").await;
    let gateway = gateway_to(&mock).await;
    let uri = format!("http://api.example.com:{}/h2/path", gateway.addr().port());
    let request =
        Request::post(uri).header("x-mock-echo", "1").body(Full::new(Bytes::from_static(b"over h2"))).unwrap();
    let response = h2c_request(gateway.addr(), request).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "over h2");
    let received = &mock.received()[0];
    assert_eq!(received.version, http::Version::HTTP_11);
    assert_eq!(received.uri, "/h2/path");
    assert_eq!(received.headers["host"], format!("api.example.com:{}", gateway.addr().port()));
}

#[tokio::test]
async fn weighted_round_robin_follows_weights() {
    let light = MockUpstream::start("light").await;
    let heavy = MockUpstream::start("heavy").await;
    let text = format!(
        "listeners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n  pair:\n    endpoints:\n      - {{ address: \"{}\", weight: 1 }}\n      - {{ address: \"{}\", weight: 3 }}\nroutes:\n  - upstream: pair\n",
        light.addr(),
        heavy.addr()
    );
    let gateway = TestGateway::start(&text).await;
    for _ in 0..40 {
        http1_request(gateway.addr(), get("/")).await.unwrap();
    }
    assert_eq!(light.count(), 10);
    assert_eq!(heavy.count(), 30);
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let mock = MockUpstream::start("a").await;
    let gateway = gateway_to(&mock).await;
    for _ in 0..10 {
        let response = http1_request(gateway.addr(), get("/")).await.unwrap();
        assert_eq!(response.status, 200);
    }
    assert_eq!(mock.count(), 10);
    assert_eq!(mock.connections(), 1);
}

#[tokio::test]
async fn streamed_response_body_is_not_buffered() {
    let mock = MockUpstream::start("a").await;
    let gateway = gateway_to(&mock).await;
    let request = Request::get("/slow")
        .header("host", "weir.test")
        .header("x-mock-chunks", "3")
        .header("x-mock-chunk-delay-ms", "300")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let stream = tokio::net::TcpStream::connect(gateway.addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(request).await.unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    // The first chunk arrives while the upstream is still producing the rest.
    assert_eq!(first.data_ref().map(|d| d.len()), Some(1024));
    assert!(!body.is_end_stream());
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest.len(), 2048);
}

#[tokio::test]
async fn expect_continue_is_answered_by_the_gateway_and_not_forwarded() {
    let mock = MockUpstream::start("a").await;
    let gateway = gateway_to(&mock).await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr()).await.unwrap();
    let head =
        b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
    stream.write_all(head).await.unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).await.unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").await.unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert!(rest.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&rest));
    let received = &mock.received()[0];
    assert_eq!(received.body, "hello");
    assert!(!received.headers.contains_key("expect"));
}

#[tokio::test]
async fn http10_request_without_host_gets_the_endpoint_as_host() {
    let mock = MockUpstream::start("a").await;
    let gateway = gateway_to(&mock).await;
    let response = weir_test::raw_exchange(gateway.addr(), b"GET /old HTTP/1.0\r\n\r\n").await;
    assert!(response.text().starts_with("HTTP/1.0 200"), "{}", response.text());
    assert_eq!(mock.received()[0].headers["host"], mock.addr().to_string());
}
