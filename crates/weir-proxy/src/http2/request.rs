//! A request from its decoded fields (RFC 9113 section 8.2 and 8.3): pseudo-headers first, each
//! once; lowercase names; no connection-specific fields; `te` only as `trailers`; values without
//! CR, LF, NUL or surrounding whitespace. A request that breaks a rule is malformed and its stream
//! is reset; one over the listener's head limits is answered 431.

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, COOKIE, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

use super::hpack::{Field, Name, Pseudo};
use crate::http1::ADDED_HEADERS;

/// What the HPACK table adds to each field's size when limits count a header list (RFC 9113 6.5.2).
const FIELD_OVERHEAD: usize = 32;

/// Why a header block is not a request (or trailers) weir forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// Breaks a rule of RFC 9113 section 8: the stream is reset with PROTOCOL_ERROR.
    Malformed(&'static str),
    /// More fields, or more bytes, than the listener allows: answered 431.
    TooLarge(HeadLimit),
}

/// Which of a listener's head limits a header list went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadLimit {
    /// `max_head_size`, the list's size as RFC 9113 counts it.
    Size,
    /// `max_headers`.
    Fields,
}

/// The limits a listener puts on one header block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockLimits {
    /// The header list's size as RFC 9113 counts it (names, values, 32 per field).
    pub(crate) max_list_size: usize,
    pub(crate) max_fields: usize,
}

/// Collects a block's fields as they are decoded.
pub(super) struct Collect {
    pseudo: [Option<Bytes>; 4],
    headers: HeaderMap,
    trailers: bool,
    regular_seen: bool,
    refused: Option<Refused>,
    list_size: usize,
    fields: usize,
    limits: BlockLimits,
    content_length: Option<u64>,
}

const METHOD: usize = 0;
const SCHEME: usize = 1;
const AUTHORITY: usize = 2;
const PATH: usize = 3;

impl Collect {
    /// For a request's head.
    pub(super) fn head(limits: BlockLimits) -> Collect {
        Collect::new(limits, false)
    }

    /// For a request's trailers: no pseudo-headers.
    pub(super) fn trailers(limits: BlockLimits) -> Collect {
        Collect::new(limits, true)
    }

    fn new(limits: BlockLimits, trailers: bool) -> Collect {
        Collect {
            pseudo: [None, None, None, None],
            headers: HeaderMap::new(),
            trailers,
            regular_seen: false,
            refused: None,
            list_size: 0,
            fields: 0,
            limits,
            content_length: None,
        }
    }

    /// Takes one decoded field.
    pub(super) fn field(&mut self, field: Field) {
        if self.refused.is_some() {
            return;
        }
        self.fields += 1;
        self.list_size += field.name.len() + field.value.len() + FIELD_OVERHEAD;
        if self.fields > self.limits.max_fields {
            self.refused = Some(Refused::TooLarge(HeadLimit::Fields));
            return;
        }
        if self.list_size > self.limits.max_list_size {
            self.refused = Some(Refused::TooLarge(HeadLimit::Size));
            return;
        }
        if let Err(reason) = self.take(field) {
            self.refused = Some(Refused::Malformed(reason));
        }
    }

    fn take(&mut self, field: Field) -> Result<(), &'static str> {
        match field.name {
            Name::Pseudo(pseudo) => self.pseudo(pseudo, field.value),
            Name::Header(name) => {
                self.regular_seen = true;
                self.header(name, field.value)
            }
            Name::Invalid(_) => Err("a field name that is not a lowercase token"),
        }
    }

    fn pseudo(&mut self, pseudo: Pseudo, value: Bytes) -> Result<(), &'static str> {
        if self.trailers {
            return Err("a pseudo-header in trailers");
        }
        if self.regular_seen {
            return Err("a pseudo-header after a regular field");
        }
        let slot = match pseudo {
            Pseudo::Method => METHOD,
            Pseudo::Scheme => SCHEME,
            Pseudo::Authority => AUTHORITY,
            Pseudo::Path => PATH,
            Pseudo::Status | Pseudo::Protocol => return Err("a pseudo-header requests do not carry"),
        };
        if self.pseudo[slot].replace(value).is_some() {
            return Err("a pseudo-header given twice");
        }
        Ok(())
    }

    fn header(&mut self, name: HeaderName, value: Bytes) -> Result<(), &'static str> {
        if is_connection_specific(&name) {
            return Err("a connection-specific field");
        }
        if self.trailers && is_kept_from_trailers(&name) {
            // Framing, routing and credentials belong in the head (RFC 9110 section 6.5.1).
            return Ok(());
        }
        let value = field_value(value)?;
        if name == HOST {
            if self.headers.contains_key(HOST) {
                return Err("host given twice");
            }
            authority(value.as_bytes().to_vec().into()).map_err(|_| "an invalid host")?;
        }
        if name == http::header::TE && value != "trailers" {
            return Err("te other than trailers");
        }
        if name == CONTENT_LENGTH {
            let length = parse_length(value.as_bytes()).ok_or("an invalid content-length")?;
            if self.content_length.replace(length).is_some_and(|before| before != length) {
                return Err("conflicting content-length fields");
            }
            if self.headers.contains_key(CONTENT_LENGTH) {
                // The same length again: one field says it.
                return Ok(());
            }
        }
        if name == COOKIE
            && let Some(before) = self.headers.get_mut(COOKIE)
        {
            // Cookie crumbs become one field again, as HTTP/1.1 upstreams expect (RFC 9113 8.2.3).
            let mut joined = BytesMut::with_capacity(before.len() + 2 + value.len());
            joined.extend_from_slice(before.as_bytes());
            joined.extend_from_slice(b"; ");
            joined.extend_from_slice(value.as_bytes());
            *before = HeaderValue::from_maybe_shared(joined.freeze()).map_err(|_| "an invalid cookie")?;
            return Ok(());
        }
        if self.headers.capacity() == 0 {
            self.headers.reserve(16 + ADDED_HEADERS);
        }
        self.headers.append(name, value);
        Ok(())
    }

    /// The request the block made, with `body`; or why it made none.
    pub(super) fn request<B>(self, body: B) -> Result<(Request<B>, Option<u64>), Refused> {
        if let Some(refused) = self.refused {
            return Err(refused);
        }
        let [method, scheme, authority, path] = self.pseudo;
        let method = method.ok_or(Refused::Malformed("no :method"))?;
        let method = Method::from_bytes(&method).map_err(|_| Refused::Malformed("an invalid :method"))?;
        let uri = uri(&method, scheme, authority, path).map_err(Refused::Malformed)?;
        if let (Some(host), Some(authority)) = (self.headers.get(HOST), uri.authority())
            && host.as_bytes() != authority.as_str().as_bytes()
        {
            return Err(Refused::Malformed("host differs from :authority"));
        }
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_2;
        *request.headers_mut() = self.headers;
        Ok((request, self.content_length))
    }

    /// The trailers the block made, or why it made none.
    pub(super) fn into_trailers(self) -> Result<HeaderMap, Refused> {
        match self.refused {
            Some(refused) => Err(refused),
            None => Ok(self.headers),
        }
    }
}

/// The request's URI: `scheme://authority/path`, or the path alone without `:authority`; CONNECT
/// has the authority alone.
fn uri(
    method: &Method,
    scheme: Option<Bytes>,
    authority: Option<Bytes>,
    path: Option<Bytes>,
) -> Result<Uri, &'static str> {
    if method == Method::CONNECT {
        // weir tunnels nothing over HTTP/2: a CONNECT would reach an upstream as a plain request.
        return Err("CONNECT, which weir does not tunnel over HTTP/2");
    }
    let scheme = scheme.ok_or("no :scheme")?;
    let path = path.filter(|path| !path.is_empty()).ok_or("no :path")?;
    if path[0] != b'/' && !(path[..] == *b"*" && method == Method::OPTIONS) {
        return Err("a :path that is neither absolute nor * for OPTIONS");
    }
    let path = PathAndQuery::from_maybe_shared(path).map_err(|_| "an invalid :path")?;
    let Some(authority) = authority else { return Ok(Uri::from(path)) };
    let scheme = Scheme::try_from(&scheme[..]).map_err(|_| "an invalid :scheme")?;
    let authority = self::authority(authority).map_err(|_| "an invalid :authority")?;
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    parts.path_and_query = Some(path);
    Uri::from_parts(parts).map_err(|_| "an invalid request target")
}

/// An authority as a request may name it: host and port, no userinfo (RFC 9113 section 8.3.1).
fn authority(bytes: Bytes) -> Result<Authority, ()> {
    if bytes.contains(&b'@') {
        return Err(());
    }
    Authority::from_maybe_shared(bytes).map_err(|_| ())
}

/// Fields a request's trailers may not carry, dropped from them: what frames, routes or
/// authorizes a request is the head's.
fn is_kept_from_trailers(name: &HeaderName) -> bool {
    use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, COOKIE, EXPECT, PROXY_AUTHORIZATION, TE};
    [CONTENT_LENGTH, HOST, AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE, TE, EXPECT, CONTENT_TYPE, CONTENT_ENCODING]
        .contains(name)
}

/// A field value as RFC 9113 section 8.2.1 allows it.
fn field_value(value: Bytes) -> Result<HeaderValue, &'static str> {
    let padded = |byte: Option<&u8>| matches!(byte, Some(b' ' | b'\t'));
    if padded(value.first()) || padded(value.last()) {
        return Err("a field value with leading or trailing whitespace");
    }
    HeaderValue::from_maybe_shared(value).map_err(|_| "a field value with a control character")
}

/// Fields that belong to an HTTP/1.1 connection, never carried by HTTP/2 (RFC 9113 section 8.2.2).
pub(super) fn is_connection_specific(name: &HeaderName) -> bool {
    use http::header::{CONNECTION, TRANSFER_ENCODING, UPGRADE};
    name == CONNECTION
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |sum, &digit| digit.is_ascii_digit().then(|| sum * 10 + u64::from(digit - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BlockLimits = BlockLimits { max_list_size: 8192, max_fields: 100 };

    fn field(name: &str, value: &str) -> Field {
        Field { name: Name::parse(name.as_bytes()), value: Bytes::copy_from_slice(value.as_bytes()) }
    }

    fn request(fields: &[(&str, &str)]) -> Result<Request<()>, Refused> {
        request_within(fields, LIMITS)
    }

    fn request_within(fields: &[(&str, &str)], limits: BlockLimits) -> Result<Request<()>, Refused> {
        let mut collect = Collect::head(limits);
        for (name, value) in fields {
            collect.field(field(name, value));
        }
        collect.request(()).map(|(request, _)| request)
    }

    const GET: [(&str, &str); 4] =
        [(":method", "GET"), (":scheme", "https"), (":authority", "a.test"), (":path", "/x?y")];

    #[test]
    fn a_request_is_built_from_its_pseudo_headers_and_fields() {
        let mut fields = GET.to_vec();
        fields.push(("accept", "*/*"));
        let request = request(&fields).unwrap();
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri(), "https://a.test/x?y");
        assert_eq!(request.version(), Version::HTTP_2);
        assert_eq!(request.headers()["accept"], "*/*");
    }

    #[test]
    fn without_authority_the_uri_is_the_path() {
        let request = request(&[(":method", "GET"), (":scheme", "http"), (":path", "/p")]).unwrap();
        assert_eq!(request.uri(), "/p");
    }

    #[test]
    fn connect_is_refused() {
        let refused = request(&[(":method", "CONNECT"), (":authority", "a.test:443")]);
        assert!(matches!(refused, Err(Refused::Malformed(_))));
    }

    #[test]
    fn a_repeated_content_length_is_sent_once() {
        let mut fields = GET.to_vec();
        fields.extend([("content-length", "5"), ("content-length", "5")]);
        let request = request(&fields).unwrap();
        assert_eq!(request.headers().get_all("content-length").iter().count(), 1);
    }

    #[test]
    fn trailers_drop_what_belongs_in_the_head() {
        let mut collect = Collect::trailers(LIMITS);
        for (name, value) in [("host", "evil.test"), ("content-length", "9"), ("authorization", "x"), ("x-sum", "1")] {
            collect.field(field(name, value));
        }
        let trailers = collect.into_trailers().unwrap();
        assert_eq!(trailers.len(), 1);
        assert_eq!(trailers["x-sum"], "1");
    }

    #[test]
    fn cookie_crumbs_are_joined() {
        let mut fields = GET.to_vec();
        fields.extend([("cookie", "a=1"), ("cookie", "b=2")]);
        assert_eq!(request(&fields).unwrap().headers()["cookie"], "a=1; b=2");
    }

    #[test]
    fn malformed_requests_are_refused() {
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![(":scheme", "https"), (":path", "/")],
            vec![(":method", "GET"), (":path", "/")],
            vec![(":method", "GET"), (":scheme", "https"), (":path", "")],
            vec![(":method", "GET"), (":scheme", "https"), (":path", "x")],
            vec![(":method", "GET"), (":method", "GET"), (":scheme", "https"), (":path", "/")],
            vec![(":method", "GET"), ("accept", "*"), (":scheme", "https"), (":path", "/")],
            vec![(":method", "GET"), (":scheme", "https"), (":path", "/"), (":status", "200")],
            vec![(":method", "GET"), (":scheme", "https"), (":path", "/"), ("Upper", "x")],
            vec![(":method", "GET"), (":scheme", "https"), (":path", "/"), ("connection", "close")],
            vec![(":method", "GET"), (":scheme", "https"), (":path", "/"), ("transfer-encoding", "chunked")],
            vec![(":method", "GET"), (":scheme", "https"), (":path", "/"), ("te", "gzip")],
            vec![(":method", "GET"), (":scheme", "https"), (":path", "/"), ("x", " padded")],
            vec![(":method", "GET"), (":scheme", "https"), (":path", "/"), ("x", "a\r\nb")],
            vec![(":method", "GET"), (":scheme", "https"), (":path", "/"), ("content-length", "1x")],
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                ("content-length", "1"),
                ("content-length", "2"),
            ],
            vec![(":method", "GET"), (":scheme", "https"), (":authority", "a"), (":path", "/"), ("host", "b")],
            vec![(":method", "GET"), (":scheme", "https"), (":authority", "user@a"), (":path", "/")],
            vec![(":method", "GET"), (":scheme", "https"), (":path", "/"), ("host", "a"), ("host", "a")],
            vec![(":method", "GET"), (":scheme", "https"), (":path", "/"), ("host", "u@a")],
            vec![(":method", "GET"), (":scheme", "https"), (":path", "/"), ("host", "a b")],
        ];
        for fields in cases {
            assert!(matches!(request(&fields), Err(Refused::Malformed(_))), "{fields:?}");
        }
    }

    #[test]
    fn te_trailers_and_a_repeated_equal_length_pass() {
        let mut fields = GET.to_vec();
        fields.extend([("te", "trailers"), ("content-length", "5"), ("content-length", "5"), ("host", "a.test")]);
        let mut collect = Collect::head(LIMITS);
        for (name, value) in &fields {
            collect.field(field(name, value));
        }
        let (_, length) = collect.request(()).unwrap();
        assert_eq!(length, Some(5));
    }

    #[test]
    fn too_many_or_too_large_fields_are_refused_as_too_large() {
        let long = "v".repeat(100);
        let mut fields = GET.to_vec();
        fields.extend([("a", "1"), ("b", "2")]);
        let few = BlockLimits { max_list_size: 8192, max_fields: 5 };
        assert_eq!(request_within(&fields, few).err(), Some(Refused::TooLarge(HeadLimit::Fields)));
        let small = BlockLimits { max_list_size: 200, max_fields: 100 };
        fields.push(("c", &long));
        assert_eq!(request_within(&fields, small).err(), Some(Refused::TooLarge(HeadLimit::Size)));
    }

    #[test]
    fn trailers_take_no_pseudo_headers() {
        let mut collect = Collect::trailers(LIMITS);
        collect.field(field("grpc-status", "0"));
        assert_eq!(collect.into_trailers().unwrap()["grpc-status"], "0");
        let mut collect = Collect::trailers(LIMITS);
        collect.field(field(":path", "/"));
        assert!(matches!(collect.into_trailers(), Err(Refused::Malformed(_))));
    }
}
