//! The HTTP/2 server over real sockets, with a small service in place of the gateway: hyper's
//! client as a well-behaved peer (requests, bodies both ways past every window, trailers, many
//! streams), and frames written by hand for what a well-behaved peer never sends (malformed
//! requests, floods, resets, oversized blocks).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::frame::{self, Head, Reason};
use super::hpack;
use super::{BlockLimits, Http2Settings, PREFACE, Service, serve};
use crate::client_body::ClientBody;
use crate::http1::Answer;
use crate::http1::tests::Frames;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The size of `/large`'s body: more than a socket's buffers hold.
const LARGE: usize = 16 * 1024 * 1024;
type TestBody = BoxBody<Bytes, BoxError>;

const SETTINGS: Http2Settings = Http2Settings {
    limits: BlockLimits { max_list_size: 4096, max_fields: 50 },
    max_concurrent_streams: 8,
    idle_timeout: Duration::from_secs(30),
    preface_timeout: Duration::from_secs(30),
};

/// Answers by path: `/echo` sends the body back with its trailers, `/forever` never answers (and
/// counts its drops), `/trailers` answers with a trailer, `/empty` answers 204; anything else
/// answers `ok` with the request's method and path in headers. A request standing for a block over
/// the limits is answered 431.
#[derive(Clone, Default)]
struct TestService {
    dropped: Arc<AtomicUsize>,
    /// The errors the server reported, in order.
    errors: Arc<std::sync::Mutex<Vec<(super::ErrorScope, Reason)>>>,
}

struct CountDrop(Arc<AtomicUsize>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

impl Service for TestService {
    type Body = TestBody;

    #[allow(clippy::manual_async_fn)] // The trait asks for `Send`, which an `async fn` cannot say.
    fn call(&self, request: Request<ClientBody>) -> impl Future<Output = Answer<TestBody>> + Send {
        let too_large = request.extensions().get::<super::RefusedHead>().is_some();
        // Made here, not in the future: a future dropped before it ever ran drops it too.
        let guard = (request.uri().path() == "/forever").then(|| CountDrop(self.dropped.clone()));
        async move {
            if too_large {
                let mut response = Response::new(full("too large"));
                *response.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
                return Ok(response);
            }
            let response = match request.uri().path() {
                "/echo" => {
                    let collected = request.into_body().collect().await.unwrap();
                    let trailers = collected.trailers().cloned();
                    let data = collected.to_bytes();
                    let mut body = vec![http_body::Frame::data(data)];
                    body.extend(trailers.map(http_body::Frame::trailers));
                    Response::new(frames(body))
                }
                "/forever" => {
                    std::future::pending::<()>().await;
                    drop(guard);
                    unreachable!()
                }
                "/trailers" => {
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", HeaderValue::from_static("0"));
                    let body =
                        vec![http_body::Frame::data(Bytes::from_static(b"part")), http_body::Frame::trailers(trailers)];
                    Response::new(frames(body))
                }
                "/large" => Response::new(full(vec![b'x'; LARGE])),
                "/empty" => {
                    let mut response = Response::new(full(""));
                    *response.status_mut() = StatusCode::NO_CONTENT;
                    response
                }
                path => {
                    let mut response = Response::new(full("ok"));
                    let headers = response.headers_mut();
                    headers.insert("x-method", request.method().as_str().parse().unwrap());
                    headers.insert("x-path", path.parse().unwrap());
                    if let Some(cookie) = request.headers().get("cookie") {
                        headers.insert("x-cookie", cookie.clone());
                    }
                    response
                }
            };
            Ok(response)
        }
    }

    fn protocol_error(&self, scope: super::ErrorScope, reason: Reason) {
        self.errors.lock().unwrap().push((scope, reason));
    }
}

fn frames(frames: Vec<http_body::Frame<Bytes>>) -> TestBody {
    Frames(frames.into()).boxed()
}

/// A listener serving HTTP/2 with `service` on every connection it accepts.
async fn server(service: TestService, settings: Http2Settings, stopping: CancellationToken) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, settings, stopping.clone(), service.clone()));
        }
    });
    address
}

type Sender = hyper::client::conn::http2::SendRequest<TestBody>;

async fn client(address: std::net::SocketAddr) -> Sender {
    let stream = TcpStream::connect(address).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(connection);
    sender
}

fn get(path: &str) -> Request<TestBody> {
    Request::get(format!("http://weir.test{path}")).body(full("")).unwrap()
}

#[tokio::test]
async fn a_request_is_answered_with_its_fields_and_body() {
    let address = server(TestService::default(), SETTINGS, CancellationToken::new()).await;
    let mut sender = client(address).await;
    let mut request = get("/hello?x=1");
    request.headers_mut().append("cookie", HeaderValue::from_static("a=1"));
    request.headers_mut().append("cookie", HeaderValue::from_static("b=2"));
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-method"], "GET");
    assert_eq!(response.headers()["x-path"], "/hello");
    assert_eq!(response.headers()["x-cookie"], "a=1; b=2");
    assert_eq!(response.headers()["content-length"], "2");
    assert!(httpdate::parse_http_date(response.headers()["date"].to_str().unwrap()).is_ok());
    assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "ok");
}

/// 3 MiB each way: past weir's windows (1 MiB) and the client's (64 KiB), so both sides wait on
/// WINDOW_UPDATE; the request's trailers come back as the response's.
#[tokio::test]
async fn large_bodies_flow_both_ways_within_the_windows() {
    let address = server(TestService::default(), SETTINGS, CancellationToken::new()).await;
    let mut sender = client(address).await;
    let body: Vec<u8> = (0..3 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-sum", HeaderValue::from_static("42"));
    let chunks: Vec<http_body::Frame<Bytes>> = body
        .chunks(100_000)
        .map(|chunk| http_body::Frame::data(Bytes::copy_from_slice(chunk)))
        .chain([http_body::Frame::trailers(trailers)])
        .collect();
    let request = Request::post("http://weir.test/echo").body(frames(chunks)).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let collected = response.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["x-sum"], "42");
    assert!(collected.to_bytes() == body, "the body came back changed");
}

#[tokio::test]
async fn many_streams_share_one_connection() {
    // Clients take 100 streams at once for allowed until SETTINGS say otherwise (RFC 9113 6.5.2).
    let settings = Http2Settings { max_concurrent_streams: 256, ..SETTINGS };
    let address = server(TestService::default(), settings, CancellationToken::new()).await;
    let sender = client(address).await;
    let mut answers = tokio::task::JoinSet::new();
    for i in 0..100 {
        let mut sender = sender.clone();
        answers.spawn(async move {
            let response = sender.send_request(get(&format!("/n{i}"))).await.unwrap();
            response.headers()["x-path"].to_str().unwrap() == format!("/n{i}")
        });
    }
    let mut right = 0;
    while let Some(answer) = answers.join_next().await {
        right += usize::from(answer.unwrap());
    }
    assert_eq!(right, 100);
}

#[tokio::test]
async fn trailers_204_and_head_are_framed_as_http2_asks() {
    let address = server(TestService::default(), SETTINGS, CancellationToken::new()).await;
    let mut sender = client(address).await;
    let response = sender.send_request(get("/trailers")).await.unwrap();
    let collected = response.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
    assert_eq!(collected.to_bytes(), "part");
    let response = sender.send_request(get("/empty")).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.headers().get("content-length").is_none());
    let head = Request::head("http://weir.test/x").body(full("")).unwrap();
    let response = sender.send_request(head).await.unwrap();
    // The body's own length is not a GET's length: none is said.
    assert!(response.headers().get("content-length").is_none());
    assert!(response.into_body().collect().await.unwrap().to_bytes().is_empty());
}

/// A client speaking frames by hand.
struct Raw {
    stream: TcpStream,
    read: BytesMut,
}

impl Raw {
    async fn connect(address: std::net::SocketAddr) -> Raw {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let mut hello = BytesMut::from(PREFACE);
        frame::put_settings(&mut hello, &[]);
        stream.write_all(&hello).await.unwrap();
        Raw { stream, read: BytesMut::new() }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next frame, or `None` once the server closed the connection.
    async fn frame(&mut self) -> Option<(Head, Bytes)> {
        loop {
            if self.read.len() >= frame::HEADER_LEN {
                let head = Head::parse(&self.read);
                if self.read.len() >= frame::HEADER_LEN + head.length {
                    let _ = self.read.split_to(frame::HEADER_LEN);
                    return Some((head, self.read.split_to(head.length).freeze()));
                }
            }
            if self.stream.read_buf(&mut self.read).await.ok()? == 0 {
                return None;
            }
        }
    }

    /// The next frame of `kind`, skipping the connection's own bookkeeping (SETTINGS, WINDOW_UPDATE).
    async fn expect(&mut self, kind: u8) -> (Head, Bytes) {
        loop {
            let (head, payload) = self.frame().await.expect("the connection closed");
            if head.kind == kind {
                return (head, payload);
            }
            assert!(matches!(head.kind, frame::SETTINGS | frame::WINDOW_UPDATE), "unexpected {head:?}");
        }
    }

    async fn expect_reset(&mut self, stream: u32) -> u32 {
        let (head, payload) = self.expect(frame::RST_STREAM).await;
        assert_eq!(head.stream, stream);
        u32::from_be_bytes(payload[..4].try_into().unwrap())
    }

    async fn expect_goaway(&mut self) -> u32 {
        let (_, payload) = self.expect(frame::GOAWAY).await;
        u32::from_be_bytes(payload[4..8].try_into().unwrap())
    }

    /// A whole response on `stream`: its status and body.
    async fn expect_response(&mut self, stream: u32) -> (String, Vec<u8>) {
        let (head, payload) = self.expect(frame::HEADERS).await;
        assert_eq!(head.stream, stream);
        let status = decode_status(payload);
        let mut body = Vec::new();
        let mut ended = head.has(frame::END_STREAM);
        while !ended {
            let (head, payload) = self.expect(frame::DATA).await;
            assert_eq!(head.stream, stream);
            body.extend_from_slice(&payload);
            ended = head.has(frame::END_STREAM);
        }
        (status, body)
    }

    async fn expect_closed(&mut self) {
        while let Some((head, _)) = self.frame().await {
            assert!(matches!(head.kind, frame::SETTINGS | frame::WINDOW_UPDATE | frame::GOAWAY), "unexpected {head:?}");
        }
    }
}

/// A HEADERS frame for `GET path` with `extra` fields, each a literal.
fn headers(stream: u32, path: &str, extra: &[(&str, &str)], flags: u8) -> BytesMut {
    let mut block = BytesMut::new();
    block.put_slice(&[0x82, 0x86]); // :method GET, :scheme http
    block.put_slice(&[0x04, path.len() as u8]); // :path, literal value
    block.put_slice(path.as_bytes());
    for (name, value) in extra {
        hpack::encode_field(&http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.as_bytes(), &mut block);
    }
    let mut out = BytesMut::new();
    frame::put_head(&mut out, block.len(), frame::HEADERS, flags, stream);
    out.put_slice(&block);
    out
}

const END: u8 = frame::END_HEADERS | frame::END_STREAM;

fn decode_status(payload: Bytes) -> String {
    let mut status = String::new();
    hpack::Decoder::new(4096)
        .decode(payload, |field| {
            if field.name == hpack::Name::Pseudo(hpack::Pseudo::Status) {
                status = String::from_utf8(field.value.to_vec()).unwrap();
            }
        })
        .unwrap();
    status
}

#[tokio::test]
async fn a_malformed_request_resets_its_stream_only() {
    let service = TestService::default();
    let address = server(service.clone(), SETTINGS, CancellationToken::new()).await;
    let mut raw = Raw::connect(address).await;
    raw.send(&headers(1, "/", &[("connection", "close")], END)).await;
    assert_eq!(raw.expect_reset(1).await, Reason::Protocol as u32);
    raw.send(&headers(3, "/", &[("content-length", "5")], END)).await;
    assert_eq!(raw.expect_reset(3).await, Reason::Protocol as u32);
    raw.send(&headers(5, "/fine", &[], END)).await;
    assert_eq!(raw.expect_response(5).await, ("200".into(), b"ok".to_vec()));
    let stream_protocol = (super::ErrorScope::Stream, Reason::Protocol);
    assert_eq!(*service.errors.lock().unwrap(), [stream_protocol, stream_protocol]);
}

#[tokio::test]
async fn a_body_longer_than_its_content_length_resets_the_stream() {
    let address = server(TestService::default(), SETTINGS, CancellationToken::new()).await;
    let mut raw = Raw::connect(address).await;
    raw.send(&headers(1, "/echo", &[("content-length", "3")], frame::END_HEADERS)).await;
    let mut data = BytesMut::new();
    frame::put_data(&mut data, 1, b"four", true);
    raw.send(&data).await;
    assert_eq!(raw.expect_reset(1).await, Reason::Protocol as u32);
}

#[tokio::test]
async fn a_header_block_over_the_limits_is_answered_431() {
    let service = TestService::default();
    let address = server(service, SETTINGS, CancellationToken::new()).await;
    let mut raw = Raw::connect(address).await;
    let big = "v".repeat(200);
    let fields: Vec<(&str, &str)> = (0..30).map(|_| ("x-big", big.as_str())).collect();
    raw.send(&headers(1, "/", &fields, END)).await;
    assert_eq!(raw.expect_response(1).await.0, "431");
    // The connection goes on.
    raw.send(&headers(3, "/", &[], END)).await;
    assert_eq!(raw.expect_response(3).await.0, "200");
}

#[tokio::test]
async fn a_connection_that_does_not_open_with_the_preface_is_closed() {
    let address = server(TestService::default(), SETTINGS, CancellationToken::new()).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await.unwrap();
    let mut raw = Raw { stream, read: BytesMut::new() };
    assert_eq!(raw.expect_goaway().await, Reason::Protocol as u32);
    raw.expect_closed().await;
}

#[tokio::test]
async fn pings_are_answered_and_protocol_errors_end_the_connection() {
    let address = server(TestService::default(), SETTINGS, CancellationToken::new()).await;
    let mut raw = Raw::connect(address).await;
    let mut ping = BytesMut::new();
    frame::put_head(&mut ping, 8, frame::PING, 0, 0);
    ping.put_slice(b"12345678");
    raw.send(&ping).await;
    let (head, payload) = raw.expect(frame::PING).await;
    assert_eq!((head.flags, &payload[..]), (frame::ACK, &b"12345678"[..]));
    // A stream id that is even is a client's mistake about the whole connection.
    raw.send(&headers(2, "/", &[], END)).await;
    assert_eq!(raw.expect_goaway().await, Reason::Protocol as u32);
    raw.expect_closed().await;
}

#[tokio::test]
async fn a_frame_larger_than_allowed_ends_the_connection() {
    let service = TestService::default();
    let address = server(service.clone(), SETTINGS, CancellationToken::new()).await;
    let mut raw = Raw::connect(address).await;
    let mut huge = BytesMut::new();
    frame::put_head(&mut huge, frame::MAX_FRAME_SIZE + 1, frame::DATA, 0, 1);
    raw.send(&huge).await;
    assert_eq!(raw.expect_goaway().await, Reason::FrameSize as u32);
    assert_eq!(*service.errors.lock().unwrap(), [(super::ErrorScope::Connection, Reason::FrameSize)]);
}

#[tokio::test]
async fn a_reset_stream_drops_its_work() {
    let service = TestService::default();
    let address = server(service.clone(), SETTINGS, CancellationToken::new()).await;
    let mut raw = Raw::connect(address).await;
    raw.send(&headers(1, "/forever", &[], END)).await;
    // Once the PING is answered, the stream's exchange has begun.
    let mut ping = BytesMut::new();
    frame::put_head(&mut ping, 8, frame::PING, 0, 0);
    ping.put_slice(b"started!");
    raw.send(&ping).await;
    raw.expect(frame::PING).await;
    let mut reset = BytesMut::new();
    frame::put_rst_stream(&mut reset, 1, Reason::Cancel);
    raw.send(&reset).await;
    // A request after the reset is answered, so the reset was acted on before it.
    raw.send(&headers(3, "/after", &[], END)).await;
    raw.expect_response(3).await;
    assert_eq!(service.dropped.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn streams_over_the_concurrency_limit_are_refused() {
    let address = server(TestService::default(), SETTINGS, CancellationToken::new()).await;
    let mut raw = Raw::connect(address).await;
    for stream in 0..SETTINGS.max_concurrent_streams {
        raw.send(&headers(2 * stream + 1, "/forever", &[], END)).await;
    }
    let next = 2 * SETTINGS.max_concurrent_streams + 1;
    raw.send(&headers(next, "/forever", &[], END)).await;
    assert_eq!(raw.expect_reset(next).await, Reason::RefusedStream as u32);
}

#[tokio::test]
async fn a_flood_of_resets_ends_the_connection() {
    let address = server(TestService::default(), SETTINGS, CancellationToken::new()).await;
    let mut raw = Raw::connect(address).await;
    let mut flood = BytesMut::new();
    for stream in 0..super::conn::RESET_BUDGET {
        flood.put_slice(&headers(2 * stream + 1, "/forever", &[], END));
        frame::put_rst_stream(&mut flood, 2 * stream + 1, Reason::Cancel);
    }
    raw.send(&flood).await;
    assert_eq!(raw.expect_goaway().await, Reason::EnhanceYourCalm as u32);
}

#[tokio::test]
async fn a_drain_sends_goaway_and_lets_open_streams_finish() {
    let stopping = CancellationToken::new();
    let address = server(TestService::default(), SETTINGS, stopping.clone()).await;
    let mut raw = Raw::connect(address).await;
    raw.send(&headers(1, "/echo", &[], frame::END_HEADERS)).await;
    // The stream is open (its body still coming) when the drain begins.
    raw.send(&headers(3, "/x", &[], END)).await;
    raw.expect_response(3).await;
    stopping.cancel();
    let (head, payload) = raw.expect(frame::GOAWAY).await;
    assert_eq!(head.stream, 0);
    assert_eq!(u32::from_be_bytes(payload[..4].try_into().unwrap()), 3, "the last stream served");
    // A stream opened after GOAWAY is not served.
    raw.send(&headers(5, "/x", &[], END)).await;
    let mut data = BytesMut::new();
    frame::put_data(&mut data, 1, b"bye", true);
    raw.send(&data).await;
    assert_eq!(raw.expect_response(1).await, ("200".into(), b"bye".to_vec()));
    raw.expect_closed().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let address = server(TestService::default(), SETTINGS, CancellationToken::new()).await;
    let mut raw = Raw::connect(address).await;
    raw.send(&headers(1, "/x", &[], END)).await;
    raw.expect_response(1).await;
    let waited = tokio::time::Instant::now();
    assert_eq!(raw.expect_goaway().await, Reason::NoError as u32);
    raw.expect_closed().await;
    assert!(waited.elapsed() >= SETTINGS.idle_timeout);
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_nothing_is_closed_after_the_preface_timeout_one_that_does_after_the_idle_timeout() {
    let settings = Http2Settings { preface_timeout: Duration::from_secs(5), ..SETTINGS };
    let address = server(TestService::default(), settings, CancellationToken::new()).await;
    let mut silent = TcpStream::connect(address).await.unwrap();
    let opened = tokio::time::Instant::now();
    // The server's SETTINGS (and its GOAWAY) come, then the end.
    silent.read_to_end(&mut Vec::new()).await.unwrap();
    let waited = opened.elapsed();
    assert!(waited >= settings.preface_timeout && waited < SETTINGS.idle_timeout, "{waited:?}");
    let mut raw = Raw::connect(address).await;
    let opened = tokio::time::Instant::now();
    assert_eq!(raw.expect_goaway().await, Reason::NoError as u32);
    raw.expect_closed().await;
    assert!(opened.elapsed() >= SETTINGS.idle_timeout, "{:?}", opened.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_connection_in_use_is_not_closed_as_idle() {
    let address = server(TestService::default(), SETTINGS, CancellationToken::new()).await;
    let mut raw = Raw::connect(address).await;
    // A request every two thirds of the idle timeout, for three timeouts.
    for round in 0..5 {
        let stream = 2 * round + 1;
        raw.send(&headers(stream, "/x", &[], END)).await;
        raw.expect_response(stream).await;
        tokio::time::sleep(SETTINGS.idle_timeout * 2 / 3).await;
    }
    raw.send(&headers(11, "/x", &[], END)).await;
    assert_eq!(raw.expect_response(11).await.0, "200");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_cut_off_after_the_idle_timeout() {
    let address = server(TestService::default(), SETTINGS, CancellationToken::new()).await;
    let mut raw = Raw::connect(address).await;
    // Windows as large as they go, so only the socket holds the response back.
    let mut open = BytesMut::new();
    frame::put_settings(&mut open, &[(frame::SETTINGS_INITIAL_WINDOW_SIZE, (1 << 31) - 1)]);
    frame::put_window_update(&mut open, 0, (1 << 31) - 1 - 65_535);
    raw.send(&open).await;
    raw.send(&headers(1, "/large", &[], END)).await;
    tokio::time::sleep(SETTINGS.idle_timeout + Duration::from_secs(1)).await;
    let mut taken = 0;
    while let Some((head, payload)) = raw.frame().await {
        if head.kind == frame::DATA {
            taken += payload.len();
        }
    }
    assert!(taken < LARGE, "the whole body was sent to a client that did not read");
}

/// Streams each within their window but together past the connection's: a connection error, so
/// what weir buffers for a connection stays within its one window.
#[tokio::test]
async fn data_beyond_the_connection_window_ends_the_connection() {
    let settings = Http2Settings { max_concurrent_streams: 256, ..SETTINGS };
    let address = server(TestService::default(), settings, CancellationToken::new()).await;
    let mut raw = Raw::connect(address).await;
    let chunk = vec![0u8; frame::MAX_FRAME_SIZE];
    let mut flood = BytesMut::new();
    // Three streams of 512 KiB each (within a stream's 1 MiB), 1.5 MiB in all; /forever reads none.
    for stream in [1, 3, 5] {
        flood.put_slice(&headers(stream, "/forever", &[], frame::END_HEADERS));
        for _ in 0..32 {
            frame::put_data(&mut flood, stream, &chunk, false);
        }
    }
    raw.send(&flood).await;
    assert_eq!(raw.expect_goaway().await, Reason::FlowControl as u32);
}

/// Random frames after a valid opening: whatever they are, the connection answers or ends, and the
/// server neither panics nor stops serving others.
#[tokio::test]
async fn random_frames_never_break_the_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
    let accepted = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let serving = serve(stream, SETTINGS, CancellationToken::new(), TestService::default());
            accepted.lock().unwrap().push(tokio::spawn(serving));
        }
    });
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..200 {
        let mut raw = Raw::connect(address).await;
        let mut bytes = BytesMut::new();
        for _ in 0..(next() % 6 + 1) {
            let kind = (next() % 11) as u8;
            let flags = (next() % 64) as u8;
            let stream = (next() % 8) as u32;
            let length = (next() % 40) as usize;
            let payload: Vec<u8> = (0..length).map(|_| next() as u8).collect();
            frame::put_head(&mut bytes, length, kind, flags, stream);
            bytes.put_slice(&payload);
        }
        raw.send(&bytes).await;
        // Whatever happened, a ping on the connection is answered or the connection is closed.
        let mut ping = BytesMut::new();
        frame::put_head(&mut ping, 8, frame::PING, 0, 0);
        ping.put_slice(b"the end!");
        let _ = raw.stream.write_all(&ping).await;
        while let Some((head, payload)) = raw.frame().await {
            if head.kind == frame::PING && &payload[..] == b"the end!" {
                break;
            }
        }
    }
    // The server still serves.
    let mut raw = Raw::connect(address).await;
    raw.send(&headers(1, "/x", &[], END)).await;
    assert_eq!(raw.expect_response(1).await.0, "200");
    drop(raw);
    let served: Vec<_> = std::mem::take(&mut *connections.lock().unwrap());
    assert_eq!(served.len(), 201);
    for connection in served {
        connection.await.expect("a connection's task panicked");
    }
}

/// Resets weir makes the client provoke (here a WINDOW_UPDATE of zero on a stream at work) count
/// against the same budget as the client's own.
#[tokio::test]
async fn a_flood_of_provoked_resets_ends_the_connection() {
    let address = server(TestService::default(), SETTINGS, CancellationToken::new()).await;
    let mut raw = Raw::connect(address).await;
    let mut flood = BytesMut::new();
    for stream in 0..super::conn::RESET_BUDGET {
        flood.put_slice(&headers(2 * stream + 1, "/forever", &[], END));
        frame::put_window_update(&mut flood, 2 * stream + 1, 0);
    }
    raw.send(&flood).await;
    // Each reset is answered with RST_STREAM until the budget is spent.
    let mut resets = 0;
    let code = loop {
        let (head, payload) = raw.frame().await.expect("the connection closed without GOAWAY");
        match head.kind {
            frame::RST_STREAM => resets += 1,
            frame::GOAWAY => break u32::from_be_bytes(payload[4..8].try_into().unwrap()),
            _ => {}
        }
    };
    assert_eq!(code, Reason::EnhanceYourCalm as u32);
    assert_eq!(resets, super::conn::RESET_BUDGET);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_opens_its_window_is_cut_off_after_the_idle_timeout() {
    let address = server(TestService::default(), SETTINGS, CancellationToken::new()).await;
    let mut raw = Raw::connect(address).await;
    let mut closed = BytesMut::new();
    frame::put_settings(&mut closed, &[(frame::SETTINGS_INITIAL_WINDOW_SIZE, 0)]);
    raw.send(&closed).await;
    raw.send(&headers(1, "/x", &[], END)).await;
    let (head, _) = raw.expect(frame::HEADERS).await;
    assert!(!head.has(frame::END_STREAM), "the body waits for the window");
    let waited = tokio::time::Instant::now();
    raw.expect_closed().await;
    assert!(waited.elapsed() >= SETTINGS.idle_timeout);
}

#[tokio::test]
async fn each_oversized_block_is_refused_on_its_own_stream() {
    let address = server(TestService::default(), SETTINGS, CancellationToken::new()).await;
    let mut raw = Raw::connect(address).await;
    let big = "v".repeat(200);
    let fields: Vec<(&str, &str)> = (0..30).map(|_| ("x-big", big.as_str())).collect();
    // Two in one write, the second with a body still to come.
    let mut both = headers(1, "/", &fields, END);
    both.put_slice(&headers(3, "/", &fields, frame::END_HEADERS));
    frame::put_data(&mut both, 3, b"body", true);
    raw.send(&both).await;
    assert_eq!(raw.expect_response(1).await.0, "431");
    assert_eq!(raw.expect_response(3).await.0, "431");
}

/// Many one-byte DATA frames: run together as they arrive, handed out in order.
#[tokio::test]
async fn a_body_in_tiny_frames_arrives_whole_and_in_order() {
    let address = server(TestService::default(), SETTINGS, CancellationToken::new()).await;
    let mut raw = Raw::connect(address).await;
    let body: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let mut frames = headers(1, "/echo", &[], frame::END_HEADERS);
    for (at, byte) in body.iter().enumerate() {
        frame::put_data(&mut frames, 1, &[*byte], at + 1 == body.len());
    }
    raw.send(&frames).await;
    let (status, echoed) = raw.expect_response(1).await;
    assert_eq!(status, "200");
    assert!(echoed == body, "the body came back changed");
}
