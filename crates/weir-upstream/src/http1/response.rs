//! Reading an upstream's response head: its status, headers, whether the connection can carry
//! another request, and how the body after it is delimited. Anything ambiguous is refused.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};

use super::Http1Error;

/// Headers in one response head, at most (what hyper allows too).
pub const MAX_HEADERS: usize = 100;
/// Bytes in one response head, at most.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: BodyFraming,
    /// The connection can carry another request once the body is read.
    pub keep_alive: bool,
}

/// Takes one response head off the front of `buf`. `Ok(None)`: more bytes are needed.
/// `head_request`: the request was `HEAD`, so the response has no body whatever it says.
pub fn parse(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, Http1Error> {
    // Left uninitialised: the parser fills only as many as the head has (this runs per response).
    let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut response, buf, &mut slots);
    let length = match parsed {
        Ok(httparse::Status::Complete(length)) if length < MAX_HEAD_BYTES => length,
        Ok(httparse::Status::Complete(_)) => return Err(Http1Error::Protocol("response head too large")),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(Http1Error::Protocol("response head too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Http1Error::Protocol("too many response headers")),
        Err(_) => return Err(Http1Error::Protocol("malformed response head")),
    };
    let status = response.code.and_then(|code| StatusCode::from_u16(code).ok());
    let status = status.ok_or(Http1Error::Protocol("malformed status code"))?;
    let version = if response.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    // Where each header's name and value sit in the head (under 64 KiB, so `u16`), so their bytes can
    // be shared once the head is split off, not copied.
    let start = buf.as_ptr() as usize;
    let offset = |field: &[u8]| (field.as_ptr() as usize - start) as u16;
    let mut spans = [(0u16, 0u16, 0u16, 0u16); MAX_HEADERS];
    let count = response.headers.len();
    for (span, header) in spans.iter_mut().zip(response.headers.iter()) {
        let (name, value) = (offset(header.name.as_bytes()), offset(header.value));
        *span = (name, name + header.name.len() as u16, value, value + header.value.len() as u16);
    }
    let head = buf.split_to(length).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    for &(name_start, name_end, value_start, value_end) in &spans[..count] {
        let name = HeaderName::from_bytes(&head[usize::from(name_start)..usize::from(name_end)])
            .map_err(|_| Http1Error::Protocol("malformed header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(usize::from(value_start)..usize::from(value_end)))
            .map_err(|_| Http1Error::Protocol("malformed header value"))?;
        headers.append(name, value);
    }
    let framing = body_framing(status, &headers, head_request)?;
    let keep_alive = framing != BodyFraming::UntilClose && keeps_alive(version, &headers);
    Ok(Some(Head { status, version, headers, framing, keep_alive }))
}

/// RFC 9112 section 6.3, strictly: a response with both `Transfer-Encoding` and `Content-Length`, or
/// with `Content-Length` values that disagree, is refused rather than guessed at.
fn body_framing(status: StatusCode, headers: &HeaderMap, head_request: bool) -> Result<BodyFraming, Http1Error> {
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(BodyFraming::Empty);
    }
    if let Some(last) = headers.get_all(TRANSFER_ENCODING).iter().next_back() {
        if headers.contains_key(CONTENT_LENGTH) {
            return Err(Http1Error::Protocol("both Transfer-Encoding and Content-Length"));
        }
        let chunked_last = last
            .as_bytes()
            .rsplit(|&b| b == b',')
            .next()
            .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        return Ok(if chunked_last { BodyFraming::Chunked } else { BodyFraming::UntilClose });
    }
    let length = content_length(headers)?;
    Ok(length.map_or(BodyFraming::UntilClose, BodyFraming::Length))
}

/// The length `Content-Length` states: plain digits, repeated values (in one field or several) only
/// if they agree. `Ok(None)`: no `Content-Length`.
pub(super) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Http1Error> {
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let parsed = parse_length(item.trim_ascii()).ok_or(Http1Error::Protocol("malformed Content-Length"))?;
            if length.is_some_and(|seen| seen != parsed) {
                return Err(Http1Error::Protocol("conflicting Content-Length values"));
            }
            length = Some(parsed);
        }
    }
    Ok(length)
}

fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// HTTP/1.1 keeps the connection unless it says `close`; HTTP/1.0 only if it says `keep-alive`.
fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    let says = |token: &[u8]| {
        headers.get_all(CONNECTION).iter().any(|value| {
            value.as_bytes().split(|&b| b == b',').any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
        })
    };
    if version == Version::HTTP_10 { says(b"keep-alive") } else { !says(b"close") }
}
