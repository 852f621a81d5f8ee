//! Reading an upstream's response head: its status, headers, whether the connection can carry
//! another request, and how the body after it is delimited. Anything ambiguous is refused.

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};

use super::Http1Error;
use super::names::field_name;
use super::split::{FieldSlots, LineEnds, SplitError};

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

/// Headers the response's map has room for beyond its own.
const ROOM_FOR_ADDED: usize = 2;

/// Takes one response head off the front of `buf`. `Ok(None)`: more bytes are needed.
/// `head_request`: the request was `HEAD`, so the response has no body whatever it says.
pub fn parse(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, Http1Error> {
    let mut slots = FieldSlots::default();
    let split = slots.split(buf, MAX_HEADERS, LineEnds::CrlfOrLf);
    let split = match split {
        Ok(Some(split)) if split.length < MAX_HEAD_BYTES => split,
        Ok(Some(_)) => return Err(Http1Error::Protocol("response head too large")),
        Ok(None) if buf.len() >= MAX_HEAD_BYTES => return Err(Http1Error::Protocol("response head too large")),
        Ok(None) => return Ok(None),
        Err(SplitError::TooManyFields) => return Err(Http1Error::Protocol("too many response headers")),
        Err(_) => return Err(Http1Error::Protocol("malformed response head")),
    };
    let (version, status) = status_line(&buf[split.start_line.clone()])?;
    let fields = slots.fields(&split);
    let head = buf.split_to(split.length).freeze();
    // Room for the few a gateway adds to a response (a request id, `Connection`), so they go in
    // without the map growing.
    let mut headers = HeaderMap::with_capacity(fields.len() + ROOM_FOR_ADDED);
    let mut framing_fields = FramingFields::default();
    for field in fields {
        let name = field_name(&head[field.name()]).map_err(|_| Http1Error::Protocol("malformed header name"))?;
        // Shared with the head's bytes, not copied.
        let value = HeaderValue::from_maybe_shared(head.slice(field.value()))
            .map_err(|_| Http1Error::Protocol("malformed header value"))?;
        if framing_fields.note(&name, value.as_bytes()) {
            headers.append(name, value);
        }
    }
    let framing = framing_fields.body_framing(status, head_request)?;
    let keep_alive = framing != BodyFraming::UntilClose && framing_fields.keeps_alive(version);
    Ok(Some(Head { status, version, headers, framing, keep_alive }))
}

/// `HTTP-version SP 3DIGIT [SP reason-phrase]`; the reason is not kept (nor checked).
fn status_line(line: &[u8]) -> Result<(Version, StatusCode), Http1Error> {
    let version = match line.get(..9) {
        Some(b"HTTP/1.1 ") => Version::HTTP_11,
        Some(b"HTTP/1.0 ") => Version::HTTP_10,
        _ => return Err(Http1Error::Protocol("malformed status line")),
    };
    let code = line.get(9..12).filter(|_| line.len() == 12 || line[12] == b' ');
    let status = code.and_then(|code| StatusCode::from_bytes(code).ok());
    Ok((version, status.ok_or(Http1Error::Protocol("malformed status code"))?))
}

/// What the framing rules need from a head, noted field by field as the head is read (no lookups
/// in the map afterwards).
#[derive(Debug)]
struct FramingFields {
    /// The agreed `Content-Length`, once one is seen; an error for a malformed or disagreeing one,
    /// which matters only when the response has a body.
    length: Result<Option<u64>, &'static str>,
    /// Whether the last coding of the last `Transfer-Encoding` is `chunked`, once one is seen.
    chunked_last: Option<bool>,
    close: bool,
    keep_alive: bool,
}

impl Default for FramingFields {
    fn default() -> Self {
        FramingFields { length: Ok(None), chunked_last: None, close: false, keep_alive: false }
    }
}

impl FramingFields {
    /// Notes one field; false for a `Connection` that says only `keep-alive` or `close`, which this
    /// connection has acted on and nobody after it reads (a proxy would strip it anyway).
    fn note(&mut self, name: &HeaderName, value: &[u8]) -> bool {
        if name == CONTENT_LENGTH {
            if let Ok(length) = self.length {
                self.length = agreed_length(length, value);
            }
        } else if name == TRANSFER_ENCODING {
            let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
            self.chunked_last = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == CONNECTION {
            let mut others = false;
            for token in tokens(value) {
                let close = token.eq_ignore_ascii_case(b"close");
                let keep_alive = token.eq_ignore_ascii_case(b"keep-alive");
                self.close |= close;
                self.keep_alive |= keep_alive;
                others |= !(close || keep_alive);
            }
            return others;
        }
        true
    }

    /// RFC 9112 section 6.3, strictly: a response with both `Transfer-Encoding` and
    /// `Content-Length`, or with `Content-Length` values that disagree, is refused rather than
    /// guessed at.
    fn body_framing(&self, status: StatusCode, head_request: bool) -> Result<BodyFraming, Http1Error> {
        if head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok(BodyFraming::Empty);
        }
        match (self.chunked_last, &self.length) {
            (Some(_), Ok(Some(_)) | Err(_)) => Err(Http1Error::Protocol("both Transfer-Encoding and Content-Length")),
            (Some(true), Ok(None)) => Ok(BodyFraming::Chunked),
            (Some(false), Ok(None)) => Ok(BodyFraming::UntilClose),
            (None, Ok(length)) => Ok(length.map_or(BodyFraming::UntilClose, BodyFraming::Length)),
            (None, Err(malformed)) => Err(Http1Error::Protocol(malformed)),
        }
    }

    /// HTTP/1.1 keeps the connection unless it says `close`; HTTP/1.0 only if it says `keep-alive`.
    fn keeps_alive(&self, version: Version) -> bool {
        if version == Version::HTTP_10 { self.keep_alive } else { !self.close }
    }
}

/// The items of a comma-separated field value (`Connection`, `TE`...), trimmed of whitespace.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// The length `Content-Length` states: plain digits, repeated values (in one field or several) only
/// if they agree. `Ok(None)`: no `Content-Length`.
pub(super) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Http1Error> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    values.try_fold(None, |length, value| agreed_length(length, value.as_bytes())).map_err(Http1Error::Protocol)
}

/// The length so far with one more `Content-Length` value (a comma-separated list) taken in.
fn agreed_length(mut length: Option<u64>, value: &[u8]) -> Result<Option<u64>, &'static str> {
    for item in value.split(|&b| b == b',') {
        let parsed = parse_length(item.trim_ascii()).ok_or("malformed Content-Length")?;
        if length.is_some_and(|seen| seen != parsed) {
            return Err("conflicting Content-Length values");
        }
        length = Some(parsed);
    }
    Ok(length)
}

fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}
