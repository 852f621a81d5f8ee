//! The two body types on the proxy path: a client's request body on its way upstream, held to the
//! route's size limit while it streams; and the response body weir sends, either streamed from the
//! upstream or made by weir. Concrete enums rather than boxed trait objects: no allocation per body.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use weir_telemetry::RequestTimer;
use weir_upstream::PooledBody;

/// A request body on its way upstream: streamed from the client and held to the route's size limit,
/// or held whole in memory so a retry can send it again.
pub enum RequestBody {
    Streaming { inner: Incoming, remaining: u64, limit: u64 },
    Replay(Option<Bytes>),
}

/// Why a request body could not be sent on.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    #[error("request body is larger than the route's limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("reading the request body from the client: {0}")]
    Read(#[source] hyper::Error),
}

impl RequestBody {
    /// `limit` of `u64::MAX` means no limit.
    pub fn new(inner: Incoming, limit: u64) -> Self {
        RequestBody::Streaming { inner, remaining: limit, limit }
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
        let (inner, remaining, limit) = match self.get_mut() {
            RequestBody::Replay(bytes) => return Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Streaming { inner, remaining, limit } => (inner, remaining, *limit),
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
    Upstream(PooledBody<RequestBody>),
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> Self {
        if bytes.is_empty() { ResponseBody::Full(None) } else { ResponseBody::Full(Some(bytes)) }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ResponseBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Upstream(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(bytes) => bytes.is_none(),
            ResponseBody::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            ResponseBody::Upstream(body) => body.size_hint(),
        }
    }
}

/// The body weir hands to hyper: a [`ResponseBody`] that records the request's duration when it
/// ends, or when it is dropped early (the client went away).
pub struct TimedBody {
    inner: ResponseBody,
    timer: Option<RequestTimer>,
}

impl TimedBody {
    pub fn new(inner: ResponseBody, timer: RequestTimer) -> Self {
        let mut body = TimedBody { inner, timer: Some(timer) };
        if body.inner.is_end_stream() {
            body.finish();
        }
        body
    }

    fn finish(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.finish();
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_))))
            || (matches!(polled, Poll::Ready(Some(Ok(_)))) && self.inner.is_end_stream())
        {
            self.finish();
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
        self.finish();
    }
}
