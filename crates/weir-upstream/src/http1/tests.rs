//! The upstream HTTP/1.1 client against raw sockets: what it writes, and how it reads what
//! upstreams send, well-formed or not.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::body::{Chunk, Decoded};
use super::response::{self, BodyFraming};
use super::*;

/// A connection to a raw upstream that reads one request (up to its blank line, plus `body_len`
/// bytes), hands it to the test, and writes `answer`.
async fn exchange_with(
    answer: &'static [u8],
    body_len: usize,
) -> (Box<Http1Connection>, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let received = read_request(&mut socket, body_len).await;
        socket.write_all(answer).await.unwrap();
        // Held open a little so "until close" bodies end when the test's upstream drops it.
        received
    });
    let stream = TcpStream::connect(addr).await.unwrap();
    (Http1Connection::new(Stream::Tcp(stream)), upstream)
}

async fn read_request(socket: &mut TcpStream, body_len: usize) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n")
            && received.len() >= end + 4 + body_len
        {
            return received;
        }
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "the client closed mid-request");
        received.extend_from_slice(&buf[..n]);
    }
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).header("host", "backend").body(Full::new(Bytes::new())).unwrap()
}

async fn send_ok<B>(connection: Box<Http1Connection>, request: Request<B>) -> Response<Http1Body>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    match connection.send(request).await {
        Ok(response) => response,
        Err(SendError::Unsent(_, error) | SendError::Failed(error)) => panic!("send failed: {error}"),
    }
}

async fn send_err<B>(connection: Box<Http1Connection>, request: Request<B>) -> Http1Error
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    match connection.send(request).await {
        Ok(response) => panic!("expected an error, got {}", response.status()),
        Err(SendError::Unsent(_, error) | SendError::Failed(error)) => error,
    }
}

#[tokio::test]
async fn a_get_is_written_in_origin_form_and_a_length_body_read() {
    let (connection, upstream) = exchange_with(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello", 0).await;
    let mut response = send_ok(connection, get("/items?x=1")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-a"], "1");
    let body = response.body_mut().collect().await.unwrap().to_bytes();
    assert_eq!(body, "hello");
    let connection = response.body_mut().take_reusable().expect("the connection is reusable");
    assert!(connection.read.is_empty());
    let request = String::from_utf8(upstream.await.unwrap()).unwrap();
    assert_eq!(request, "GET /items?x=1 HTTP/1.1\r\nhost: backend\r\n\r\n");
}

#[tokio::test]
async fn a_body_with_a_known_length_is_sent_with_it_and_one_without_is_chunked() {
    let (connection, upstream) = exchange_with(b"HTTP/1.1 204 No Content\r\n\r\n", 4).await;
    let request = Request::post("/").header("host", "b").body(Full::new(Bytes::from_static(b"abcd"))).unwrap();
    let response = send_ok(connection, request).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let written = String::from_utf8(upstream.await.unwrap()).unwrap();
    assert_eq!(written, "POST / HTTP/1.1\r\nhost: b\r\ncontent-length: 4\r\n\r\nabcd");

    let chunked = b"a\r\n0123456789\r\n3\r\nxyz\r\n0\r\nx-sum: 7\r\n\r\n";
    let (connection, upstream) = exchange_with(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", chunked.len()).await;
    let frames = Frames::new(vec![
        Frame::data(Bytes::from_static(b"0123456789")),
        Frame::data(Bytes::from_static(b"xyz")),
        Frame::trailers(HeaderMap::from_iter([(
            http::HeaderName::from_static("x-sum"),
            http::HeaderValue::from_static("7"),
        )])),
    ]);
    let request = Request::put("/up").header("host", "b").body(frames).unwrap();
    send_ok(connection, request).await;
    let written = upstream.await.unwrap();
    let text = String::from_utf8(written).unwrap();
    assert!(text.starts_with("PUT /up HTTP/1.1\r\nhost: b\r\ntransfer-encoding: chunked\r\n\r\n"), "{text}");
    assert!(text.ends_with("a\r\n0123456789\r\n3\r\nxyz\r\n0\r\nx-sum: 7\r\n\r\n"), "{text}");
}

/// A body of given frames, all ready, with no length known.
struct Frames(std::collections::VecDeque<Frame<Bytes>>);

impl Frames {
    fn new(frames: Vec<Frame<Bytes>>) -> Self {
        Frames(frames.into())
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(Ok))
    }
}

#[tokio::test]
async fn a_chunked_response_is_decoded_with_its_trailers() {
    let answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\ngrpc-status: 0\r\n\r\n";
    let (connection, _upstream) = exchange_with(answer, 0).await;
    let mut response = send_ok(connection, get("/")).await;
    let collected = response.body_mut().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
    assert_eq!(collected.to_bytes(), "hello world");
    assert!(response.body_mut().take_reusable().is_some());
}

#[tokio::test]
async fn a_body_until_close_ends_with_the_connection_and_is_not_reused() {
    let (connection, upstream) = exchange_with(b"HTTP/1.1 200 OK\r\n\r\nall of it", 0).await;
    let mut response = send_ok(connection, get("/")).await;
    upstream.await.unwrap();
    let body = response.body_mut().collect().await.unwrap().to_bytes();
    assert_eq!(body, "all of it");
    assert!(response.body_mut().take_reusable().is_none());
}

#[tokio::test]
async fn interim_responses_are_skipped_and_head_responses_have_no_body() {
    let answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n";
    let (connection, _upstream) = exchange_with(answer, 0).await;
    let request = Request::head("/").header("host", "b").body(Full::new(Bytes::new())).unwrap();
    let mut response = send_ok(connection, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.body().is_end_stream());
    assert!(response.body_mut().take_reusable().is_some(), "a HEAD response leaves the connection clean");
}

#[tokio::test]
async fn connection_close_and_http_1_0_end_the_connection_after_the_body() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"[..],
        &b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"[..],
    ] {
        let answer: &'static [u8] = Box::leak(answer.to_vec().into_boxed_slice());
        let (connection, _upstream) = exchange_with(answer, 0).await;
        let mut response = send_ok(connection, get("/")).await;
        assert_eq!(response.body_mut().collect().await.unwrap().to_bytes(), "ok");
        assert!(response.body_mut().take_reusable().is_none());
    }
    let (connection, _upstream) =
        exchange_with(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok", 0).await;
    let mut response = send_ok(connection, get("/")).await;
    response.body_mut().collect().await.unwrap();
    assert!(response.body_mut().take_reusable().is_some());
}

#[tokio::test]
async fn ambiguous_or_malformed_responses_are_refused() {
    let cases: [&'static [u8]; 6] = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        b"SSH-2.0-OpenSSH\r\n\r\n",
    ];
    for answer in cases {
        let (connection, _upstream) = exchange_with(answer, 0).await;
        let error = send_err(connection, get("/")).await;
        assert!(matches!(error, Http1Error::Protocol(_)), "{}: {error}", String::from_utf8_lossy(answer));
    }
}

#[tokio::test]
async fn a_connection_closed_before_or_during_the_response_is_an_error() {
    let (connection, _upstream) = exchange_with(b"", 0).await;
    assert!(matches!(send_err(connection, get("/")).await, Http1Error::ClosedBeforeResponse));

    let (connection, upstream) = exchange_with(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", 0).await;
    let mut response = send_ok(connection, get("/")).await;
    upstream.await.unwrap();
    let error = response.body_mut().collect().await.unwrap_err();
    assert!(matches!(error, Http1Error::ClosedInBody), "{error}");
    assert!(response.body_mut().take_reusable().is_none());
}

#[tokio::test]
async fn bytes_after_the_response_make_the_connection_unusable() {
    let (connection, _upstream) = exchange_with(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA", 0).await;
    let mut response = send_ok(connection, get("/")).await;
    assert_eq!(response.body_mut().frame().await.unwrap().unwrap().into_data().unwrap(), "ok");
    assert!(response.body_mut().take_reusable().is_none());
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_is_not_usable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stream = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (upstream_side, _) = listener.accept().await.unwrap();
    let mut connection = Http1Connection::new(Stream::Tcp(stream));
    assert!(connection.is_usable());
    drop(upstream_side);
    // Wait for the close to arrive, on the event itself.
    connection.stream_ready_for_read().await;
    assert!(!connection.is_usable());
}

#[tokio::test]
async fn a_write_to_a_closed_connection_gives_the_request_back() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stream = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (upstream_side, _) = listener.accept().await.unwrap();
    // A reset (linger 0) makes the first write fail rather than vanish.
    socket2::SockRef::from(&upstream_side).set_linger(Some(std::time::Duration::ZERO)).unwrap();
    drop(upstream_side);
    let connection = Http1Connection::new(Stream::Tcp(stream));
    connection.stream_ready_for_read().await;
    match connection.send(get("/again")).await {
        Err(SendError::Unsent(request, _)) => assert_eq!(request.uri(), "/again"),
        Err(SendError::Failed(error)) => panic!("the request was taken: {error}"),
        Ok(_) => panic!("a closed connection answered"),
    }
}

#[test]
fn chunk_sizes_and_line_ends_are_checked() {
    let decode = |input: &[u8]| {
        let mut buf = BytesMut::from(input);
        let mut chunk = Chunk::Size;
        let mut out = Vec::new();
        loop {
            match chunk.decode(&mut buf, super::body::ChunkLimits::UPSTREAM) {
                Ok(Decoded::Data(data)) => out.extend_from_slice(&data),
                Ok(Decoded::More) => return Ok((out, false)),
                Ok(Decoded::End | Decoded::Trailers(_)) => return Ok((out, true)),
                Err(error) => return Err(error),
            }
        }
    };
    assert_eq!(decode(b"3\r\nabc\r\n0\r\n\r\n").unwrap(), (b"abc".to_vec(), true));
    assert_eq!(decode(b"3 ; name=value\r\nabc\r\n0\r\n\r\n").unwrap(), (b"abc".to_vec(), true));
    assert_eq!(decode(b"3\r\nab").unwrap(), (b"ab".to_vec(), false));
    for bad in [&b"x\r\n"[..], b"\r\n", b"3\r\nabcX\r\n", b"3 x\r\n", b"10000000000000000\r\n"] {
        assert!(decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
    let long_line = vec![b'1'; 5000];
    assert!(decode(&long_line).is_err(), "a size line with no end in sight");
}

#[test]
fn status_lines_line_ends_and_field_counts() {
    let parse = |head: &[u8]| response::parse(&mut BytesMut::from(head), false);
    let head = |bytes: &[u8]| parse(bytes).unwrap().unwrap();
    let ok = head(b"HTTP/1.1 404 Not Found\r\nServer: x\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((ok.status, ok.version, ok.headers.len()), (StatusCode::NOT_FOUND, Version::HTTP_11, 2));
    assert_eq!(head(b"HTTP/1.0 200\r\ncontent-length: 0\r\n\r\n").version, Version::HTTP_10, "no reason phrase");
    assert_eq!(head(b"HTTP/1.1 599 \r\ncontent-length: 0\r\n\r\n").status.as_u16(), 599, "an empty reason");
    // An upstream's bare LF is taken (RFC 9112 section 2.2), and the value is trimmed of OWS.
    let bare = head(b"HTTP/1.1 200 OK\nX-A: \t b \t\ncontent-length: 0\n\n");
    assert_eq!(bare.headers["x-a"], "b");
    for bad in [
        &b"HTTP/1.1 20 OK\r\n\r\n"[..],
        b"HTTP/1.1 200OK\r\n\r\n",
        b"HTTP/1.1 099 OK\r\n\r\n",
        b"HTTP/2.0 200 OK\r\n\r\n",
        b"http/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX A: b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A : b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded: b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: b\rc\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: b\x00\r\n\r\n",
    ] {
        assert!(matches!(parse(bad), Err(Http1Error::Protocol(_))), "{}", String::from_utf8_lossy(bad));
    }
    // More fields than the stack's slots are split again on the heap, up to the limit.
    let mut many = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n".to_vec();
    for i in 1..response::MAX_HEADERS {
        many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(head(&many).headers.len(), response::MAX_HEADERS);
}

#[test]
fn response_framing_follows_rfc_9112() {
    let framing = |head: &[u8], head_request: bool| {
        let mut buf = BytesMut::from(head);
        response::parse(&mut buf, head_request).map(|parsed| parsed.map(|head| (head.framing, head.keep_alive)))
    };
    let ok = |head: &[u8]| framing(head, false).unwrap().unwrap();
    assert_eq!(ok(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n"), (BodyFraming::Length(3), true));
    assert_eq!(ok(b"HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\n"), (BodyFraming::Length(3), true));
    assert_eq!(ok(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n"), (BodyFraming::Chunked, true));
    assert_eq!(ok(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n"), (BodyFraming::UntilClose, false));
    assert_eq!(ok(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n"), (BodyFraming::Empty, true));
    assert_eq!(framing(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", true).unwrap().unwrap().0, BodyFraming::Empty);
    assert!(framing(b"HTTP/1.1 200 OK\r\ncontent-le", false).unwrap().is_none(), "a partial head waits");
    let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'a', response::MAX_HEAD_BYTES));
    assert!(framing(&huge, false).is_err(), "a head that never ends is refused");
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=response::MAX_HEADERS {
        many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert!(framing(&many, false).is_err(), "too many fields");
    // Length errors matter only where there is a body; framing fields count in every line.
    assert_eq!(ok(b"HTTP/1.1 204 No Content\r\ncontent-length: x\r\n\r\n"), (BodyFraming::Empty, true));
    assert_eq!(framing(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", true).unwrap().unwrap().0, BodyFraming::Empty);
    assert!(framing(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", false).is_err());
    assert!(framing(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n", false).is_err());
    assert!(framing(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\ntransfer-encoding: chunked\r\n\r\n", false).is_err());
    let two_lines = b"HTTP/1.0 200 OK\r\nconnection: x-a\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n";
    assert_eq!(ok(two_lines), (BodyFraming::Length(0), true));
    let close_later = b"HTTP/1.1 200 OK\r\nconnection: x-a\r\nconnection: x-b, close\r\ncontent-length: 0\r\n\r\n";
    assert_eq!(ok(close_later), (BodyFraming::Length(0), false));
}

/// Frames of a body whose length is declared.
struct Declared(Frames, u64);

impl Body for Declared {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().0).poll_frame(cx)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.1)
    }
}

#[tokio::test]
async fn large_pieces_of_a_length_body_go_out_uncopied_in_order_through_partial_writes() {
    let pattern =
        |len: usize, seed: u8| Bytes::from((0..len).map(|i| seed.wrapping_add((i % 251) as u8)).collect::<Vec<_>>());
    // Small pieces are copied into the buffer, large ones written from where they are; the last
    // is far larger than a socket takes at once.
    let pieces = [pattern(10, 1), pattern(3000, 2), pattern(7, 3), pattern(UNCOPIED_PIECE, 4), pattern(600 * 1024, 5)];
    let total: usize = pieces.iter().map(Bytes::len).sum();
    let (connection, upstream) = exchange_with(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", total).await;
    let body = Declared(Frames::new(pieces.iter().cloned().map(Frame::data).collect()), total as u64);
    let request = Request::post("/").header("host", "b").body(body).unwrap();
    send_ok(connection, request).await;
    let received = upstream.await.unwrap();
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(received[..head_end].ends_with(format!("content-length: {total}\r\n\r\n").as_bytes()));
    assert!(received[head_end..] == pieces.concat()[..], "the body arrived whole and in order");
}

#[tokio::test]
async fn a_length_body_longer_than_declared_is_refused_whatever_the_piece_size() {
    for size in [100, 5000] {
        let (connection, _upstream) = exchange_with(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", 0).await;
        let body = Declared(Frames::new(vec![Frame::data(Bytes::from(vec![b'x'; size]))]), 50);
        let request = Request::post("/").header("host", "b").body(body).unwrap();
        let error = send_err(connection, request).await;
        assert!(error.to_string().contains("longer than its Content-Length"), "{size}: {error}");
    }
}

#[tokio::test]
async fn a_large_body_does_not_leave_its_buffer_with_the_idle_connection() {
    const SIZE: usize = 200 * 1024;
    let (connection, upstream) = exchange_with(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", SIZE).await;
    let request = Request::post("/").header("host", "b").body(Full::new(Bytes::from(vec![b'x'; SIZE]))).unwrap();
    let mut response = send_ok(connection, request).await;
    let received = upstream.await.unwrap();
    assert!(received.ends_with(&[b'x'; 1024]), "the whole body arrived");
    let connection = response.body_mut().take_reusable().expect("reusable");
    assert!(connection.write.capacity() <= KEPT_WRITE_CAPACITY, "kept {} bytes", connection.write.capacity());
}

#[test]
fn a_connection_field_of_keep_alive_or_close_is_acted_on_and_not_kept() {
    let parse = |head: &[u8]| response::parse(&mut BytesMut::from(head), false).unwrap().unwrap();
    let plain = parse(b"HTTP/1.1 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n");
    assert!(plain.keep_alive);
    assert!(!plain.headers.contains_key("connection"));
    let closing = parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n");
    assert!(!closing.keep_alive);
    assert!(!closing.headers.contains_key("connection"));
    // A field naming others stays, for whoever removes what it names.
    let upgrade = parse(b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n");
    assert_eq!(upgrade.headers["connection"], "Upgrade");
    let listing = parse(b"HTTP/1.1 200 OK\r\nconnection: keep-alive, x-private\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(listing.headers["connection"], "keep-alive, x-private");
}
