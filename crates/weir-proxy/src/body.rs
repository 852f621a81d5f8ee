//! The two body types on the proxy path: a client's request body on its way upstream, held to the
//! route's size limit and counted while it streams; and the response body weir sends, either streamed
//! from the upstream or made by weir, whose end finishes the request's metrics and access-log record.
//! Concrete enums rather than boxed trait objects: no allocation per body.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;
use weir_telemetry::RequestTimer;
use weir_trace::{RequestSpan, SpanEnd};
use weir_upstream::PooledBody;

use crate::access::Record;
use crate::client_body::{ClientBody, ClientBodyError};
use crate::upstream_notes::{self, BodyMeters};

/// A request body on its way upstream: streamed from the client, held to the route's size limit and
/// counted; or held whole in memory (already counted) so a retry can send it again.
pub enum RequestBody {
    Streaming { inner: ClientBody, remaining: u64, limit: u64, meters: BodyMeters },
    Replay(Option<Bytes>),
}

/// Why a request body could not be sent on.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    #[error("request body is larger than the route's limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("reading the request body from the client: {0}")]
    Read(#[source] ClientBodyError),
}

impl RequestBody {
    /// `limit` of `u64::MAX` means no limit. The body counts its bytes into the meters of the
    /// request it is made for ([`upstream_notes::body_meters`]).
    pub fn new(inner: ClientBody, limit: u64) -> Self {
        RequestBody::Streaming { inner, remaining: limit, limit, meters: upstream_notes::body_meters() }
    }

    /// A body already read whole (bytes are reference-counted: sending it again copies nothing).
    pub fn replay(bytes: Bytes) -> Self {
        RequestBody::Replay(Some(bytes).filter(|b| !b.is_empty()))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let (inner, remaining, limit, meters) = match self.get_mut() {
            RequestBody::Replay(bytes) => return Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Streaming { inner, remaining, limit, meters } => (inner, remaining, *limit, &*meters),
        };
        let frame = match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(RequestBodyError::Read(error)))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > *remaining {
                return Poll::Ready(Some(Err(RequestBodyError::TooLarge { limit })));
            }
            *remaining -= len;
            if let Some(route) = &meters.route {
                route.inc_by(len);
            }
            if let Some(request) = &meters.request {
                request.fetch_add(len, Ordering::Relaxed);
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Streaming { inner, .. } => inner.is_end_stream(),
            RequestBody::Replay(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Streaming { inner, .. } => inner.size_hint(),
            RequestBody::Replay(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

/// The body of a response weir sends to a client.
pub enum ResponseBody {
    /// Made by weir: at most one chunk, known length.
    Full(Option<Bytes>),
    /// Streamed from the upstream.
    Upstream(UpstreamBody),
    /// Sent no faster than a fault's byte rate.
    Throttled(Box<crate::stages::fault::throttle::Throttled>),
}

/// Why a response body ended before its end.
#[derive(Debug, thiserror::Error)]
pub enum ResponseBodyError {
    #[error("reading the upstream's response body: {0}")]
    Upstream(#[source] weir_upstream::UpstreamBodyError),
    #[error("the upstream sent nothing of the response body for {0:?} (the route's body_idle_timeout)")]
    Idle(Duration),
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> Self {
        if bytes.is_empty() { ResponseBody::Full(None) } else { ResponseBody::Full(Some(bytes)) }
    }

    /// This body, sent at most `rate` bytes per second.
    pub fn throttled(self, rate: u64) -> Self {
        ResponseBody::Throttled(Box::new(crate::stages::fault::throttle::Throttled::new(self, rate)))
    }

    /// An upstream's body, cut when the upstream goes quiet for longer than `idle_timeout`.
    pub fn upstream(inner: PooledBody<RequestBody>, idle_timeout: Option<Duration>) -> Self {
        ResponseBody::Upstream(UpstreamBody { inner, idle_timeout, waiting: None })
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = ResponseBodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ResponseBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Upstream(body) => body.poll_frame(cx),
            ResponseBody::Throttled(body) => Pin::new(body.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(bytes) => bytes.is_none(),
            ResponseBody::Upstream(body) => body.inner.is_end_stream(),
            ResponseBody::Throttled(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            ResponseBody::Upstream(body) => body.inner.size_hint(),
            ResponseBody::Throttled(body) => body.size_hint(),
        }
    }
}

/// A response body streamed from the upstream. The idle timer is armed only while weir waits for
/// the upstream: a body whose frames are ready when asked for never sets one.
pub struct UpstreamBody {
    inner: PooledBody<RequestBody>,
    idle_timeout: Option<Duration>,
    waiting: Option<Pin<Box<Sleep>>>,
}

impl UpstreamBody {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ResponseBodyError>>> {
        let polled = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => return self.wait(cx),
        };
        self.waiting = None;
        Poll::Ready(polled.map(|frame| frame.map_err(ResponseBodyError::Upstream)))
    }

    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ResponseBodyError>>> {
        let Some(idle) = self.idle_timeout else { return Poll::Pending };
        let timer = self.waiting.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.waiting = None;
                tracing::debug!(?idle, "upstream response body went idle: cut");
                Poll::Ready(Some(Err(ResponseBodyError::Idle(idle))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The body weir hands to the server (its own for HTTP/1.1, hyper's for HTTP/2): a [`ResponseBody`] that counts the bytes it sends and finishes the
/// request's timer, access-log record and trace span when it ends, or when it is dropped early (the
/// client went away).
pub struct TimedBody {
    inner: ResponseBody,
    bytes_out: u64,
    timer: Option<RequestTimer>,
    record: Option<Box<Record>>,
    span: SpanEnd,
}

impl TimedBody {
    pub fn new(inner: ResponseBody, timer: RequestTimer, record: Option<Box<Record>>) -> Self {
        let mut body = TimedBody { inner, bytes_out: 0, timer: Some(timer), record, span: SpanEnd::default() };
        if body.inner.is_end_stream() {
            body.finish(true);
        }
        body
    }

    /// Ends `span` with the body (at once if the body has ended already).
    pub fn traced(mut self, span: RequestSpan) -> Self {
        if self.timer.is_some() {
            self.span = span.into_end();
        }
        self
    }

    fn finish(&mut self, complete: bool) {
        if let Some(timer) = self.timer.take() {
            timer.finish(self.bytes_out);
        }
        if let Some(record) = self.record.take() {
            record.finish(self.bytes_out, complete);
        }
        std::mem::take(&mut self.span).end();
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = ResponseBodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                self.bytes_out += frame.data_ref().map_or(0, |data| data.len() as u64);
                if self.inner.is_end_stream() {
                    self.finish(true);
                }
            }
            Poll::Ready(None) => self.finish(true),
            Poll::Ready(Some(Err(_))) => self.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        self.finish(false);
    }
}
