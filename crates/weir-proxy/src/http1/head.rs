//! A client's request head, taken off the front of the read buffer. The framing guard has already
//! checked its syntax and framing strictly; what the guard let through and the `http` types still
//! cannot hold (a target `http::Uri` refuses, say) is a malformed request all the same.

use std::ops::Range;

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use weir_upstream::wire::{FieldSlots, LineEnds, field_name, tokens};

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) method: Method,
    pub(super) uri: Uri,
    pub(super) version: Version,
    pub(super) headers: HeaderMap,
    pub(super) framing: BodyFraming,
    /// The client lets the connection carry another request.
    pub(super) keep_alive: bool,
    /// The client waits for `100 Continue` before sending the body.
    pub(super) expect_continue: bool,
    /// The client asks to switch protocols (`Connection: upgrade` and an `Upgrade` field).
    pub(super) upgrade: bool,
    /// The client takes trailers in a chunked response (`TE: trailers`).
    pub(super) trailers: bool,
}

/// The head could not be represented: answered as a malformed request line.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Malformed;

/// Takes one request head off the front of `buf`. `Ok(None)`: more bytes are needed.
pub(super) fn parse(buf: &mut BytesMut, max_headers: usize) -> Result<Option<Head>, Malformed> {
    let mut slots = FieldSlots::default();
    let split = slots.split(buf, max_headers, LineEnds::Crlf);
    let Some(split) = split.map_err(|_| Malformed)? else { return Ok(None) };
    let fields = slots.fields(&split);
    let (method, target, version) = request_line(&buf[split.start_line.clone()]).ok_or(Malformed)?;
    let target = split.start_line.start + target.start..split.start_line.start + target.end;
    let head = buf.split_to(split.length).freeze();
    // The target and the values share the head's bytes, not copies.
    let uri = Uri::from_maybe_shared(head.slice(target)).map_err(|_| Malformed)?;
    let mut headers = HeaderMap::with_capacity(fields.len() + super::ADDED_HEADERS);
    let mut noted = Noted::default();
    for field in fields {
        let name = field_name(&head[field.name()]).map_err(|_| Malformed)?;
        let value = head.slice(field.value());
        noted.note(&name, &value);
        headers.append(name, HeaderValue::from_maybe_shared(value).map_err(|_| Malformed)?);
    }
    Ok(Some(noted.into_head(method, uri, version, headers)))
}

/// `method SP request-target SP HTTP-version`: the method, where the target sits in the line, and
/// the version.
fn request_line(line: &[u8]) -> Option<(Method, Range<usize>, Version)> {
    let first = line.iter().position(|&b| b == b' ')?;
    let last = line.iter().rposition(|&b| b == b' ').filter(|&last| last > first)?;
    let version = match &line[last + 1..] {
        b"HTTP/1.1" => Version::HTTP_11,
        b"HTTP/1.0" => Version::HTTP_10,
        _ => return None,
    };
    let method = Method::from_bytes(&line[..first]).ok()?;
    Some((method, first + 1..last, version))
}

/// What the server needs from a head's fields, noted field by field as the head is read (no
/// lookups in the map afterwards). The guard has already refused ambiguous framing.
#[derive(Debug, Default)]
struct Noted {
    /// A `Transfer-Encoding`: the guard lets through only a single `chunked` coding.
    chunked: bool,
    /// The first `Content-Length` (the guard refuses values that disagree).
    length: Option<Option<u64>>,
    /// The first `Expect` says `100-continue`.
    expect: Option<bool>,
    upgrade: bool,
    /// Tokens of `Connection`, in any of its lines.
    close: bool,
    keep_alive: bool,
    connection_upgrade: bool,
    /// `TE` holds `trailers`.
    trailers: bool,
}

impl Noted {
    fn note(&mut self, name: &HeaderName, value: &[u8]) {
        if *name == CONTENT_LENGTH {
            self.length.get_or_insert_with(|| std::str::from_utf8(value).ok()?.parse().ok());
        } else if *name == TRANSFER_ENCODING {
            self.chunked = true;
        } else if *name == CONNECTION {
            for token in tokens(value) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                self.connection_upgrade |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if *name == EXPECT {
            self.expect.get_or_insert(value.eq_ignore_ascii_case(b"100-continue"));
        } else if *name == UPGRADE {
            self.upgrade = true;
        } else if *name == TE {
            self.trailers |= tokens(value).any(|token| token.eq_ignore_ascii_case(b"trailers"));
        }
    }

    fn into_head(self, method: Method, uri: Uri, version: Version, headers: HeaderMap) -> Head {
        let framing = match (self.chunked, self.length.flatten()) {
            (true, _) => BodyFraming::Chunked,
            (false, Some(0) | None) => BodyFraming::None,
            (false, Some(length)) => BodyFraming::Length(length),
        };
        let keep_alive = if version == Version::HTTP_10 { self.keep_alive } else { !self.close };
        let expect_continue =
            version == Version::HTTP_11 && framing != BodyFraming::None && self.expect.unwrap_or(false);
        let upgrade = self.upgrade && self.connection_upgrade;
        Head { method, uri, version, headers, framing, keep_alive, expect_continue, upgrade, trailers: self.trailers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Result<Option<Head>, Malformed> {
        parse(&mut BytesMut::from(bytes), 100)
    }

    #[test]
    fn options_count_in_every_line_of_their_field_and_the_first_expect_decides() {
        let head = parse_all(
            b"POST / HTTP/1.1\r\nconnection: x-a\r\nupgrade: websocket\r\nconnection: Upgrade\r\nte: gzip\r\nte: trailers\r\ncontent-length: 2\r\nexpect: 100-continue\r\nexpect: other\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(head.upgrade && head.trailers && head.expect_continue && head.keep_alive);
        let head = parse_all(b"GET / HTTP/1.0\r\nconnection: x-a\r\nconnection: keep-alive\r\n\r\n").unwrap().unwrap();
        assert!(head.keep_alive && !head.upgrade && !head.trailers);
        let head = parse_all(b"GET / HTTP/1.1\r\nconnection: x-a\r\nconnection: close\r\nupgrade: h2c\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.keep_alive && !head.upgrade, "an Upgrade field alone asks for nothing");
    }

    #[test]
    fn a_head_is_parsed_with_its_framing_and_connection_options() {
        let head = parse_all(b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.method, Method::POST);
        assert_eq!(head.uri, "/a?b=1");
        assert_eq!(head.headers["host"], "x");
        assert_eq!(head.framing, BodyFraming::Length(5));
        assert!(head.keep_alive && head.expect_continue && !head.upgrade);
    }

    #[test]
    fn http10_keeps_alive_only_when_asked() {
        let plain = parse_all(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!plain.keep_alive);
        let asked = parse_all(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().unwrap();
        assert!(asked.keep_alive);
        let closing = parse_all(b"GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n").unwrap().unwrap();
        assert!(!closing.keep_alive);
    }

    #[test]
    fn chunked_upgrade_and_trailers_are_seen() {
        let head = parse_all(
            b"GET /ws HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nTE: trailers\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.framing, BodyFraming::Chunked);
        assert!(head.upgrade && head.trailers);
    }

    #[test]
    fn a_partial_head_waits_and_what_follows_a_head_stays() {
        assert!(parse_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\nGET /next"[..]);
        assert!(parse(&mut buf, 100).unwrap().is_some());
        assert_eq!(&buf[..], b"GET /next");
    }

    #[test]
    fn more_headers_than_the_stack_holds_parse_when_the_listener_allows_them() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..150 {
            head.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        assert_eq!(parse_all(&head).unwrap_err(), Malformed);
        let parsed = parse(&mut BytesMut::from(&head[..]), 200).unwrap().unwrap();
        assert_eq!(parsed.headers.len(), 150);
    }

    #[test]
    fn a_target_the_uri_type_refuses_is_malformed() {
        assert_eq!(parse_all(b"GET /a\xffb HTTP/1.1\r\n\r\n").unwrap_err(), Malformed);
    }
}
