//! A client's request body as the gateway reads it, whichever server the connection speaks to:
//! weir's own HTTP/1.1 server or its HTTP/2 one.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::http1::Http1Body;
use crate::http2::{Http2Body, Http2BodyError};

/// A request body from a client.
pub enum ClientBody {
    /// The request has no body.
    Empty,
    /// The whole body came with the head: nothing more to read (`None` once taken).
    Whole(Option<Bytes>),
    Http1(Http1Body),
    Http2(Http2Body),
}

/// Why reading a client's body failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    #[error("HTTP/1.1: {0}")]
    Http1(#[source] std::io::Error),
    #[error("HTTP/2: {0}")]
    Http2(#[source] Http2BodyError),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ClientBody::Empty => Poll::Ready(None),
            ClientBody::Whole(bytes) => Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes)))),
            ClientBody::Http1(body) => {
                Pin::new(body).poll_frame(cx).map(|frame| frame.map(|f| f.map_err(ClientBodyError::Http1)))
            }
            ClientBody::Http2(body) => {
                Pin::new(body).poll_frame(cx).map(|frame| frame.map(|f| f.map_err(ClientBodyError::Http2)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::Whole(bytes) => bytes.is_none(),
            ClientBody::Http1(body) => body.is_end_stream(),
            ClientBody::Http2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::Whole(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            ClientBody::Http1(body) => body.size_hint(),
            ClientBody::Http2(body) => body.size_hint(),
        }
    }
}
