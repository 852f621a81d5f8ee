//! Writing a response to a client's HTTP/1.1 connection: the head, with the framing weir chooses
//! for the body, then the body as it comes.
//!
//! Framing follows RFC 9112 section 6: no body after `HEAD`, 1xx, 204 or 304; else the response's
//! own `Content-Length`, or the body's exact length, or chunked coding for an HTTP/1.1 client (an
//! HTTP/1.0 one reads to the connection's close). `Transfer-Encoding` is weir's alone to write.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::response::Parts;
use http::{HeaderMap, Method, StatusCode};
use http_body::{Body, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};
use weir_upstream::wire::{encode_last_chunk, push_field, push_number};

use super::date;
use super::head::Head;
use super::io::ConnIo;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What of the request decides how its response is written.
#[derive(Debug, Clone, Copy)]
pub(super) struct Asked {
    pub(super) head_request: bool,
    pub(super) http10: bool,
    /// The client lets the connection carry another request.
    pub(super) keep_alive: bool,
    /// The client takes trailers.
    pub(super) trailers: bool,
}

impl Asked {
    pub(super) fn of(head: &Head) -> Asked {
        Asked {
            head_request: head.method == Method::HEAD,
            http10: head.version == http::Version::HTTP_10,
            // What follows a WebSocket upgrade may be the tunnel's bytes: unless the answer switches
            // protocols, no request is read after it.
            keep_alive: head.keep_alive && !head.websocket,
            trailers: head.trailers,
        }
    }
}

/// How the response body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// Nothing is written of the body.
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (HTTP/1.0 clients, length unknown).
    Close,
}

/// Writes the status line and headers to `out`, choosing the body's framing; returns it and
/// whether the connection can carry another request afterwards.
pub(super) fn encode_head(parts: &Parts, hint: &SizeHint, asked: Asked, out: &mut Vec<u8>) -> (Framing, bool) {
    let status = parts.status;
    let bodiless = asked.head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    // A 1xx or 204 has no content, so no length to state (RFC 9110 section 8.6).
    let no_content = status.is_informational() || status == StatusCode::NO_CONTENT;
    let stated = stated_length(&parts.headers).filter(|_| !no_content);
    let mut framing = match (stated, hint.exact()) {
        (Some(length), _) => Framing::Length(length),
        (None, Some(length)) => Framing::Length(length),
        (None, None) if asked.http10 => Framing::Close,
        (None, None) => Framing::Chunked,
    };
    let says_close =
        parts.headers.get_all(CONNECTION).iter().any(|value| {
            weir_upstream::wire::tokens(value.as_bytes()).any(|token| token.eq_ignore_ascii_case(b"close"))
        });
    let keep_alive = asked.keep_alive && !says_close && (bodiless || framing != Framing::Close);
    out.reserve(256 + parts.headers.len() * 32);
    push_status_line(status, asked.http10, out);
    for (name, value) in &parts.headers {
        if name != TRANSFER_ENCODING && (name != CONTENT_LENGTH || stated.is_some()) {
            push_field(name, value, out);
        }
    }
    // A bodiless status states no length it was not given; a `HEAD` answer only a known one.
    let adds_length = stated.is_none()
        && !status.is_informational()
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::NOT_MODIFIED;
    match framing {
        Framing::Length(length) if adds_length && (!asked.head_request || length > 0) => {
            out.extend_from_slice(b"content-length: ");
            push_number(length, 10, out);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked if !bodiless => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    if !parts.headers.contains_key(DATE) {
        out.extend_from_slice(b"date: ");
        date::push_now(out);
        out.extend_from_slice(b"\r\n");
    }
    if !keep_alive && !says_close && status != StatusCode::SWITCHING_PROTOCOLS {
        out.extend_from_slice(b"connection: close\r\n");
    } else if keep_alive && asked.http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if bodiless {
        framing = Framing::None;
    }
    (framing, keep_alive)
}

/// The status line, in the client's own version (an HTTP/1.0 client is answered in HTTP/1.0).
fn push_status_line(status: StatusCode, http10: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The length the response's `Content-Length` states, if it is one clean number.
fn stated_length(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(CONTENT_LENGTH)?;
    let digits = value.as_bytes();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.to_str().ok()?.parse().ok()
}

/// Why a response could not be written whole.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    #[error("writing to the client: {0}")]
    Write(#[source] io::Error),
    #[error("the response body failed: {0}")]
    Body(#[source] BoxError),
    #[error("the response body did not match its stated length")]
    Length,
}

/// A response body on its way out.
pub(super) struct Sending<B> {
    body: B,
    framing: Framing,
    trailers: bool,
    ended: bool,
    /// The body ended short of its stated length: what came is written, then the connection is cut.
    short: bool,
}

impl<B> Sending<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    pub(super) fn new(body: B, framing: Framing, asked: Asked) -> Self {
        Sending { body, framing, trailers: asked.trailers, ended: framing == Framing::None, short: false }
    }

    /// Writes the head already in `io`'s buffer and the body, flushing whenever the body has
    /// nothing ready, so a streamed response reaches the client as it comes.
    pub(super) fn poll_send<S>(&mut self, cx: &mut Context<'_>, io: &mut ConnIo<S>) -> Poll<Result<(), SendError>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            if self.ended {
                ready!(io.poll_flush_out(cx)).map_err(SendError::Write)?;
                return Poll::Ready(if self.short { Err(SendError::Length) } else { Ok(()) });
            }
            // A chunk's size line goes into the head buffer, which is written before the pieces.
            if io.is_full() || (self.framing == Framing::Chunked && io.has_pieces()) {
                ready!(io.poll_write_out(cx)).map_err(SendError::Write)?;
            }
            let frame = match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => {
                    ready!(io.poll_flush_out(cx)).map_err(SendError::Write)?;
                    return Poll::Pending;
                }
                Poll::Ready(None) => {
                    self.finish(io, None)?;
                    continue;
                }
                Poll::Ready(Some(frame)) => frame.map_err(|error| SendError::Body(error.into()))?,
            };
            match frame.into_data() {
                Ok(data) => self.queue_data(io, data)?,
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        self.finish(io, Some(&trailers))?;
                    }
                }
            }
        }
    }

    fn queue_data<S>(&mut self, io: &mut ConnIo<S>, data: Bytes) -> Result<(), SendError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if data.is_empty() {
            return Ok(());
        }
        match &mut self.framing {
            Framing::Length(left) => {
                let len = data.len() as u64;
                *left = left.checked_sub(len).ok_or(SendError::Length)?;
                io.queue(data, b"");
            }
            Framing::Chunked => {
                push_number(data.len() as u64, 16, io.out());
                io.out().extend_from_slice(b"\r\n");
                io.queue(data, b"\r\n");
            }
            Framing::Close => io.queue(data, b""),
            Framing::None => {}
        }
        Ok(())
    }

    fn finish<S>(&mut self, io: &mut ConnIo<S>, trailers: Option<&HeaderMap>) -> Result<(), SendError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.ended = true;
        match self.framing {
            Framing::Length(0) | Framing::None | Framing::Close => Ok(()),
            Framing::Length(_) => {
                self.short = true;
                Ok(())
            }
            Framing::Chunked => {
                encode_last_chunk(trailers.filter(|_| self.trailers), io.out());
                Ok(())
            }
        }
    }
}
