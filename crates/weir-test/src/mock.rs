//! A programmable upstream. Each request says how to answer through `x-mock-*` headers, and every
//! request that arrives is recorded whole (head, body, trailers) for the test to inspect.
//!
//! | header | effect |
//! |---|---|
//! | `x-mock-status: 503` | response status |
//! | `x-mock-delay-ms: 200` | wait before the response head |
//! | `x-mock-body: text` | response body (default `hello from NAME`) |
//! | `x-mock-echo: 1` | response body = request body |
//! | `x-mock-chunks: 5` + `x-mock-chunk-size: 1000` + `x-mock-chunk-delay-ms: 10` | streamed chunked body |
//! | `x-mock-trailer: name=value` | send this trailer (declared in `Trailer`) |
//! | `x-mock-header: name=value` | add this response header |
//! | `x-mock-reset: 1` | close the connection without answering |
//! | `x-mock-hold: 1` | wait for [`MockUpstream::release_held`] before answering |
//!
//! A test can also set the status for a path, or all paths, with [`MockUpstream::set_status`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

/// A request as the mock upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
    pub peer: SocketAddr,
}

type MockBody = StreamBody<tokio_stream_shim::Receiver>;

/// A mock upstream server on 127.0.0.1 with an ephemeral port.
pub struct MockUpstream {
    name: String,
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    arrived: Notify,
    connections: std::sync::atomic::AtomicUsize,
    /// Statuses set by the test for requests without `x-mock-status`: by path, or for every path ("").
    statuses: Mutex<std::collections::HashMap<String, u16>>,
    /// A delay set by the test for requests without `x-mock-delay-ms`, in milliseconds.
    delay_ms: std::sync::atomic::AtomicU64,
    /// Set by the test to let requests with `x-mock-hold` be answered.
    released: tokio::sync::watch::Sender<bool>,
}

impl MockUpstream {
    /// Starts a mock that names itself `name` in default bodies and an `x-upstream` header.
    pub async fn start(name: &str) -> MockUpstream {
        MockUpstream::start_at(name, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts a mock on a given address: a stopped mock's, to bring an endpoint back.
    pub async fn start_at(name: &str, addr: SocketAddr) -> MockUpstream {
        let listener = TcpListener::bind(addr).await.expect("bind mock upstream");
        let addr = listener.local_addr().expect("mock address");
        let state = Arc::new(State::default());
        let task = tokio::spawn(accept_loop(listener, name.to_string(), state.clone()));
        MockUpstream { name: name.to_string(), addr, state, task }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.received.lock().unwrap().len()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until at least `n` requests have arrived (bounded by the test timeout).
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let wait = async {
            loop {
                let notified = self.state.arrived.notified();
                if self.count() >= n {
                    return self.received();
                }
                notified.await;
            }
        };
        tokio::time::timeout(crate::TEST_TIMEOUT, wait).await.expect("mock upstream: requests did not arrive")
    }

    /// Answers requests for `path` (or every path, for `""`) that carry no `x-mock-status` with
    /// `status`, until changed again.
    pub fn set_status(&self, path: &str, status: u16) {
        self.state.statuses.lock().unwrap().insert(path.to_string(), status);
    }

    /// Delays every response head that `x-mock-delay-ms` does not delay, by `ms` milliseconds.
    pub fn set_delay(&self, ms: u64) {
        self.state.delay_ms.store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// Requests received for `path`.
    pub fn count_path(&self, path: &str) -> usize {
        self.state.received.lock().unwrap().iter().filter(|r| r.uri.path() == path).count()
    }

    /// Stops accepting; open connections are closed.
    /// Answers the requests held by `x-mock-hold`, and every later one at once.
    pub fn release_held(&self) {
        self.state.released.send_replace(true);
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, name: String, state: Arc<State>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, peer)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        state.connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (name, state) = (name.clone(), state.clone());
        let service = hyper::service::service_fn(move |request| answer(request, peer, name.clone(), state.clone()));
        connections.spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    peer: SocketAddr,
    name: String,
    state: Arc<State>,
) -> Result<Response<MockBody>, std::io::Error> {
    let (parts, body) = request.into_parts();
    let collected = body.collect().await.map_err(std::io::Error::other)?;
    let trailers = collected.trailers().cloned();
    let received = Received {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
        peer,
    };
    let mut headers = received.headers.clone();
    let echo = received.body.clone();
    let set_status = {
        let statuses = state.statuses.lock().unwrap();
        statuses.get(received.uri.path()).or_else(|| statuses.get("")).copied()
    };
    if let Some(status) = set_status
        && !headers.contains_key("x-mock-status")
    {
        headers.insert("x-mock-status", HeaderValue::from(status));
    }
    let set_delay = state.delay_ms.load(std::sync::atomic::Ordering::SeqCst);
    if set_delay > 0 && !headers.contains_key("x-mock-delay-ms") {
        headers.insert("x-mock-delay-ms", HeaderValue::from(set_delay));
    }
    state.received.lock().unwrap().push(received);
    state.arrived.notify_waiters();
    let instruction = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    if instruction("x-mock-reset").is_some() {
        return Err(std::io::Error::other("reset requested"));
    }
    if instruction("x-mock-hold").is_some() {
        let _ = state.released.subscribe().wait_for(|released| *released).await;
    }
    if let Some(delay) = instruction("x-mock-delay-ms").and_then(|d| d.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    Ok(build_response(&name, &instruction, echo))
}

fn build_response(name: &str, instruction: &dyn Fn(&str) -> Option<String>, echo: Bytes) -> Response<MockBody> {
    let (tx, rx) = mpsc::channel(4);
    let mut response = Response::new(StreamBody::new(tokio_stream_shim::Receiver(rx)));
    let status = instruction("x-mock-status").and_then(|s| s.parse().ok()).unwrap_or(200);
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    headers.insert("x-upstream", HeaderValue::from_str(name).unwrap());
    if let Some((key, value)) = instruction("x-mock-header").as_deref().and_then(|h| h.split_once('=')) {
        headers.append(HeaderName::from_bytes(key.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    }
    let trailer = instruction("x-mock-trailer");
    if let Some((key, _)) = trailer.as_deref().and_then(|t| t.split_once('=')) {
        headers.insert(http::header::TRAILER, HeaderValue::from_str(key).unwrap());
    }
    let chunks: usize = instruction("x-mock-chunks").and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = if instruction("x-mock-echo").is_some() {
        echo
    } else {
        Bytes::from(instruction("x-mock-body").unwrap_or_else(|| format!("hello from {name}")))
    };
    if chunks == 0 && trailer.is_none() {
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    let chunk_size: usize = instruction("x-mock-chunk-size").and_then(|c| c.parse().ok()).unwrap_or(1024);
    let chunk_delay: u64 = instruction("x-mock-chunk-delay-ms").and_then(|c| c.parse().ok()).unwrap_or(0);
    tokio::spawn(async move {
        if chunks == 0 {
            if !body.is_empty() {
                let _ = tx.send(Ok(Frame::data(body))).await;
            }
        } else {
            for i in 0..chunks {
                if chunk_delay > 0 {
                    tokio::time::sleep(Duration::from_millis(chunk_delay)).await;
                }
                let chunk = Bytes::from(vec![b'a' + (i % 26) as u8; chunk_size]);
                if tx.send(Ok(Frame::data(chunk))).await.is_err() {
                    return;
                }
            }
        }
        if let Some((key, value)) = trailer.as_deref().and_then(|t| t.split_once('=')) {
            let mut trailers = HeaderMap::new();
            trailers.insert(HeaderName::from_bytes(key.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
            let _ = tx.send(Ok(Frame::trailers(trailers))).await;
        }
    });
    response
}

/// A tiny `Stream` over an mpsc receiver, so the mock needs no stream crate.
mod tokio_stream_shim {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use hyper::body::Frame;

    pub struct Receiver(pub tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>);

    impl futures_core::Stream for Receiver {
        type Item = Result<Frame<Bytes>, Infallible>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }
}
