//! A client's request head, taken off the front of the read buffer and checked as it is parsed:
//! framing and syntax are held to RFC 9112 strictly, and anything ambiguous is refused with the
//! [`Violation`] that names it, before a byte of the request reaches the gateway.
//!
//! A head that came whole (the common case) is parsed in one go: one pass finds its end, a second
//! builds the request from it, checking each line as it becomes a method, a target, a name or a
//! value. A head arriving in pieces has each new line checked as it comes ([`Progress`]), so it is
//! refused as soon as a line is bad and never rescanned, and is parsed whole once its end is here.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use weir_upstream::wire::{field_name, find_byte, tokens};

use super::syntax;
use crate::framing::Violation;

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
    /// A bodiless HTTP/1.1 `GET` asking for WebSocket (RFC 6455 section 4.1): what follows it on
    /// the connection may be the tunnel's bytes, so no other request is read after it.
    pub(super) websocket: bool,
    /// The client takes trailers in a chunked response (`TE: trailers`).
    pub(super) trailers: bool,
    /// What the head was refused for, when it stands in for a refused one.
    pub(super) refused: Option<Violation>,
}

/// What a request head may hold, from the listener's config (which keeps each far below 4 GiB;
/// `u32`, as every connection keeps a copy).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimits {
    /// Bytes from the request line through the empty line that ends the head (empty lines before
    /// the request line count too).
    pub(crate) max_head_bytes: u32,
    /// Field lines.
    pub(crate) max_headers: u32,
    /// Bytes in the request target.
    pub(crate) max_uri_len: u32,
}

/// How far a head arriving in pieces has been checked. Empty for a head not yet begun.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Empty lines dropped before the request line.
    skipped: usize,
    /// Bytes at the front of the buffer that are whole lines, already checked.
    checked: usize,
    /// Bytes after those searched for a line feed and found without one.
    searched: usize,
    /// Field lines among the checked ones.
    fields: usize,
}

impl Progress {
    fn is_fresh(&self) -> bool {
        self.checked == 0 && self.searched == 0
    }
}

/// Takes one request head off the front of `buf`. `Ok(None)`: more bytes are needed, and
/// `progress` says how far those buffered were checked; pass it back with the next bytes.
pub(super) fn parse(
    buf: &mut BytesMut,
    limits: &HeadLimits,
    progress: &mut Progress,
) -> Result<Option<Head>, Violation> {
    parse_inner(buf, limits, progress).map_err(|violation| match violation {
        Violation::HeadTooLarge => too_large(buf, limits),
        violation => violation,
    })
}

fn parse_inner(buf: &mut BytesMut, limits: &HeadLimits, progress: &mut Progress) -> Result<Option<Head>, Violation> {
    if progress.checked == 0 {
        skip_empty_lines(buf, progress);
        if buf.is_empty() {
            return Ok(None);
        }
    }
    let limit = (limits.max_head_bytes as usize).saturating_sub(progress.skipped);
    let whole = if progress.is_fresh() { find_end(buf, limit)? } else { None };
    let (length, fields) = match whole {
        Some(found) => found,
        // A head that did not come whole: its whole lines are checked as they come, so a bad one
        // is refused at once rather than when the head ends, and none is scanned twice.
        None => match check_lines(buf, limits, limit, progress)? {
            Some(length) => (length, progress.fields),
            // Even one more byte would make the head too long.
            None if buf.len() >= limit => return Err(Violation::HeadTooLarge),
            None => return Ok(None),
        },
    };
    *progress = Progress::default();
    build(buf.split_to(length).freeze(), fields, limits).map(Some)
}

/// Drops the empty lines a client may send before a request line (RFC 9112 section 2.2).
fn skip_empty_lines(buf: &mut BytesMut, progress: &mut Progress) {
    let mut skip = 0;
    while buf[skip..].starts_with(b"\r\n") {
        skip += 2;
    }
    if skip > 0 {
        buf.advance(skip);
        progress.skipped += skip;
        progress.searched = 0;
    }
}

/// Where the line feed that ends the line from `start` sits (searching from `from`), checking that
/// CR comes before it and that the head stays within `limit`. `Ok(None)`: the line has not all
/// arrived.
fn line_feed(buf: &[u8], start: usize, from: usize, limit: usize) -> Result<Option<usize>, Violation> {
    let Some(i) = find_byte(b'\n', &buf[from..]) else { return Ok(None) };
    let line_feed = from + i;
    if line_feed + 1 > limit {
        return Err(Violation::HeadTooLarge);
    }
    if line_feed == start || buf[line_feed - 1] != b'\r' {
        return Err(Violation::BareLineFeed);
    }
    Ok(Some(line_feed))
}

/// The length of the head at the front of `buf` through its empty line, and how many field lines
/// it has, if it is all here.
fn find_end(buf: &[u8], limit: usize) -> Result<Option<(usize, usize)>, Violation> {
    let mut start = 0;
    let mut lines = 0;
    while let Some(line_feed) = line_feed(buf, start, start, limit)? {
        if line_feed == start + 1 && lines > 0 {
            return Ok(Some((line_feed + 1, lines - 1)));
        }
        lines += 1;
        start = line_feed + 1;
    }
    Ok(None)
}

/// Checks the whole lines that arrived since the last call; returns the head's length once its
/// empty line is here.
fn check_lines(
    buf: &[u8],
    limits: &HeadLimits,
    limit: usize,
    progress: &mut Progress,
) -> Result<Option<usize>, Violation> {
    let from = |progress: &Progress| progress.checked.max(progress.searched);
    while let Some(line_feed) = line_feed(buf, progress.checked, from(progress), limit)? {
        let line = &buf[progress.checked..line_feed - 1];
        let first = progress.checked == 0;
        progress.checked = line_feed + 1;
        if first {
            syntax::request_line(line, limits.max_uri_len as usize)
                .map_err(|violation| bare_cr_first(line, violation))?;
        } else if line.is_empty() {
            return Ok(Some(progress.checked));
        } else {
            progress.fields += 1;
            if progress.fields > limits.max_headers as usize {
                return Err(Violation::TooManyHeaders);
            }
            syntax::field_line(line).map_err(|violation| bare_cr_first(line, violation))?;
        }
    }
    progress.searched = buf.len();
    Ok(None)
}

/// Why a head that reached the size limit is refused: an overlong target when the request line
/// holds one, whether or not it has ended.
fn too_large(buf: &[u8], limits: &HeadLimits) -> Violation {
    let line = &buf[..find_byte(b'\n', buf).unwrap_or(buf.len())];
    if syntax::partial_target_len(line) > limits.max_uri_len as usize {
        Violation::UriTooLong
    } else {
        Violation::HeadTooLarge
    }
}

/// A line refused for `violation` that holds a CR not followed by LF is refused for that instead.
fn bare_cr_first(line: &[u8], violation: Violation) -> Violation {
    if find_byte(b'\r', line).is_some() { Violation::BareCarriageReturn } else { violation }
}

/// Builds the request from a whole head of `fields` field lines, whose lines all end in CRLF and
/// fit the size limit; checks what each line holds as it becomes a method, target, name or value.
fn build(head: Bytes, fields: usize, limits: &HeadLimits) -> Result<Head, Violation> {
    let mut lines = Lines { head: &head, at: 0 };
    let line = lines.next().unwrap_or(0..0);
    let request_line = &head[line.clone()];
    let http10 = syntax::request_line(request_line, limits.max_uri_len as usize)
        .map_err(|violation| bare_cr_first(request_line, violation))?;
    let (method, target) = method_and_target(request_line).ok_or(Violation::InvalidRequestLine)?;
    let target = line.start + target.start..line.start + target.end;
    // The target and the values share the head's bytes, not copies.
    let uri = Uri::from_maybe_shared(head.slice(target)).map_err(|_| Violation::InvalidRequestLine)?;
    let mut headers = HeaderMap::with_capacity(fields.min(limits.max_headers as usize) + super::ADDED_HEADERS);
    let mut noted = Noted::default();
    for (index, line) in lines.take_while(|line| !line.is_empty()).enumerate() {
        if index == limits.max_headers as usize {
            return Err(Violation::TooManyHeaders);
        }
        let (name, value) = field(&head, line)?;
        noted.note(&name, &value)?;
        headers.append(name, value);
    }
    let version = if http10 { Version::HTTP_10 } else { Version::HTTP_11 };
    noted.into_head(method, uri, version, headers)
}

/// One field line's name and OWS-trimmed value.
fn field(head: &Bytes, line: Range<usize>) -> Result<(HeaderName, HeaderValue), Violation> {
    let bytes = &head[line.clone()];
    let refuse = |violation| bare_cr_first(bytes, violation);
    if matches!(bytes.first(), Some(b' ' | b'\t')) {
        return Err(Violation::ObsoleteLineFolding);
    }
    let colon = find_byte(b':', bytes).ok_or_else(|| refuse(Violation::InvalidHeaderName))?;
    let name = field_name(&bytes[..colon]).map_err(|_| refuse(Violation::InvalidHeaderName))?;
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let value = &bytes[colon + 1..];
    let leading = value.iter().take_while(|b| is_ows(b)).count();
    let trailing = value[leading..].iter().rev().take_while(|b| is_ows(b)).count();
    let start = line.start + colon + 1 + leading;
    let value = head.slice(start..line.end - trailing);
    let value = HeaderValue::from_maybe_shared(value).map_err(|_| refuse(Violation::InvalidHeaderValue))?;
    Ok((name, value))
}

/// The lines of a head whose lines all end in CRLF, without their line ends.
#[derive(Clone)]
struct Lines<'a> {
    head: &'a [u8],
    at: usize,
}

impl Iterator for Lines<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let line_feed = self.at + find_byte(b'\n', &self.head[self.at..])?;
        let line = self.at..line_feed - 1;
        self.at = line_feed + 1;
        Some(line)
    }
}

/// The method and where the target sits in a request line `syntax::request_line` accepted.
fn method_and_target(line: &[u8]) -> Option<(Method, Range<usize>)> {
    let first = find_byte(b' ', line)?;
    let last = line.iter().rposition(|&b| b == b' ')?;
    let method = Method::from_bytes(&line[..first]).ok()?;
    Some((method, first + 1..last))
}

/// What the server needs from a head's fields, noted field by field as the head is read (no
/// lookups in the map afterwards), with the framing rules that span fields.
#[derive(Debug, Default)]
struct Noted {
    /// Transfer-Encoding: `Some(true)` for one field line saying exactly `chunked`; anything else
    /// (another coding, a list, a second line) is `Some(false)` and refused.
    chunked: Option<bool>,
    content_length: Option<u64>,
    host: bool,
    /// The first `Expect` says `100-continue`.
    expect: Option<bool>,
    upgrade: bool,
    upgrade_websocket: bool,
    /// Tokens of `Connection`, in any of its lines.
    close: bool,
    keep_alive: bool,
    connection_upgrade: bool,
    /// `TE` holds `trailers`.
    trailers: bool,
}

impl Noted {
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<(), Violation> {
        let value = value.as_bytes();
        if *name == HOST {
            if std::mem::replace(&mut self.host, true) {
                return Err(Violation::DuplicateHost);
            }
        } else if *name == CONTENT_LENGTH {
            let length = syntax::content_length(value)?;
            if self.content_length.is_some_and(|seen| seen != length) {
                return Err(Violation::ConflictingContentLength);
            }
            self.content_length = Some(length);
        } else if *name == TRANSFER_ENCODING {
            self.chunked = Some(self.chunked.is_none() && syntax::is_chunked(value));
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
            self.upgrade_websocket |= syntax::has_token(value, b"websocket");
        } else if *name == TE {
            self.trailers |= tokens(value).any(|token| token.eq_ignore_ascii_case(b"trailers"));
        }
        Ok(())
    }

    /// How the body is framed: a framing fault is named before a missing Host.
    fn framing(&self, http10: bool) -> Result<BodyFraming, Violation> {
        let framing = match (self.chunked, self.content_length) {
            (None, Some(0) | None) => BodyFraming::None,
            (None, Some(length)) => BodyFraming::Length(length),
            (Some(_), Some(_)) => return Err(Violation::ContentLengthWithTransferEncoding),
            (Some(true), None) if !http10 => BodyFraming::Chunked,
            (Some(_), None) => return Err(Violation::UnsupportedTransferEncoding),
        };
        if !self.host && !http10 {
            return Err(Violation::MissingHost);
        }
        Ok(framing)
    }

    fn into_head(self, method: Method, uri: Uri, version: Version, headers: HeaderMap) -> Result<Head, Violation> {
        let http10 = version == Version::HTTP_10;
        let framing = self.framing(http10)?;
        let keep_alive = if http10 { self.keep_alive } else { !self.close };
        let expect_continue = !http10 && framing != BodyFraming::None && self.expect.unwrap_or(false);
        let upgrade = self.upgrade && self.connection_upgrade;
        let websocket =
            upgrade && self.upgrade_websocket && !http10 && method == Method::GET && framing == BodyFraming::None;
        Ok(Head {
            method,
            uri,
            version,
            headers,
            framing,
            keep_alive,
            expect_continue,
            upgrade,
            websocket,
            trailers: self.trailers,
            refused: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits { max_head_bytes: 1024, max_headers: 8, max_uri_len: 64 };

    fn parse_with(bytes: &[u8], limits: &HeadLimits) -> Result<Option<Head>, Violation> {
        parse(&mut BytesMut::from(bytes), limits, &mut Progress::default())
    }

    fn parse_all(bytes: &[u8]) -> Result<Option<Head>, Violation> {
        parse_with(bytes, &HeadLimits { max_headers: 100, ..LIMITS })
    }

    /// Feeds `input` in two pieces cut at `at`, as two reads would; what the first piece gave (a
    /// head or a violation), or else what the second did, and the bytes left over.
    fn parse_split(input: &[u8], at: usize) -> (Result<Option<Head>, Violation>, Vec<u8>) {
        let mut buf = BytesMut::from(&input[..at]);
        let mut progress = Progress::default();
        match parse(&mut buf, &LIMITS, &mut progress) {
            Ok(None) => {}
            done => return (done, buf.to_vec()),
        }
        buf.extend_from_slice(&input[at..]);
        let parsed = parse(&mut buf, &LIMITS, &mut progress);
        (parsed, buf.to_vec())
    }

    #[test]
    fn options_count_in_every_line_of_their_field_and_the_first_expect_decides() {
        let head = parse_all(
            b"POST / HTTP/1.1\r\nHost: a\r\nconnection: x-a\r\nupgrade: websocket\r\nconnection: Upgrade\r\nte: gzip\r\nte: trailers\r\ncontent-length: 2\r\nexpect: 100-continue\r\nexpect: other\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(head.upgrade && head.trailers && head.expect_continue && head.keep_alive);
        assert!(!head.websocket, "a request with a body is no WebSocket upgrade");
        let head = parse_all(b"GET / HTTP/1.0\r\nconnection: x-a\r\nconnection: keep-alive\r\n\r\n").unwrap().unwrap();
        assert!(head.keep_alive && !head.upgrade && !head.trailers);
        let head =
            parse_all(b"GET / HTTP/1.1\r\nHost: a\r\nconnection: x-a\r\nconnection: close\r\nupgrade: h2c\r\n\r\n")
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
        let head = parse_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-A:\t a: b \t\r\nEmpty:\r\n\r\n").unwrap().unwrap();
        assert_eq!((head.headers["x-a"].as_bytes(), head.headers["empty"].as_bytes()), (&b"a: b"[..], &b""[..]));
    }

    #[test]
    fn http10_keeps_alive_only_when_asked_and_needs_no_host() {
        let plain = parse_all(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!plain.keep_alive);
        let asked = parse_all(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().unwrap();
        assert!(asked.keep_alive);
        let closing = parse_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n").unwrap().unwrap();
        assert!(!closing.keep_alive);
    }

    #[test]
    fn chunked_websocket_and_trailers_are_seen() {
        let head = parse_all(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, BodyFraming::Chunked);
        assert!(head.trailers);
        let ws = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        let head = parse_all(ws).unwrap().unwrap();
        assert!(head.upgrade && head.websocket);
        let h2c = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
        let head = parse_all(h2c).unwrap().unwrap();
        assert!(head.upgrade && !head.websocket);
        let http10 = b"GET / HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert!(!parse_all(http10).unwrap().unwrap().websocket);
    }

    #[test]
    fn a_partial_head_waits_and_what_follows_a_head_stays() {
        assert!(parse_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        let mut buf = BytesMut::from(&b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next"[..]);
        assert!(parse(&mut buf, &LIMITS, &mut Progress::default()).unwrap().is_some());
        assert_eq!(&buf[..], b"GET /next");
    }

    #[test]
    fn empty_lines_before_a_request_are_dropped_even_split_and_count_against_the_limit() {
        let mut buf = BytesMut::from(&b"\r\n\r"[..]);
        let mut progress = Progress::default();
        assert!(parse(&mut buf, &LIMITS, &mut progress).unwrap().is_none());
        assert_eq!(&buf[..], b"\r", "a CR waits for what follows it");
        buf.extend_from_slice(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(parse(&mut buf, &LIMITS, &mut progress).unwrap().unwrap().uri, "/");
        let mut buf = BytesMut::from(&b"\r\n".repeat(600)[..]);
        let mut progress = Progress::default();
        assert!(parse(&mut buf, &LIMITS, &mut progress).unwrap().is_none());
        assert!(buf.is_empty(), "an idle connection holds no empty lines");
        buf.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(parse(&mut buf, &LIMITS, &mut progress).unwrap_err(), Violation::HeadTooLarge);
    }

    #[test]
    fn more_headers_than_the_limit_are_refused() {
        let mut head = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..149 {
            head.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let limits = HeadLimits { max_head_bytes: 64 * 1024, max_headers: 149, max_uri_len: 64 };
        assert_eq!(parse_with(&head, &limits).unwrap_err(), Violation::TooManyHeaders);
        let limits = HeadLimits { max_headers: 150, ..limits };
        assert_eq!(parse_with(&head, &limits).unwrap().unwrap().headers.len(), 150);
    }

    #[test]
    fn a_target_the_uri_type_refuses_is_an_invalid_request_line() {
        assert_eq!(parse_all(b"GET /a\xffb HTTP/1.1\r\nHost: a\r\n\r\n").unwrap_err(), Violation::InvalidRequestLine);
    }

    /// One bad head per case, each with the one fault it is refused for.
    const BAD_HEADS: &[(&[u8], Violation)] = {
        use Violation::*;
        &[
            (
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                ContentLengthWithTransferEncoding,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello",
                ContentLengthWithTransferEncoding,
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n", InvalidContentLength),
            (b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", InvalidContentLength),
            (b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", InvalidContentLength),
            (b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", InvalidContentLength),
            (b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n", InvalidContentLength),
            (b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n", ConflictingContentLength),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", UnsupportedTransferEncoding),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", UnsupportedTransferEncoding),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", UnsupportedTransferEncoding),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked;x\r\n\r\n", UnsupportedTransferEncoding),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                UnsupportedTransferEncoding,
            ),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", UnsupportedTransferEncoding),
            (b"GET / HTTP/1.1\nHost: x\r\n\r\n", BareLineFeed),
            (b"GET / HTTP/1.1\r\nHost: x\n\r\n", BareLineFeed),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\n", BareLineFeed),
            (b"\nGET / HTTP/1.1\r\n\r\n", BareLineFeed),
            (b"\r\n\nGET / HTTP/1.1\r\n\r\n", BareLineFeed),
            (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", BareCarriageReturn),
            (b"GET /\r HTTP/1.1\r\n\r\n", BareCarriageReturn),
            (b"GET / HTTP/1.1\r\nX: 1\r\r\n\r\n", BareCarriageReturn),
            (b"GET / HTTP/1.1\r\nX\r: 1\r\n\r\n", BareCarriageReturn),
            (b"GET  / HTTP/1.1\r\n\r\n", InvalidRequestLine),
            (b"GET / HTTP/1.1 \r\n\r\n", InvalidRequestLine),
            (b" GET / HTTP/1.1\r\n\r\n", InvalidRequestLine),
            (b"GET / HTTP/1.2\r\n\r\n", InvalidRequestLine),
            (b"GET / http/1.1\r\n\r\n", InvalidRequestLine),
            (b"GET /\x01 HTTP/1.1\r\n\r\n", InvalidRequestLine),
            (b"G(T / HTTP/1.1\r\n\r\n", InvalidRequestLine),
            (b"GET\r\n\r\n", InvalidRequestLine),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", InvalidRequestLine),
            (b"GET / HTTP/1.1\r\nX Y: z\r\n\r\n", InvalidHeaderName),
            (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", InvalidHeaderName),
            (b"GET / HTTP/1.1\r\n: x\r\n\r\n", InvalidHeaderName),
            (b"GET / HTTP/1.1\r\nno-colon\r\n\r\n", InvalidHeaderName),
            (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", InvalidHeaderValue),
            (b"GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", InvalidHeaderValue),
            (b"GET / HTTP/1.1\r\nX: \x0c\r\n\r\n", InvalidHeaderValue),
            (b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", ObsoleteLineFolding),
            (b"GET / HTTP/1.1\r\n\tX: a\r\n\r\n", ObsoleteLineFolding),
            (
                b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: 8\r\nI: 9\r\n\r\n",
                TooManyHeaders,
            ),
            (
                b"GET /0123456789012345678901234567890123456789012345678901234567890123456789 HTTP/1.1\r\n\r\n",
                UriTooLong,
            ),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\nhost: b\r\n\r\n", DuplicateHost),
            (b"GET / HTTP/1.0\r\nHOST: a\r\nHost: a\r\n\r\n", DuplicateHost),
            (b"GET / HTTP/1.1\r\nX: host\r\n\r\n", MissingHost),
            (b"GET http://a.example/ HTTP/1.1\r\n\r\n", MissingHost),
            (b"POST / HTTP/1.1\r\nHosts: a\r\nContent-Length: 1\r\n\r\nA", MissingHost),
        ]
    };

    #[test]
    fn each_fault_is_refused_by_name_however_the_head_is_cut() {
        for &(bad, violation) in BAD_HEADS {
            for at in 0..=bad.len() {
                let (parsed, _) = parse_split(bad, at);
                let text = String::from_utf8_lossy(bad);
                assert_eq!(parsed.map(|_| ()).unwrap_err(), violation, "{text:?} cut at {at}");
            }
        }
    }

    #[test]
    fn a_good_head_parses_the_same_however_it_is_cut() {
        let input = b"\r\nPOST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX: y\r\n\r\nabc";
        for at in 0..=input.len() {
            let (parsed, rest) = parse_split(input, at);
            let head = parsed.unwrap().unwrap();
            assert_eq!((head.uri.path(), head.framing, head.headers.len()), ("/a", BodyFraming::Length(3), 3));
            // The body's bytes stay: those of the first piece when the head came whole in it.
            let end = input.len() - 3;
            let expected = if at >= end { &input[end..at] } else { &input[end..] };
            assert_eq!(rest, expected, "cut at {at}");
        }
    }

    #[test]
    fn a_bad_line_is_refused_before_the_head_ends() {
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\n"[..]);
        let mut progress = Progress::default();
        assert!(parse(&mut buf, &LIMITS, &mut progress).unwrap().is_none());
        buf.extend_from_slice(b"Bad Name: x\r\nY: ");
        assert_eq!(parse(&mut buf, &LIMITS, &mut progress).unwrap_err(), Violation::InvalidHeaderName);
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\nY"[..]);
        assert_eq!(parse(&mut buf, &LIMITS, &mut Progress::default()).unwrap_err(), Violation::BareLineFeed);
    }

    #[test]
    fn limits_are_inclusive_and_a_head_without_an_end_is_refused_at_the_limit() {
        let head = |len: usize| {
            let fixed = b"GET / HTTP/1.1\r\nHost: \r\n\r\n".len();
            [b"GET / HTTP/1.1\r\nHost: ".as_slice(), &vec![b'v'; len - fixed], b"\r\n\r\n"].concat()
        };
        assert!(parse_with(&head(1024), &LIMITS).unwrap().is_some());
        assert_eq!(parse_with(&head(1025), &LIMITS).unwrap_err(), Violation::HeadTooLarge);
        let uri = |len: usize| format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(len - 1)).into_bytes();
        assert!(parse_with(&uri(64), &LIMITS).unwrap().is_some());
        assert_eq!(parse_with(&uri(65), &LIMITS).unwrap_err(), Violation::UriTooLong);
        let value = vec![b'v'; 2000];
        let endless = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &value].concat();
        let endless_uri = [b"GET /".as_slice(), &value].concat();
        for (input, violation) in [(endless, Violation::HeadTooLarge), (endless_uri, Violation::UriTooLong)] {
            let mut buf = BytesMut::new();
            let mut progress = Progress::default();
            let mut refused = None;
            for piece in input.chunks(100) {
                buf.extend_from_slice(piece);
                match parse(&mut buf, &LIMITS, &mut progress) {
                    Ok(None) => assert!(buf.len() < 1024),
                    done => {
                        refused = Some(done.map(|_| ()).unwrap_err());
                        break;
                    }
                }
            }
            assert_eq!(refused, Some(violation));
        }
    }

    #[test]
    fn a_head_arriving_a_byte_at_a_time_is_searched_once() {
        let input = [b"GET / HTTP/1.1\r\nHost: a\r\nX: ".as_slice(), &[b'v'; 900], b"\r\n\r\n"].concat();
        let mut buf = BytesMut::new();
        let mut progress = Progress::default();
        for (i, &byte) in input.iter().enumerate() {
            buf.extend_from_slice(&[byte]);
            let parsed = parse(&mut buf, &LIMITS, &mut progress).unwrap();
            assert_eq!(parsed.is_some(), i == input.len() - 1);
            if parsed.is_none() {
                assert_eq!(progress.checked.max(progress.searched), buf.len(), "everything here was searched");
            }
        }
    }
}
