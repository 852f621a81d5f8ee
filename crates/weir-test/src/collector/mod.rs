//! A mock OpenTelemetry collector: a cleartext server on 127.0.0.1 that answers the OTLP/gRPC
//! `TraceService/Export` call (HTTP/2, prior knowledge) and OTLP/HTTP `POST /v1/traces` (HTTP/1.1),
//! decodes each request with its own protobuf reader ([`decode`]) and keeps the spans for the test.
//! It answers gRPC OK in trailers, the way a real collector does, and a malformed request with
//! `INVALID_ARGUMENT` (gRPC) or 400 (HTTP).

mod decode;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub use decode::{AttributeValue, ExportedSpan};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const HTTP_PATH: &str = "/v1/traces";

/// A mock collector; see the module documentation.
pub struct MockCollector {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct State {
    spans: Mutex<Vec<ExportedSpan>>,
    /// Export calls that could not be decoded, with why.
    malformed: Mutex<Vec<String>>,
    arrived: Notify,
}

impl MockCollector {
    pub async fn start() -> MockCollector {
        MockCollector::start_at("127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts on a given address: one a gateway was told about before the collector was up.
    pub async fn start_at(addr: SocketAddr) -> MockCollector {
        let listener = TcpListener::bind(addr).await.expect("bind mock collector");
        let addr = listener.local_addr().expect("mock collector address");
        let state = Arc::new(State::default());
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        MockCollector { addr, state, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port`, for a gateway's `tracing.otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ExportedSpan> {
        self.state.spans.lock().unwrap().clone()
    }

    /// Waits until at least `n` spans have arrived (bounded by the test timeout).
    pub async fn wait_for_spans(&self, n: usize) -> Vec<ExportedSpan> {
        let wait = async {
            loop {
                let notified = self.state.arrived.notified();
                let malformed = self.state.malformed.lock().unwrap().clone();
                assert!(malformed.is_empty(), "the collector received malformed exports: {malformed:?}");
                if self.state.spans.lock().unwrap().len() >= n {
                    return self.spans();
                }
                notified.await;
            }
        };
        tokio::time::timeout(crate::TEST_TIMEOUT, wait).await.expect("mock collector: spans did not arrive")
    }
}

impl Drop for MockCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let state = state.clone();
        let service = hyper::service::service_fn(move |request| answer(request, state.clone()));
        connections.spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn answer(request: Request<Incoming>, state: Arc<State>) -> Result<Response<GrpcAnswer>, Infallible> {
    if request.uri().path() == HTTP_PATH {
        return Ok(answer_http(request, state).await);
    }
    let grpc = request.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if request.uri().path() != EXPORT_PATH || !grpc {
        let mut response = Response::new(GrpcAnswer::status(12, "unimplemented"));
        *response.status_mut() = StatusCode::OK;
        return Ok(response);
    }
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let decoded = unframe(&body).and_then(decode::export_request);
    let answer = match decoded {
        Ok(spans) => {
            state.spans.lock().unwrap().extend(spans);
            GrpcAnswer::status(0, "")
        }
        Err(why) => {
            state.malformed.lock().unwrap().push(why);
            GrpcAnswer::status(3, "malformed export request")
        }
    };
    state.arrived.notify_waiters();
    let mut response = Response::new(answer);
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/grpc"));
    Ok(response)
}

/// OTLP/HTTP: the body is the protobuf message itself; the answer an empty response message.
async fn answer_http(request: Request<Incoming>, state: Arc<State>) -> Response<GrpcAnswer> {
    let protobuf = request.headers().get("content-type").is_some_and(|v| v == "application/x-protobuf");
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let decoded = if protobuf { decode::export_request(&body) } else { Err("not application/x-protobuf".into()) };
    let status = match decoded {
        Ok(spans) => {
            state.spans.lock().unwrap().extend(spans);
            StatusCode::OK
        }
        Err(why) => {
            state.malformed.lock().unwrap().push(why);
            StatusCode::BAD_REQUEST
        }
    };
    state.arrived.notify_waiters();
    let mut response = Response::new(GrpcAnswer { message: None, trailers: None });
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/x-protobuf"));
    response
}

/// The one message of a gRPC request body: uncompressed, length as declared.
fn unframe(body: &[u8]) -> Result<&[u8], String> {
    if body.len() < 5 || body[0] != 0 {
        return Err(format!("not an uncompressed gRPC frame ({} bytes)", body.len()));
    }
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    if body.len() != 5 + len {
        return Err(format!("gRPC frame declares {len} bytes, body holds {}", body.len() - 5));
    }
    Ok(&body[5..])
}

/// A gRPC answer: an empty response message, then the status in trailers (for OTLP/HTTP: no body).
pub struct GrpcAnswer {
    message: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl GrpcAnswer {
    fn status(code: u32, message: &str) -> GrpcAnswer {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from(code));
        if !message.is_empty() {
            trailers.insert("grpc-message", HeaderValue::from_str(message).unwrap());
        }
        // An empty `ExportTraceServiceResponse`, framed.
        let message = (code == 0).then(|| Bytes::from_static(&[0, 0, 0, 0, 0]));
        GrpcAnswer { message, trailers: Some(trailers) }
    }
}

impl Body for GrpcAnswer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(message) = this.message.take() {
            return Poll::Ready(Some(Ok(Frame::data(message))));
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }
}
