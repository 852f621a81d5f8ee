//! The request head as weir writes it to an upstream, and how the body after it is framed.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::response;

/// How the request body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding, ended by a zero-length chunk (and trailers, if the body has them).
    Chunked,
}

/// Writes the request line and headers to `out`, adding the framing header the body needs, and
/// says how the body is framed. A `Content-Length` the request carries is kept (the client's, checked
/// at the edge); a body with no length is sent chunked.
pub fn encode_head(parts: &Parts, body_ended: bool, exact_length: Option<u64>, out: &mut Vec<u8>) -> Framing {
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(if target.is_empty() { b"/" } else { target.as_bytes() });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // A `Content-Length` that does not parse (the edge has checked the client's) is dropped.
    let declared = response::content_length(&parts.headers).ok().flatten();
    for (name, value) in &parts.headers {
        // Framing is weir's to choose.
        if name != TRANSFER_ENCODING && (name != CONTENT_LENGTH || declared.is_some()) {
            push_field(name, value, out);
        }
    }
    let framing = match (declared, body_ended, exact_length) {
        (Some(length), _, _) => Framing::Length(length),
        (None, true, _) => {
            if expects_body(&parts.method) {
                out.extend_from_slice(b"content-length: 0\r\n");
            }
            Framing::Empty
        }
        (None, false, Some(length)) => {
            out.extend_from_slice(b"content-length: ");
            push_number(length, 10, out);
            out.extend_from_slice(b"\r\n");
            Framing::Length(length)
        }
        (None, false, None) => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            Framing::Chunked
        }
    };
    out.extend_from_slice(b"\r\n");
    framing
}

/// Methods whose empty body is still stated, as some servers want a length for them.
fn expects_body(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

/// Appends one data frame of a chunked body: its size in hex, the bytes, the line end.
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        // A zero-length chunk would end the body.
        return;
    }
    push_number(data.len() as u64, 16, out);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the end of a chunked body, with its trailers.
pub fn encode_last_chunk(trailers: Option<&HeaderMap>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        push_field(name, value, out);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends one `name: value` line.
pub fn push_field(name: &HeaderName, value: &HeaderValue, out: &mut Vec<u8>) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in base 10 or 16 (lowercase), without allocating.
pub fn push_number(mut n: u64, base: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[(n % base) as usize];
        n /= base;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}
