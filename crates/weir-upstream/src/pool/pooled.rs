//! What a request holds of the pool: a [`Connection`] to send on, then a [`PooledBody`] that gives
//! the connection (HTTP/1.1) or the stream (HTTP/2) back when the response has been read.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;

use super::http2::Stream;
use super::{BoxError, EndpointPool, Slot};
use crate::error::UpstreamError;

/// A connection taken from the pool or newly made.
pub(super) enum Checkout<B> {
    Http1 { sender: http1::SendRequest<B>, slot: Slot, reused: bool },
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
        if let Checkout::Http1 { sender, slot, .. } = checkout {
            pool.put_idle(sender, slot);
        }
    }

    /// Sends the request. One that a reused connection could not take (it closed just now) is sent
    /// again on another connection: it was never written.
    pub async fn send(self, mut request: Request<B>) -> Result<Response<PooledBody<B>>, UpstreamError> {
        let Connection { mut checkout, pool } = self;
        loop {
            let (sent, reused) = match &mut checkout {
                Checkout::Http1 { sender, reused, .. } => (sender.try_send_request(request).await, *reused),
                Checkout::Http2 { stream, reused } => (stream.sender().try_send_request(request).await, *reused),
            };
            match sent {
                Ok(response) => return Ok(response.map(|body| PooledBody::new(body, checkout, pool))),
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(UpstreamError::Exchange { addr: pool.addr, source: failed.into_error() }),
                },
            }
            // Boxed: this retry is rare, and inlined its future would make every send's kilobytes large.
            checkout = Box::pin(pool.connection()).await?.checkout;
        }
    }
}

/// An upstream response body that gives its connection or stream back when it has been read to the
/// end. Dropped early, an HTTP/1.1 connection is dropped with it (it may still hold unread bytes);
/// an HTTP/2 stream is reset and freed.
pub struct PooledBody<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    inner: Incoming,
    giveback: Option<(Checkout<B>, Arc<EndpointPool<B>>)>,
}

impl<B> PooledBody<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn new(inner: Incoming, checkout: Checkout<B>, pool: Arc<EndpointPool<B>>) -> Self {
        let mut body = PooledBody { inner, giveback: Some((checkout, pool)) };
        if body.inner.is_end_stream() {
            body.give_back();
        }
        body
    }

    fn give_back(&mut self) {
        if let Some((Checkout::Http1 { sender, slot, .. }, pool)) = self.giveback.take() {
            pool.put_idle(sender, slot);
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
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.giveback = None,
            _ => {}
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

impl<B> Drop for PooledBody<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.give_back();
        }
    }
}
