//! The HTTP/1.1 server over real sockets, with a small service in place of the gateway: exact
//! bytes on the wire, keep-alive and pipelining, request bodies (length, chunked, trailers,
//! `100 Continue`, unread), response framing (HEAD, 204, HTTP/1.0, chunked, trailers), the idle
//! timeout, a drain, protocol switches and malformed heads.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{Answer, ClientSwitch, ConnIo, Ended, HeadLimits, Http1Settings, Service, hand_over, serve};
use crate::client_body::ClientBody;
use crate::framing::{Refused, Violation};

type TestBody = BoxBody<Bytes, BoxError>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Answers by path: `/echo` sends the body back, `/stream` answers with a body of unknown length
/// (and a trailer), `/short` states a longer length than it sends, `/switch` switches protocols
/// and echoes on the raw connection, `/empty` answers 204, `/endless` never ends its body, `/large`
/// sends 16 MiB; anything
/// else answers `ok` unread.
#[derive(Clone, Default)]
struct TestService {
    /// What the heads the server refused were refused for.
    refused: Arc<std::sync::Mutex<Vec<Violation>>>,
    /// What `/elsewhere` reports of the body it reads on a task of its own.
    elsewhere: Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<bool>>>>,
    /// Sent to when `/forever`'s work is dropped.
    cancelled: Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>>,
}

/// Sends on drop.
struct OnDrop(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(sender) = self.0.take() {
            let _ = sender.send(());
        }
    }
}

impl Service for TestService {
    type Body = TestBody;

    #[allow(clippy::manual_async_fn)] // The trait asks for `Send`, which an `async fn` cannot say.
    fn call(&self, request: Request<ClientBody>) -> impl Future<Output = Answer<TestBody>> + Send {
        let refused = request.extensions().get::<Refused>().map(|Refused(violation)| *violation);
        if let Some(violation) = refused {
            self.refused.lock().unwrap().push(violation);
        }
        async move {
            if let Some(violation) = refused {
                let mut response = Response::new(full(Bytes::from_static(violation.as_str().as_bytes())));
                *response.status_mut() = StatusCode::BAD_REQUEST;
                return Ok(response);
            }
            let response = match request.uri().path() {
                "/echo" => {
                    let collected = request.into_body().collect().await.unwrap();
                    let trailer = collected.trailers().and_then(|t| t.get("x-sum")).cloned();
                    let mut response = Response::new(full(collected.to_bytes()));
                    if let Some(trailer) = trailer {
                        response.headers_mut().insert("x-trailer-sum", trailer);
                    }
                    response
                }
                "/stream" => {
                    let mut trailers = HeaderMap::new();
                    trailers.insert("x-done", HeaderValue::from_static("yes"));
                    let frames = [
                        http_body::Frame::data(Bytes::from_static(b"hello ")),
                        http_body::Frame::data(Bytes::from(vec![b'x'; 10_000])),
                        http_body::Frame::trailers(trailers),
                    ];
                    Response::new(Frames(frames.into()).boxed())
                }
                "/pieces" => {
                    let frames: Vec<_> =
                        (0..20u8).map(|i| http_body::Frame::data(Bytes::from(vec![b'a' + i; 5_000]))).collect();
                    let mut response = Response::new(Frames(frames.into()).boxed());
                    response.headers_mut().insert("content-length", HeaderValue::from_static("100000"));
                    response
                }
                "/short" => {
                    let mut response = Response::new(full(Bytes::from_static(b"abc")));
                    response.headers_mut().insert("content-length", HeaderValue::from_static("10"));
                    response
                }
                "/switch" => {
                    let switched = request.extensions().get::<ClientSwitch>().unwrap().take().unwrap();
                    tokio::spawn(async move {
                        let mut stream = switched.await.unwrap();
                        let mut buf = [0u8; 64];
                        loop {
                            let n = stream.read(&mut buf).await.unwrap();
                            if n == 0 {
                                return;
                            }
                            stream.write_all(&buf[..n]).await.unwrap();
                        }
                    });
                    let mut response = Response::new(full(Bytes::new()));
                    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                    response.headers_mut().insert("connection", HeaderValue::from_static("upgrade"));
                    response.headers_mut().insert("upgrade", HeaderValue::from_static("echo"));
                    response
                }
                "/elsewhere" => {
                    let report = self.elsewhere.lock().unwrap().take().unwrap();
                    let body = request.into_body();
                    tokio::spawn(async move { report.send(body.collect().await.is_ok()) });
                    Response::new(full(Bytes::from_static(b"taken")))
                }
                "/forever" => {
                    let _cancelled = OnDrop(self.cancelled.lock().unwrap().take());
                    std::future::pending::<()>().await;
                    unreachable!()
                }
                "/endless" => Response::new(Endless.boxed()),
                "/large" => {
                    let frames = (0..LARGE_PIECES).map(|_| http_body::Frame::data(Bytes::from_static(&PIECE)));
                    Response::new(Frames(frames.collect()).boxed())
                }
                "/empty" => {
                    let mut response = Response::new(full(Bytes::new()));
                    *response.status_mut() = StatusCode::NO_CONTENT;
                    response
                }
                _ => Response::new(full(Bytes::from_static(b"ok"))),
            };
            Ok(response)
        }
    }
}

fn full(bytes: Bytes) -> TestBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// A body of given frames, its length unknown (the HTTP/2 server's tests use it too).
pub(crate) struct Frames(pub(crate) std::collections::VecDeque<http_body::Frame<Bytes>>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }
}

/// What `/endless` sends again and again, and `/large` [`LARGE_PIECES`] times.
static PIECE: [u8; 64 * 1024] = [b'x'; 64 * 1024];
const LARGE_PIECES: usize = 256;

/// A body that never ends: 64 KiB pieces, always ready.
struct Endless;

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(&PIECE)))))
    }
}

const SETTINGS: Http1Settings = Http1Settings {
    idle_timeout: Duration::from_secs(60),
    head_timeout: Duration::from_secs(60),
    head: HeadLimits { max_head_bytes: 64 * 1024, max_headers: 100, max_uri_len: 8 * 1024 },
    h2c: false,
    park_after: None,
};

/// A server on a fresh port serving connections with `service`; `drain` stops them.
async fn start(service: TestService, drain: CancellationToken) -> std::net::SocketAddr {
    start_with(service, drain, SETTINGS).await
}

async fn start_with(service: TestService, drain: CancellationToken, settings: Http1Settings) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (drain, service) = (drain.clone(), service.clone());
            tokio::spawn(async move {
                let mut io = ConnIo::new(stream);
                let ended = serve(&mut io, &settings, settings.h2c, drain, service).await;
                hand_over(io, ended);
            });
        }
    });
    addr
}

/// One response read off `stream`: its head (as text) and its body, framed by its own headers
/// (a body of unknown length is read to the connection's end).
async fn read_response(stream: &mut TcpStream, pending: &mut Vec<u8>, head_request: bool) -> (String, Vec<u8>) {
    let head_end = loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        fill(stream, pending).await;
    };
    let head = String::from_utf8(pending.drain(..head_end).collect()).unwrap();
    let lower = head.to_ascii_lowercase();
    let status: u16 = head[9..12].parse().unwrap();
    if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        return (head, Vec::new());
    }
    let length = lower.lines().find_map(|line| line.strip_prefix("content-length: ")).map(|v| v.parse().unwrap());
    let body = if let Some(length) = length {
        while pending.len() < length {
            fill(stream, pending).await;
        }
        pending.drain(..length).collect()
    } else if lower.contains("transfer-encoding: chunked") {
        // Kept raw (chunk lines and trailers), read up to the empty line after the last chunk.
        loop {
            if let Some(end) = pending.windows(5).position(|w| w == b"\r\n0\r\n") {
                if pending[end + 5..].starts_with(b"\r\n") {
                    break pending.drain(..end + 7).collect();
                }
                if let Some(done) = pending[end + 5..].windows(4).position(|w| w == b"\r\n\r\n") {
                    break pending.drain(..end + 5 + done + 4).collect();
                }
            }
            fill(stream, pending).await;
        }
    } else {
        let mut rest = std::mem::take(pending);
        stream.read_to_end(&mut rest).await.unwrap();
        rest
    };
    (head, body)
}

async fn fill(stream: &mut TcpStream, pending: &mut Vec<u8>) {
    let mut buf = [0u8; 16 * 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(n > 0, "connection closed; have {:?}", String::from_utf8_lossy(pending));
    pending.extend_from_slice(&buf[..n]);
}

/// Whether the server closes the connection (reads reach the end) with nothing more sent.
async fn closes(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.is_ok() && rest.is_empty()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let addr = start(TestService::default(), CancellationToken::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nPOST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
    let mut pending = Vec::new();
    let (head, body) = read_response(&mut stream, &mut pending, false).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("content-length: 2\r\n") && head.contains("date: "), "{head}");
    assert_eq!(body, b"ok");
    assert_eq!(read_response(&mut stream, &mut pending, false).await.1, b"hello");
    assert_eq!(read_response(&mut stream, &mut pending, false).await.1, b"ok");
}

#[tokio::test]
async fn a_chunked_request_body_arrives_whole_with_its_trailers() {
    let addr = start(TestService::default(), CancellationToken::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-sum: 11\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_response(&mut stream, &mut Vec::new(), false).await;
    assert_eq!(body, b"hello world");
    assert!(head.contains("x-trailer-sum: 11\r\n"), "{head}");
}

#[tokio::test]
async fn chunk_framing_is_bounded_by_the_listener_limits_the_guard_applies() {
    let addr = start(TestService::default(), CancellationToken::new()).await;
    // A 5 KiB chunk-size line and 40 trailer fields: within a 64 KiB head and 100 fields.
    let extension = "x".repeat(5 * 1024);
    let trailers: String = (0..40).map(|i| format!("x-t{i}: {i}\r\n")).collect();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /echo HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n5;e={extension}\r\nhello\r\n0\r\n{trailers}\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (head, body) = read_response(&mut stream, &mut Vec::new(), false).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, b"hello");

    // Past the listener's limits, the body fails and the connection ends.
    let settings = Http1Settings { head: HeadLimits { max_headers: 10, ..SETTINGS.head }, ..SETTINGS };
    let addr = start_with(TestService::default(), CancellationToken::new(), settings).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /echo HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n{trailers}\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answered = Vec::new();
    let _ = stream.read_to_end(&mut answered).await;
    assert!(!String::from_utf8_lossy(&answered).contains("hello"), "{}", String::from_utf8_lossy(&answered));
}

#[tokio::test]
async fn a_client_expecting_100_continue_is_told_to_send_its_body() {
    let addr = start(TestService::default(), CancellationToken::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let mut pending = Vec::new();
    let (interim, _) = read_response(&mut stream, &mut pending, false).await;
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"ping").await.unwrap();
    assert_eq!(read_response(&mut stream, &mut pending, false).await.1, b"ping");
}

#[tokio::test]
async fn an_unread_short_body_is_skipped_and_the_connection_kept() {
    let addr = start(TestService::default(), CancellationToken::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /ignored HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\n\r\nabcGET /next HTTP/1.1\r\nhost: t\r\n\r\n",
        )
        .await
        .unwrap();
    let mut pending = Vec::new();
    assert_eq!(read_response(&mut stream, &mut pending, false).await.1, b"ok");
    let (head, body) = read_response(&mut stream, &mut pending, false).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"ok");
}

#[tokio::test]
async fn a_client_still_sending_an_unread_body_gets_its_answer_not_a_reset() {
    let addr = start(TestService::default(), CancellationToken::new()).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    // Far more than the sockets' buffers hold: the server closes while the client is still writing.
    let length = 64 * 1024 * 1024;
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        write
            .write_all(format!("POST /ignored HTTP/1.1\r\nhost: t\r\ncontent-length: {length}\r\n\r\n").as_bytes())
            .await?;
        let piece = vec![b'a'; 1024 * 1024];
        for _ in 0..64 {
            write.write_all(&piece).await?;
        }
        write.shutdown().await
    });
    let mut answered = Vec::new();
    read.read_to_end(&mut answered).await.unwrap();
    let answered = String::from_utf8(answered).unwrap();
    assert!(answered.starts_with("HTTP/1.1 200 OK\r\n"), "{answered}");
    assert!(answered.contains("connection: close\r\n"), "{answered}");
    // The server read on after answering: the whole body went out, no reset.
    writer.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_unread_long_body_closes_the_connection_after_the_answer() {
    let addr = start(TestService::default(), CancellationToken::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let length = 200 * 1024;
    stream
        .write_all(format!("POST /ignored HTTP/1.1\r\nhost: t\r\ncontent-length: {length}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let writer = tokio::spawn(async move {
        let (mut read, mut write) = stream.into_split();
        let _ = write.write_all(&vec![b'a'; length]).await;
        let mut rest = Vec::new();
        let _ = read.read_to_end(&mut rest).await;
        rest
    });
    let answered = String::from_utf8(writer.await.unwrap()).unwrap();
    assert!(answered.starts_with("HTTP/1.1 200 OK\r\n"), "{answered}");
    assert!(answered.contains("connection: close\r\n"), "{answered}");
}

#[tokio::test]
async fn a_request_withholding_its_body_for_100_continue_gets_its_answer_and_a_close() {
    let addr = start(TestService::default(), CancellationToken::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /ignored HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_response(&mut stream, &mut Vec::new(), false).await;
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("connection: close\r\n"), "{head}");
    assert_eq!(body, b"ok");
    assert!(closes(&mut stream).await);
}

#[tokio::test]
async fn head_and_204_answers_carry_no_body() {
    let addr = start(TestService::default(), CancellationToken::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"HEAD /a HTTP/1.1\r\nhost: t\r\n\r\nGET /empty HTTP/1.1\r\nhost: t\r\n\r\nGET /a HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
    let mut pending = Vec::new();
    let (head, _) = read_response(&mut stream, &mut pending, true).await;
    assert!(head.contains("content-length: 2\r\n"), "a HEAD answer states the length: {head}");
    let (empty, _) = read_response(&mut stream, &mut pending, false).await;
    assert!(empty.starts_with("HTTP/1.1 204") && !empty.contains("content-length"), "{empty}");
    let (_, body) = read_response(&mut stream, &mut pending, false).await;
    assert_eq!(body, b"ok", "nothing was written after the HEAD and 204 heads");
}

#[tokio::test]
async fn a_body_of_unknown_length_is_chunked_with_trailers_only_for_clients_that_take_them() {
    let addr = start(TestService::default(), CancellationToken::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nhost: t\r\n\r\nGET /stream HTTP/1.1\r\nhost: t\r\nte: trailers\r\n\r\n")
        .await
        .unwrap();
    let mut pending = Vec::new();
    let (head, plain) = read_response(&mut stream, &mut pending, false).await;
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    let expected_data = format!("6\r\nhello \r\n2710\r\n{}\r\n0\r\n", "x".repeat(10_000));
    assert_eq!(String::from_utf8(plain).unwrap(), format!("{expected_data}\r\n"));
    let (_, with_trailers) = read_response(&mut stream, &mut pending, false).await;
    assert_eq!(String::from_utf8(with_trailers).unwrap(), format!("{expected_data}x-done: yes\r\n\r\n"));
}

#[tokio::test]
async fn an_http10_client_gets_an_http10_answer_ended_by_the_close() {
    let addr = start(TestService::default(), CancellationToken::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /stream HTTP/1.0\r\nconnection: keep-alive\r\n\r\n").await.unwrap();
    let (head, body) = read_response(&mut stream, &mut Vec::new(), false).await;
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(!head.contains("transfer-encoding") && head.contains("connection: close\r\n"), "{head}");
    assert_eq!(body.len(), 6 + 10_000);
}

#[tokio::test]
async fn an_http10_keep_alive_request_with_a_known_length_keeps_the_connection() {
    let addr = start(TestService::default(), CancellationToken::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /a HTTP/1.0\r\nconnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n").await.unwrap();
    let mut pending = Vec::new();
    let (head, _) = read_response(&mut stream, &mut pending, false).await;
    assert!(head.contains("connection: keep-alive\r\n"), "{head}");
    let (last, _) = read_response(&mut stream, &mut pending, false).await;
    assert!(last.contains("connection: close\r\n"), "{last}");
    assert!(closes(&mut stream).await);
}

#[tokio::test]
async fn a_body_shorter_than_its_stated_length_cuts_the_connection() {
    let addr = start(TestService::default(), CancellationToken::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /short HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
    let mut answered = Vec::new();
    let _ = stream.read_to_end(&mut answered).await;
    let answered = String::from_utf8(answered).unwrap();
    assert!(answered.contains("content-length: 10\r\n") && answered.ends_with("\r\n\r\nabc"), "{answered}");
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let settings = Http1Settings { idle_timeout: Duration::from_secs(5), ..SETTINGS };
    let addr = start_with(TestService::default(), CancellationToken::new(), settings).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /a HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
    read_response(&mut stream, &mut Vec::new(), false).await;
    let waited = tokio::time::Instant::now();
    assert!(closes(&mut stream).await);
    assert!(waited.elapsed() >= Duration::from_secs(5));
}

/// Serves one connection accepted on a fresh port; returns the client's end and how the service
/// ended, whether the connection had nothing buffered then, and when.
async fn serve_one(
    settings: Http1Settings,
) -> (TcpStream, tokio::task::JoinHandle<(Ended, bool, tokio::time::Instant)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    let served = tokio::spawn(async move {
        let mut io = ConnIo::new(stream);
        let ended = serve(&mut io, &settings, false, CancellationToken::new(), TestService::default()).await;
        (ended, io.read.is_empty(), tokio::time::Instant::now())
    });
    (client, served)
}

const PARKING: Http1Settings =
    Http1Settings { idle_timeout: Duration::from_secs(5), park_after: Some(Duration::from_secs(2)), ..SETTINGS };

#[tokio::test(start_paused = true)]
async fn a_connection_idle_for_park_after_is_handed_back_to_be_parked() {
    let (mut client, served) = serve_one(PARKING).await;
    client.write_all(b"GET /a HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
    read_response(&mut client, &mut Vec::new(), false).await;
    let answered = tokio::time::Instant::now();
    let (ended, nothing_buffered, at) = served.await.unwrap();
    assert!(matches!(ended, Ended::Park) && nothing_buffered);
    let idle = at - answered;
    assert!(idle >= Duration::from_secs(2) && idle < Duration::from_secs(3), "parked after {idle:?} idle");
}

/// A new connection has not shown it speaks HTTP/1.1: it waits for its first request as ever.
#[tokio::test(start_paused = true)]
async fn a_connection_that_has_sent_no_request_is_not_parked() {
    let (mut client, served) = serve_one(PARKING).await;
    let opened = tokio::time::Instant::now();
    assert!(closes(&mut client).await);
    let (ended, _, at) = served.await.unwrap();
    assert!(matches!(ended, Ended::Closed));
    assert!(at - opened >= Duration::from_secs(5), "closed after {:?}", at - opened);
}

/// The connection's one idle timer, set when it began, is moved to the end of each later wait.
#[tokio::test(start_paused = true)]
async fn the_idle_timeout_counts_from_the_last_response() {
    let settings = Http1Settings { idle_timeout: Duration::from_secs(5), ..SETTINGS };
    let addr = start_with(TestService::default(), CancellationToken::new(), settings).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /a HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
    read_response(&mut stream, &mut Vec::new(), false).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    stream.write_all(b"GET /b HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
    read_response(&mut stream, &mut Vec::new(), false).await;
    let waited = tokio::time::Instant::now();
    assert!(closes(&mut stream).await);
    let idle = waited.elapsed();
    assert!(idle >= Duration::from_secs(5) && idle < Duration::from_secs(6), "closed after {idle:?} idle");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_cut_off_after_the_idle_timeout() {
    let settings = Http1Settings { idle_timeout: Duration::from_secs(5), ..SETTINGS };
    let addr = start_with(TestService::default(), CancellationToken::new(), settings).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /endless HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
    // Not reading: the socket's buffers fill and the server's write waits. Sleeping lets the
    // paused clock run on to the server's write timeout.
    tokio::time::sleep(Duration::from_secs(6)).await;
    // What the buffers held, then the end: the body was cut, not sent forever.
    let mut taken = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => taken += n,
        }
        assert!(taken < 256 * 1024 * 1024, "the endless body is still coming");
    }
    assert!(taken > 0);
}

#[tokio::test(start_paused = true)]
async fn a_client_reading_slowly_but_steadily_gets_the_whole_response() {
    let settings = Http1Settings { idle_timeout: Duration::from_secs(5), ..SETTINGS };
    let addr = start_with(TestService::default(), CancellationToken::new(), settings).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /large HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
    // 1 MiB a second (of paused time): the whole takes three times the write timeout, and the
    // server's write goes on as the socket's buffers drain (the kernel wakes a writer only once a
    // good part of its buffer is free, so the pace must stay well above buffer size per timeout).
    let mut taken = 0usize;
    let mut buf = vec![0u8; 1024 * 1024];
    let expected = LARGE_PIECES * PIECE.len();
    while taken < expected {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut step = 0;
        while step < buf.len() {
            match stream.read(&mut buf[step..]).await.unwrap() {
                0 => panic!("cut off after {taken} bytes"),
                n => step += n,
            }
        }
        taken += step;
    }
    assert!(taken >= expected);
}

#[tokio::test]
async fn a_drain_closes_idle_connections_and_ends_busy_ones_after_their_answer() {
    let drain = CancellationToken::new();
    let addr = start(TestService::default(), drain.clone()).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /a HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
    read_response(&mut idle, &mut Vec::new(), false).await;
    let mut busy = TcpStream::connect(addr).await.unwrap();
    busy.write_all(b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\n\r\nab").await.unwrap();
    // The busy connection's request is under way (its head is read) before the drain.
    tokio::task::yield_now().await;
    drain.cancel();
    assert!(closes(&mut idle).await);
    busy.write_all(b"cd").await.unwrap();
    let (_, body) = read_response(&mut busy, &mut Vec::new(), false).await;
    assert_eq!(body, b"abcd");
    assert!(closes(&mut busy).await);
}

#[tokio::test]
async fn a_switch_hands_the_connection_over_with_the_bytes_read_past_the_head() {
    let addr = start(TestService::default(), CancellationToken::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /switch HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\nearly")
        .await
        .unwrap();
    let mut pending = Vec::new();
    let (head, _) = read_response(&mut stream, &mut pending, false).await;
    assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    while pending.len() < 5 {
        fill(&mut stream, &mut pending).await;
    }
    assert_eq!(pending, b"early");
    stream.write_all(b"late").await.unwrap();
    let mut echoed = [0u8; 4];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"late");
}

#[tokio::test]
async fn a_head_that_cannot_be_represented_is_refused_and_the_connection_closed() {
    let service = TestService::default();
    let addr = start(service.clone(), CancellationToken::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /caf\xff HTTP/1.1\r\nhost: t\r\n\r\nGET /a HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
    let (head, _) = read_response(&mut stream, &mut Vec::new(), false).await;
    assert!(head.contains("connection: close\r\n"), "{head}");
    assert!(closes(&mut stream).await);
    assert_eq!(*service.refused.lock().unwrap(), [Violation::InvalidRequestLine]);
}

#[tokio::test]
async fn the_http2_preface_is_handed_back_when_h2c_is_served() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = TcpStream::connect(addr).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    client.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nframes").await.unwrap();
    let settings = Http1Settings { h2c: true, ..SETTINGS };
    let mut io = ConnIo::new(server);
    let ended = serve(&mut io, &settings, true, CancellationToken::new(), TestService::default()).await;
    let Some(mut rewound) = hand_over(io, ended) else { panic!("the preface was not handed back") };
    let mut read = vec![0u8; 30];
    let n = rewound.read(&mut read).await.unwrap();
    assert!(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nframes".starts_with(&read[..n]) && n >= 16, "{:?}", &read[..n]);
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_work_on_its_request() {
    let service = TestService::default();
    let (cancelled, on_cancel) = tokio::sync::oneshot::channel();
    *service.cancelled.lock().unwrap() = Some(cancelled);
    let addr = start(service, CancellationToken::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /forever HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
    drop(stream);
    on_cancel.await.unwrap();
}

#[tokio::test]
async fn a_body_read_on_another_task_fails_when_the_connection_ends_before_it() {
    let service = TestService::default();
    let (report, reported) = tokio::sync::oneshot::channel();
    *service.elsewhere.lock().unwrap() = Some(report);
    let addr = start(service, CancellationToken::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"POST /elsewhere HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\npartial").await.unwrap();
    let (_, body) = read_response(&mut stream, &mut Vec::new(), false).await;
    assert_eq!(body, b"taken");
    drop(stream);
    assert!(!reported.await.unwrap(), "the body was read whole although the client sent 7 of its 100 bytes");
}

#[tokio::test]
async fn large_pieces_of_a_body_are_gathered_and_written_in_order() {
    let addr = start(TestService::default(), CancellationToken::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /pieces HTTP/1.1\r\nhost: t\r\n\r\nGET /a HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
    let mut pending = Vec::new();
    let (head, body) = read_response(&mut stream, &mut pending, false).await;
    assert!(head.contains("content-length: 100000\r\n"), "{head}");
    let expected: Vec<u8> = (0..20u8).flat_map(|i| vec![b'a' + i; 5_000]).collect();
    assert!(body == expected, "the body's pieces came out of order or incomplete");
    assert_eq!(read_response(&mut stream, &mut pending, false).await.1, b"ok");
}

#[tokio::test(start_paused = true)]
async fn a_slow_head_is_refused_and_a_connection_that_never_speaks_is_closed_without_a_word() {
    let settings =
        Http1Settings { idle_timeout: Duration::from_secs(10), head_timeout: Duration::from_secs(3), ..SETTINGS };
    let service = TestService::default();
    let addr = start_with(service.clone(), CancellationToken::new(), settings).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let opened = tokio::time::Instant::now();
    assert!(closes(&mut silent).await);
    let waited = opened.elapsed();
    assert!(waited >= Duration::from_secs(3) && waited < Duration::from_secs(10), "closed after {waited:?}");
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /a HTTP/1.1\r\nhost: t\r\n\r\nGET /b HTTP/1.1\r\nho").await.unwrap();
    let mut pending = Vec::new();
    let (_, body) = read_response(&mut slow, &mut pending, false).await;
    assert_eq!(body, b"ok");
    let began = tokio::time::Instant::now();
    let (head, body) = read_response(&mut slow, &mut pending, false).await;
    assert!(head.starts_with("HTTP/1.1 400 ") && head.contains("connection: close\r\n"), "{head}");
    assert_eq!(body, b"head_timeout");
    assert!(began.elapsed() >= Duration::from_secs(3), "{:?}", began.elapsed());
    assert!(closes(&mut slow).await);
    assert_eq!(*service.refused.lock().unwrap(), [Violation::HeadTimeout]);
}

/// A head's own deadline, later than the idle timeout would be, does not stretch the next wait.
#[tokio::test(start_paused = true)]
async fn after_a_head_that_came_in_pieces_the_idle_timeout_is_its_own() {
    let settings =
        Http1Settings { idle_timeout: Duration::from_secs(5), head_timeout: Duration::from_secs(20), ..SETTINGS };
    let addr = start_with(TestService::default(), CancellationToken::new(), settings).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /a HTTP/1.1\r\nho").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stream.write_all(b"st: t\r\n\r\n").await.unwrap();
    read_response(&mut stream, &mut Vec::new(), false).await;
    let waited = tokio::time::Instant::now();
    assert!(closes(&mut stream).await);
    let idle = waited.elapsed();
    assert!(idle >= Duration::from_secs(5) && idle < Duration::from_secs(6), "closed after {idle:?} idle");
}

#[tokio::test]
async fn a_bad_head_after_good_ones_is_refused_by_name_and_nothing_after_it_is_read() {
    let service = TestService::default();
    let addr = start(service.clone(), CancellationToken::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let smuggled = b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n";
    stream
        .write_all(
            &[b"GET /a HTTP/1.1\r\nhost: t\r\n\r\n".as_slice(), smuggled, b"GET /b HTTP/1.1\r\nhost: t\r\n\r\n"]
                .concat(),
        )
        .await
        .unwrap();
    let mut pending = Vec::new();
    let (_, body) = read_response(&mut stream, &mut pending, false).await;
    assert_eq!(body, b"ok");
    let (head, body) = read_response(&mut stream, &mut pending, false).await;
    assert!(head.starts_with("HTTP/1.1 400 ") && head.contains("connection: close\r\n"), "{head}");
    assert_eq!(body, b"content_length_with_transfer_encoding");
    assert!(pending.is_empty() && closes(&mut stream).await);
    assert_eq!(*service.refused.lock().unwrap(), [Violation::ContentLengthWithTransferEncoding]);
}

#[tokio::test]
async fn a_websocket_upgrade_answered_without_switching_closes_the_connection() {
    let addr = start(TestService::default(), CancellationToken::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // What follows the upgrade head may be the tunnel's first bytes: never read as a request.
    let upgrade = b"GET /a HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n";
    stream.write_all(&[upgrade.as_slice(), b"GET /b HTTP/1.1\r\nhost: t\r\n\r\n"].concat()).await.unwrap();
    let mut pending = Vec::new();
    let (head, body) = read_response(&mut stream, &mut pending, false).await;
    assert!(head.starts_with("HTTP/1.1 200 ") && head.contains("connection: close\r\n"), "{head}");
    assert_eq!(body, b"ok");
    assert!(pending.is_empty() && closes(&mut stream).await);
}

/// A connection closed with unread bytes is reset, and a reset can destroy the answer before the
/// client reads it: after a refusal the connection reads on and throws away what the client sends,
/// until the client is done.
#[tokio::test]
async fn a_refused_client_that_keeps_sending_is_read_until_it_is_done() {
    let addr = start(TestService::default(), CancellationToken::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The bad head and what follows it go out together: the server has unread bytes when it is
    // done with the head.
    let bad = [b"GET / HTTP/1.1\r\nhost: t\r\nbad name: x\r\n\r\n".as_slice(), &[b'x'; 64 * 1024]].concat();
    stream.write_all(&bad).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 ") && answer.ends_with("invalid_header_name"), "{answer}");
    // The server has closed its side and still reads: more bytes are taken, not reset.
    for _ in 0..8 {
        stream.write_all(&[b'x'; 4096]).await.expect("still read, not reset");
        tokio::task::yield_now().await;
    }
    stream.shutdown().await.unwrap();
}
