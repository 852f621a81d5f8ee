//! HTTP/1.1 to upstream endpoints, spoken by weir itself.
//!
//! One request at a time on a connection, all on the request's own task: the head (and as much of
//! the body as is ready) is written, the body streamed after it while the response head is awaited,
//! and the response body is then read off the same connection as the client asks for it. No task or
//! channel stands between the request and its connection, and the connection's buffers are kept
//! from one request to the next.
//!
//! What an upstream sends is checked as strictly as what a client sends: a head over 64 KiB or 100
//! fields, a body framed two ways, a malformed chunk, or bytes after the response all end the
//! connection and fail the request.

mod body;
mod names;
mod request;
mod response;
mod scan;
mod split;
mod stream;
mod upgraded;

#[cfg(test)]
mod tests;

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use http::header::UPGRADE;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncWrite};

pub use body::Http1Body;
pub use stream::Stream;
pub use upgraded::{PendingUpgrade, Upgraded};

/// The HTTP/1.1 wire pieces weir's server shares with its upstream client: chunked coding both
/// ways and field lines.
pub mod wire {
    pub use super::body::{Chunk, ChunkLimits, Decoded, take_length};
    pub use super::names::field_name;
    pub use super::request::{encode_last_chunk, push_field, push_number};
    pub use super::response::tokens;
    pub use super::scan::{find_byte, find_line_break, is_field_byte, is_field_value};
    pub use super::split::{FieldSlots, FieldSpan, LineEnds, SplitError, SplitHead, split_head};
    pub use super::upgraded::Rewound;
}

use request::Framing;
use response::Head;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bytes read from the socket at a time, at most.
const READ_SIZE: usize = 8 * 1024;
/// Body bytes gathered before they are written; a body arriving faster is written in pieces.
const WRITE_BATCH: usize = 64 * 1024;
/// Write buffer kept by a connection between requests, at most (heads need far less).
const KEPT_WRITE_CAPACITY: usize = 8 * 1024;

/// Why an exchange on an upstream HTTP/1.1 connection failed.
#[derive(Debug, thiserror::Error)]
pub enum Http1Error {
    #[error("writing the request: {0}")]
    Write(#[source] io::Error),
    #[error("reading the response: {0}")]
    Read(#[source] io::Error),
    #[error("the upstream closed the connection before responding")]
    ClosedBeforeResponse,
    #[error("the upstream closed the connection before the response body's end")]
    ClosedInBody,
    #[error("the upstream's response is malformed: {0}")]
    Protocol(&'static str),
    #[error("reading the request body: {0}")]
    RequestBody(#[source] BoxError),
}

/// A failed send: `Unsent` gives the request back when not a byte of it reached the connection, so
/// it can go on another.
pub enum SendError<B> {
    Unsent(Box<Request<B>>, Http1Error),
    Failed(Http1Error),
}

/// An upstream HTTP/1.1 connection between requests.
pub struct Http1Connection {
    stream: Stream,
    /// Bytes read and not yet taken.
    read: BytesMut,
    /// Bytes to write: a request head and the body after it.
    write: Vec<u8>,
    /// A large body piece of a length-framed body, written after `write` without being copied.
    /// Here rather than in the send's future, which every request moves.
    piece: Option<bytes::Bytes>,
}

impl Http1Connection {
    pub fn new(stream: Stream) -> Box<Self> {
        Box::new(Http1Connection { stream, read: BytesMut::new(), write: Vec::new(), piece: None })
    }

    /// Whether an idle connection can take a request: the upstream has not closed it, and has sent
    /// nothing unasked (which would be taken for the next response).
    pub fn is_usable(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut probe = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut probe);
        matches!(Pin::new(&mut self.stream).poll_read(&mut cx, &mut buf), Poll::Pending)
    }

    /// Waits until the stream has something to read (or has closed): for tests that wait on an event.
    #[cfg(test)]
    async fn stream_ready_for_read(&self) {
        if let Stream::Tcp(tcp) = &self.stream {
            tcp.readable().await.unwrap();
        }
    }

    /// Reads more of the response into the buffer. `Ok(0)`: the upstream closed the connection.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_SIZE / 4 {
            self.read.reserve(READ_SIZE);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.read)
    }

    /// Sends a request and returns the response once its head has arrived; the body is read from the
    /// connection as the response's body is polled.
    ///
    /// The head is encoded when this is called; the future only does the I/O. (A plain function
    /// rather than an `async fn`, whose future would hold the request twice: as it came, and taken
    /// apart.)
    pub fn send<B>(
        mut self: Box<Self>,
        request: Request<B>,
    ) -> impl Future<Output = Result<Response<Http1Body>, SendError<B>>>
    where
        B: Body + Unpin,
        B::Error: Into<BoxError>,
    {
        let (parts, mut body) = request.into_parts();
        let head_request = parts.method == Method::HEAD;
        let upgrade = parts.headers.contains_key(UPGRADE);
        self.write.clear();
        self.piece = None;
        let framing = request::encode_head(&parts, body.is_end_stream(), body.size_hint().exact(), &mut self.write);
        let mut sending = Sending {
            framing,
            written: 0,
            body_done: framing == Framing::Empty,
            flushed: false,
            wrote_any: false,
            touched: false,
        };
        async move {
            let exchanged = poll_fn(|cx| self.poll_exchange(cx, &mut sending, &mut body, head_request)).await;
            let head = match exchanged {
                Ok(head) => head,
                Err(error) if !sending.wrote_any && !sending.touched => {
                    return Err(SendError::Unsent(Box::new(Request::from_parts(parts, body)), error));
                }
                Err(error) => return Err(SendError::Failed(error)),
            };
            // A response that came before the request's end leaves the connection mid-request.
            let keep_alive = head.keep_alive && sending.body_done && sending.flushed;
            Ok(self.into_response(head, keep_alive, upgrade))
        }
    }

    fn into_response(self: Box<Self>, head: Head, keep_alive: bool, upgrade: bool) -> Response<Http1Body> {
        let switched = head.status == StatusCode::SWITCHING_PROTOCOLS && upgrade;
        let mut response = Response::new(Http1Body::empty());
        *response.status_mut() = head.status;
        *response.version_mut() = head.version;
        *response.headers_mut() = head.headers;
        if switched {
            let Http1Connection { stream, read, .. } = *self;
            response.extensions_mut().insert(PendingUpgrade::new(Upgraded::new(stream, read)));
        } else {
            *response.body_mut() = Http1Body::new(self, head.framing, keep_alive);
        }
        response
    }

    /// Writes what there is to write, then looks for the response head. A response may come before
    /// the request's body is all sent (an early refusal): it is taken as it is.
    fn poll_exchange<B>(
        &mut self,
        cx: &mut Context<'_>,
        sending: &mut Sending,
        body: &mut B,
        head_request: bool,
    ) -> Poll<Result<Head, Http1Error>>
    where
        B: Body + Unpin,
        B::Error: Into<BoxError>,
    {
        if !sending.flushed
            && let Poll::Ready(Err(error)) = self.poll_send(cx, sending, body)
        {
            return Poll::Ready(Err(error));
        }
        loop {
            // Nothing read yet is the usual case right after the request is written: no head to
            // look for.
            if !self.read.is_empty()
                && let Some(head) = response::parse(&mut self.read, head_request)?
            {
                if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
                    // 100 Continue, 103 Early Hints: the final response follows.
                    continue;
                }
                if head.status == StatusCode::SWITCHING_PROTOCOLS && !sending.flushed {
                    return Poll::Ready(Err(Http1Error::Protocol("switched protocols before the request's end")));
                }
                return Poll::Ready(Ok(head));
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) if self.read.is_empty() => return Poll::Ready(Err(Http1Error::ClosedBeforeResponse)),
                Ok(0) => return Poll::Ready(Err(Http1Error::Protocol("connection closed inside the response head"))),
                Ok(_) => {}
                Err(error) => return Poll::Ready(Err(Http1Error::Read(error))),
            }
        }
    }

    /// Moves the request forward: gathers ready body frames, writes, and flushes at the end.
    /// `Ready(Ok)` once all of it is written and flushed.
    fn poll_send<B>(
        &mut self,
        cx: &mut Context<'_>,
        sending: &mut Sending,
        body: &mut B,
    ) -> Poll<Result<(), Http1Error>>
    where
        B: Body + Unpin,
        B::Error: Into<BoxError>,
    {
        loop {
            while !sending.body_done && self.piece.is_none() && self.write.len() - sending.written < WRITE_BATCH {
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        sending.touched = true;
                        sending.encode(frame, &mut self.write, &mut self.piece)?;
                    }
                    Poll::Ready(None) => {
                        sending.finish(None, &mut self.write)?;
                    }
                    Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(Http1Error::RequestBody(error.into()))),
                    Poll::Pending => break,
                }
            }
            if sending.written < self.write.len() || self.piece.is_some() {
                let n = ready!(self.poll_write_out(cx, sending.written))?;
                sending.advance(n, self.write.len(), &mut self.piece);
                continue;
            }
            self.write.clear();
            sending.written = 0;
            if !sending.body_done {
                // Waiting for the client's body.
                return Poll::Pending;
            }
            ready!(Pin::new(&mut self.stream).poll_flush(cx)).map_err(Http1Error::Write)?;
            sending.flushed = true;
            if self.write.capacity() > KEPT_WRITE_CAPACITY {
                // A large body grew the buffer: an idle connection does not keep that much.
                self.write = Vec::new();
            }
            return Poll::Ready(Ok(()));
        }
    }
}

impl Http1Connection {
    /// Writes what is buffered, and a large body piece after it in the same call when there is one.
    fn poll_write_out(&mut self, cx: &mut Context<'_>, written: usize) -> Poll<Result<usize, Http1Error>> {
        let buffered = &self.write[written..];
        let stream = Pin::new(&mut self.stream);
        let n = match &self.piece {
            Some(piece) => {
                ready!(stream.poll_write_vectored(cx, &[io::IoSlice::new(buffered), io::IoSlice::new(piece)]))
            }
            None => ready!(stream.poll_write(cx, buffered)),
        }
        .map_err(Http1Error::Write)?;
        if n == 0 {
            return Poll::Ready(Err(Http1Error::Write(io::ErrorKind::WriteZero.into())));
        }
        Poll::Ready(Ok(n))
    }
}

/// Body pieces at least this long are written from where they are, not copied into the write buffer.
const UNCOPIED_PIECE: usize = 1024;

/// How far a request's sending has got.
struct Sending {
    framing: Framing,
    /// Bytes of the write buffer already written.
    written: usize,
    body_done: bool,
    flushed: bool,
    /// A byte of the request reached the connection.
    wrote_any: bool,
    /// A body frame was taken from the request: it could not be sent again.
    touched: bool,
}

impl Sending {
    /// Counts `n` bytes written: the buffer's (`buffered` long) first, then the piece's.
    fn advance(&mut self, n: usize, buffered: usize, piece: &mut Option<bytes::Bytes>) {
        let from_buffer = n.min(buffered - self.written);
        self.written += from_buffer;
        self.wrote_any = true;
        if let Some(rest) = piece {
            bytes::Buf::advance(rest, n - from_buffer);
            if rest.is_empty() {
                *piece = None;
            }
        }
    }

    fn encode(
        &mut self,
        frame: Frame<impl bytes::Buf>,
        out: &mut Vec<u8>,
        uncopied: &mut Option<bytes::Bytes>,
    ) -> Result<(), Http1Error> {
        let frame = match frame.into_data() {
            Ok(mut data) if matches!(self.framing, Framing::Length(_)) && data.remaining() >= UNCOPIED_PIECE => {
                // Bytes hand themselves over without a copy.
                let piece = data.copy_to_bytes(data.remaining());
                self.count_length(piece.len())?;
                *uncopied = Some(piece);
                return Ok(());
            }
            Ok(mut data) => {
                while data.has_remaining() {
                    let piece = data.chunk();
                    let len = piece.len();
                    self.encode_data(piece, out)?;
                    data.advance(len);
                }
                return Ok(());
            }
            Err(frame) => frame,
        };
        match frame.into_trailers() {
            Ok(trailers) => self.finish(Some(&trailers), out),
            Err(_) => Ok(()),
        }
    }

    fn encode_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Http1Error> {
        match &mut self.framing {
            Framing::Length(_) => {
                self.count_length(data.len())?;
                out.extend_from_slice(data);
            }
            Framing::Chunked => request::encode_chunk(data, out),
            Framing::Empty if data.is_empty() => {}
            Framing::Empty => return Err(Http1Error::RequestBody("a request body where none was framed".into())),
        }
        Ok(())
    }

    /// Takes `len` bytes off what a length-framed body has left to send.
    fn count_length(&mut self, len: usize) -> Result<(), Http1Error> {
        if let Framing::Length(left) = &mut self.framing {
            *left = left
                .checked_sub(len as u64)
                .ok_or(Http1Error::RequestBody("the request body is longer than its Content-Length".into()))?;
        }
        Ok(())
    }

    /// The body's end: the last chunk (with trailers) for a chunked body; a length body must be complete.
    fn finish(&mut self, trailers: Option<&http::HeaderMap>, out: &mut Vec<u8>) -> Result<(), Http1Error> {
        match self.framing {
            Framing::Chunked => request::encode_last_chunk(trailers, out),
            Framing::Length(0) | Framing::Empty => {}
            Framing::Length(_) => {
                return Err(Http1Error::RequestBody("the request body is shorter than its Content-Length".into()));
            }
        }
        self.body_done = true;
        Ok(())
    }
}
