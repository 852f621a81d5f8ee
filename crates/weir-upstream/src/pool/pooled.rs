//! What a request holds of the pool: a [`Connection`] to send on, then a [`PooledBody`] that gives
//! the connection (HTTP/1.1) or the stream (HTTP/2) back when the response has been read.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::http2::Stream;
use super::{BoxError, EndpointPool, Slot};
use crate::error::UpstreamError;
use crate::http1::{Http1Body, Http1Connection, Http1Error, SendError};

/// A connection taken from the pool or newly made.
pub(super) enum Checkout<B> {
    Http1 { connection: Box<Http1Connection>, slot: Slot, reused: bool },
    Http2 { stream: Stream<B>, reused: bool },
}

/// A connection taken for one request.
pub struct Connection<B> {
    checkout: Checkout<B>,
    pool: Arc<EndpointPool<B>>,
}

impl<B> Connection<B> {
    pub(super) fn new(checkout: Checkout<B>, pool: Arc<EndpointPool<B>>) -> Self {
        Connection { checkout, pool }
    }

    /// The scheme a request on the connection names: `https` over TLS.
    pub fn scheme(&self) -> http::uri::Scheme {
        if self.pool.settings.tls.is_some() { http::uri::Scheme::HTTPS } else { http::uri::Scheme::HTTP }
    }

    /// The HTTP version of the connection: a request for HTTP/2 needs its target in absolute form.
    pub fn version(&self) -> Version {
        match self.checkout {
            Checkout::Http1 { .. } => Version::HTTP_11,
            Checkout::Http2 { .. } => Version::HTTP_2,
        }
    }
}

impl<B> Connection<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Returns the connection unused: nothing was sent on it, so an HTTP/1.1 connection goes back
    /// to the idle list for the next request, and an HTTP/2 stream is freed.
    pub fn release(self) {
        let Connection { checkout, pool } = self;
        if let Checkout::Http1 { connection, slot, .. } = checkout {
            pool.put_idle(connection, slot);
        }
    }

    /// Sends the request. One that a reused connection could not take (it closed just now) is sent
    /// again on another connection: it was never written.
    ///
    /// A plain function rather than an `async fn`, so the future holds the request once: it is
    /// used where it was captured (an `async fn` would keep its argument and a working copy).
    pub fn send(self, mut request: Request<B>) -> impl Future<Output = Result<Response<PooledBody<B>>, UpstreamError>> {
        let Connection { mut checkout, pool } = self;
        async move {
            loop {
                match checkout {
                    Checkout::Http1 { connection, slot, reused } => match connection.send(request).await {
                        Ok(response) => return Ok(response.map(|body| PooledBody::http1(body, slot, pool))),
                        Err(SendError::Unsent(unsent, _)) if reused => request = *unsent,
                        Err(SendError::Unsent(_, source) | SendError::Failed(source)) => {
                            return Err(UpstreamError::Http1 { addr: pool.addr, source });
                        }
                    },
                    Checkout::Http2 { stream, reused } => match stream.sender().try_send_request(request).await {
                        Ok(response) => return Ok(response.map(|body| PooledBody::http2(body, stream, pool))),
                        Err(mut failed) => match failed.take_message() {
                            Some(unsent) if reused => request = unsent,
                            _ => return Err(UpstreamError::Exchange { addr: pool.addr, source: failed.into_error() }),
                        },
                    },
                }
                // Boxed: this retry is rare, and inlined its future would make every send's kilobytes large.
                checkout = Box::pin(pool.connection()).await?.checkout;
            }
        }
    }
}

/// Why an upstream's response body ended before its end.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamBodyError {
    #[error(transparent)]
    Http1(#[from] Http1Error),
    #[error(transparent)]
    Http2(#[from] hyper::Error),
}

/// An upstream response body that gives its connection or stream back when it has been read to the
/// end. Dropped early, an HTTP/1.1 connection is dropped with it (it may still hold unread bytes);
/// an HTTP/2 stream is reset and freed.
pub struct PooledBody<B> {
    inner: Inner<B>,
    pool: Arc<EndpointPool<B>>,
}

enum Inner<B> {
    /// The connection is inside the body while it is read; the slot goes back with it.
    Http1 {
        body: Http1Body,
        slot: Option<Slot>,
    },
    Http2 {
        body: Incoming,
        stream: Option<Stream<B>>,
    },
}

impl<B> PooledBody<B> {
    fn http1(body: Http1Body, slot: Slot, pool: Arc<EndpointPool<B>>) -> Self {
        let mut pooled = PooledBody { inner: Inner::Http1 { body, slot: Some(slot) }, pool };
        pooled.give_back();
        pooled
    }

    fn http2(body: Incoming, stream: Stream<B>, pool: Arc<EndpointPool<B>>) -> Self {
        PooledBody { inner: Inner::Http2 { body, stream: Some(stream) }, pool }
    }

    /// Puts an HTTP/1.1 connection whose response has been read to its end back on the idle list.
    fn give_back(&mut self) {
        if let Inner::Http1 { body, slot } = &mut self.inner
            && let Some(connection) = body.take_reusable()
            && let Some(slot) = slot.take()
        {
            self.pool.put_idle(connection, slot);
        }
    }
}

impl<B> Body for PooledBody<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = UpstreamBodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut self.inner {
            Inner::Http1 { body, .. } => {
                let polled = Pin::new(body).poll_frame(cx);
                if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Ok(_)))) {
                    self.give_back();
                }
                polled.map(|frame| frame.map(|frame| frame.map_err(UpstreamBodyError::from)))
            }
            Inner::Http2 { body, stream } => {
                let polled = Pin::new(body).poll_frame(cx);
                if let Poll::Ready(Some(Err(_))) = &polled {
                    *stream = None;
                }
                polled.map(|frame| frame.map(|frame| frame.map_err(UpstreamBodyError::from)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Http1 { body, .. } => body.is_end_stream(),
            Inner::Http2 { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Http1 { body, .. } => body.size_hint(),
            Inner::Http2 { body, .. } => body.size_hint(),
        }
    }
}
