//! HTTP/2 to clients (h2 after ALPN, and h2c), spoken by weir itself (RFC 9113, HPACK RFC 7541).
//!
//! One task per connection. It reads frames and acts on them, runs each stream's exchange with the
//! gateway as a future of its own that it polls itself (woken stream by stream, never spawned), and
//! writes the frames the streams queued: the connection's state sits behind one lock that only a
//! request body read from another task contends for (`shared.rs`). Responses go out within the
//! client's flow-control windows; request bodies are taken in within weir's, given back as the
//! gateway reads them, so a slow upstream slows its client down instead of filling memory.
//!
//! What a client sends is bounded: frames to 16 KiB, a header block to the listener's head size
//! and field count (over it, the gateway answers 431), concurrent streams, every window, the frames
//! queued for a client that does not read (the connection stops reading meanwhile), streams reset
//! before their answers (rapid reset). A rule broken on one stream resets that stream; one broken
//! on the connection ends it with GOAWAY.

mod conn;
mod frame;
mod hpack;
mod request;
mod send;
mod shared;
#[cfg(test)]
mod tests;

use std::future::{Future, poll_fn};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::client_body::ClientBody;
use crate::http1::Answer;

pub(crate) use frame::Reason;
pub(crate) use request::{BlockLimits, HeadLimit};
pub use shared::{Http2Body, Http2BodyError};

/// What every HTTP/2 connection opens with (RFC 9113 section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a listener's HTTP/2 connections are served.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Http2Settings {
    pub(crate) limits: BlockLimits,
    /// Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub(crate) max_concurrent_streams: u32,
    /// How long a connection with no open stream stays, and how long a client may take no bytes
    /// while some wait for it.
    pub(crate) idle_timeout: Duration,
    /// How long a new connection may take to send its first bytes: one that sends nothing is
    /// closed without a word.
    pub(crate) preface_timeout: Duration,
}

/// What a connection's requests are handed to.
pub(crate) trait Service: Clone + Send + Sync + 'static {
    type Body: Body<Data = Bytes, Error: Into<BoxError> + Send> + Unpin + Send + 'static;

    /// Answers a request.
    fn call(&self, request: Request<ClientBody>) -> impl Future<Output = Answer<Self::Body>> + Send;

    /// The server ended a stream (RST_STREAM) or the connection (GOAWAY) with an error.
    fn protocol_error(&self, scope: ErrorScope, reason: Reason);
}

/// A request extension: the request stands for a header block over the listener's limit, and is
/// to be refused as too large without being routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RefusedHead(pub(crate) HeadLimit);

/// What an HTTP/2 error ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorScope {
    Stream,
    Connection,
}

impl ErrorScope {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorScope::Stream => "stream",
            ErrorScope::Connection => "connection",
        }
    }
}

/// Serves HTTP/2 on a connection whose preface has not been read yet, until the connection closes
/// or, once `stopping` is cancelled, its open streams have ended (GOAWAY tells the client).
pub(crate) async fn serve<S, Svc>(io: S, settings: Http2Settings, stopping: CancellationToken, service: Svc)
where
    S: AsyncRead + AsyncWrite + Unpin,
    Svc: Service,
{
    let mut connection = conn::Connection::new(io, settings, stopping.cancelled_owned(), service);
    poll_fn(|cx| connection.poll_serve(cx)).await
}
