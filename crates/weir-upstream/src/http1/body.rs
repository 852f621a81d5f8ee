//! An upstream's response body, read straight off its connection. When the body has been read to
//! its end, a connection that can carry another request is handed back.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};

use super::response::BodyFraming;
use super::{Http1Connection, Http1Error};

/// How much of a chunked body's framing is accepted: longer lines or larger trailer sections are
/// refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Bytes in a chunk-size line, digits and extensions together.
    pub line: usize,
    /// Bytes in the trailer section.
    pub trailer_bytes: usize,
    /// Fields in the trailer section.
    pub trailers: usize,
}

impl ChunkLimits {
    /// What weir accepts from an upstream.
    pub const UPSTREAM: ChunkLimits = ChunkLimits { line: 4096, trailer_bytes: 16 * 1024, trailers: 32 };
}

/// The body of a response read from an upstream HTTP/1.1 connection.
pub struct Http1Body {
    connection: Option<Box<Http1Connection>>,
    state: State,
    keep_alive: bool,
}

enum State {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

impl Http1Body {
    pub(super) fn new(connection: Box<Http1Connection>, framing: BodyFraming, keep_alive: bool) -> Self {
        let state = match framing {
            BodyFraming::Empty | BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(length) => State::Length(length),
            BodyFraming::Chunked => State::Chunked(Chunk::Size),
            BodyFraming::UntilClose => State::UntilClose,
        };
        Http1Body { connection: Some(connection), state, keep_alive }
    }

    /// A body with nothing to read and no connection (the connection went elsewhere).
    pub(super) fn empty() -> Self {
        Http1Body { connection: None, state: State::Done, keep_alive: false }
    }

    /// The connection, once the body has been read to its end and the connection can carry another
    /// request (it said nothing of closing, and sent nothing more than the response).
    pub fn take_reusable(&mut self) -> Option<Box<Http1Connection>> {
        let done = matches!(self.state, State::Done);
        let clean = self.connection.as_ref().is_some_and(|c| c.read.is_empty());
        if done && self.keep_alive && clean { self.connection.take() } else { None }
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Http1Error>>> {
        let Some(connection) = self.connection.as_mut() else { return Poll::Ready(None) };
        loop {
            match &mut self.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) => {
                    if !connection.read.is_empty() {
                        let data = take_length(&mut connection.read, left);
                        if *left == 0 {
                            self.state = State::Done;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                State::UntilClose => {
                    if !connection.read.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(connection.read.split().freeze()))));
                    }
                }
                State::Chunked(chunk) => match chunk.decode(&mut connection.read, ChunkLimits::UPSTREAM) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(trailers)) => {
                        self.state = State::Done;
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok(Decoded::End) => {
                        self.state = State::Done;
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::More) => {}
                    Err(error) => return Poll::Ready(Some(Err(error))),
                },
            }
            let read = ready!(connection.poll_fill(cx)).map_err(Http1Error::Read);
            match read {
                Ok(0) if matches!(self.state, State::UntilClose) => {
                    self.state = State::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => return Poll::Ready(Some(Err(Http1Error::ClosedInBody))),
                Ok(_) => {}
                Err(error) => return Poll::Ready(Some(Err(error))),
            }
        }
    }
}

impl Body for Http1Body {
    type Data = Bytes;
    type Error = Http1Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Http1Error>>> {
        let this = self.get_mut();
        let polled = this.poll_data(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            // What is left on the connection is unknown: it is not used again.
            this.state = State::Done;
            this.connection = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(left) => SizeHint::with_exact(left),
            State::Chunked(_) | State::UntilClose => SizeHint::default(),
        }
    }
}

/// Takes the front of `buf`, at most the `left` bytes a length-delimited body still has, and counts
/// them off `left`.
pub fn take_length(buf: &mut BytesMut, left: &mut u64) -> Bytes {
    let take = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
    *left -= take as u64;
    buf.split_to(take).freeze()
}

/// Where a chunked body's decoding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the line end after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
}

/// What one step of decoding found.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    End,
    /// More bytes are needed.
    More,
}

impl Chunk {
    /// Decodes from the front of `buf`, consuming what it returns.
    pub fn decode(&mut self, buf: &mut BytesMut, limits: ChunkLimits) -> Result<Decoded, Http1Error> {
        loop {
            match *self {
                Chunk::Size => {
                    let Some(end) = find_line_end(buf, limits.line)? else { return Ok(Decoded::More) };
                    let size = parse_chunk_size(&buf[..end])?;
                    buf.advance(end + 2);
                    *self = if size == 0 { Chunk::Trailers } else { Chunk::Data(size) };
                }
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    *self = if take as u64 == left { Chunk::DataEnd } else { Chunk::Data(left - take as u64) };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                Chunk::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Http1Error::Protocol("chunk data not followed by a line end"));
                    }
                    buf.advance(2);
                    *self = Chunk::Size;
                }
                Chunk::Trailers => return decode_trailers(buf, limits),
            }
        }
    }
}

/// Where the line at the front of `buf` ends (its CR), if it has all arrived.
fn find_line_end(buf: &[u8], max: usize) -> Result<Option<usize>, Http1Error> {
    match buf.windows(2).position(|pair| pair == b"\r\n") {
        Some(end) if end <= max => Ok(Some(end)),
        None if buf.len() <= max => Ok(None),
        _ => Err(Http1Error::Protocol("chunk-size line too long")),
    }
}

/// A chunk-size line: hex digits, then optional whitespace and `;` extensions, which are ignored.
fn parse_chunk_size(line: &[u8]) -> Result<u64, Http1Error> {
    let bad = Http1Error::Protocol("malformed chunk size");
    let digits_end = line.iter().position(|b| !b.is_ascii_hexdigit()).unwrap_or(line.len());
    let (digits, rest) = line.split_at(digits_end);
    if digits.is_empty() || digits.len() > 15 {
        return Err(bad);
    }
    let rest = rest.trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return Err(bad);
    }
    let digits = std::str::from_utf8(digits).map_err(|_| Http1Error::Protocol("malformed chunk size"))?;
    u64::from_str_radix(digits, 16).map_err(|_| bad)
}

/// The trailer section after the last chunk, up to and including its empty line.
fn decode_trailers(buf: &mut BytesMut, limits: ChunkLimits) -> Result<Decoded, Http1Error> {
    if buf.starts_with(b"\r\n") {
        buf.advance(2);
        return Ok(Decoded::End);
    }
    // Made only for a body that has trailers, which few do.
    let mut slots = vec![httparse::EMPTY_HEADER; limits.trailers];
    let (length, fields) = match httparse::parse_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete((length, _))) if length > limits.trailer_bytes => {
            return Err(Http1Error::Protocol("trailers too large"));
        }
        Ok(httparse::Status::Complete(parsed)) => parsed,
        Ok(httparse::Status::Partial) if buf.len() > limits.trailer_bytes => {
            return Err(Http1Error::Protocol("trailers too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(Decoded::More),
        Err(_) => return Err(Http1Error::Protocol("malformed trailers")),
    };
    let mut trailers = HeaderMap::with_capacity(fields.len());
    for field in fields.iter() {
        let name =
            HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| Http1Error::Protocol("malformed trailer"))?;
        let value = HeaderValue::from_bytes(field.value).map_err(|_| Http1Error::Protocol("malformed trailer"))?;
        trailers.append(name, value);
    }
    buf.advance(length);
    Ok(Decoded::Trailers(trailers))
}
