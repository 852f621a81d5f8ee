//! Header work on the way through: removing hop-by-hop headers, telling the upstream who the client
//! is (`X-Forwarded-*`, `Forwarded`), and giving each request an id.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::header::{CONNECTION, FORWARDED, HeaderMap, HeaderName, HeaderValue, TE, TRANSFER_ENCODING, UPGRADE};
use weir_config::values::Cidr;

use crate::snapshot::RequestIdSettings;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Who is at the other end of a client connection, worked out once per connection.
///
/// Every connection keeps one, so the text its forwarding headers need is one buffer: this hop's
/// `Forwarded` element, `for=<ip>;proto=http`, whose IP part is `X-Forwarded-For`'s value.
pub struct Peer {
    pub addr: SocketAddr,
    /// The peer is a trusted proxy, so its forwarding headers are believed.
    pub trusted: bool,
    /// Where the IP's text sits in `forwarded`.
    ip: (u8, u8),
    /// `for=<ip>;proto=http` (`for="[<ip>]";proto=http` for IPv6), this hop's `Forwarded` element
    /// without a host.
    forwarded: Bytes,
}

impl Peer {
    pub fn new(addr: SocketAddr, trusted_proxies: &[Cidr]) -> Self {
        let ip = addr.ip().to_canonical();
        let text = ip.to_string();
        let (forwarded, start) = match ip {
            IpAddr::V4(_) => (format!("for={text};proto=http"), 4),
            IpAddr::V6(_) => (format!("for=\"[{text}]\";proto=http"), 6),
        };
        Peer {
            addr,
            trusted: trusted_proxies.iter().any(|net| net.contains(ip)),
            // An IP's text is at most 39 bytes, and sits near the front.
            ip: (start as u8, (start + text.len()) as u8),
            // Copied: the text of `format!` may have spare room, which `Bytes` would keep in a second
            // allocation.
            forwarded: Bytes::copy_from_slice(forwarded.as_bytes()),
        }
    }

    /// The peer's IP, as `X-Forwarded-For` gives it.
    fn ip(&self) -> HeaderValue {
        let text = self.forwarded.slice(self.ip_range());
        HeaderValue::from_maybe_shared(text).expect("an IP address is a valid header value")
    }

    /// This hop's `Forwarded` element without a host.
    fn forwarded(&self) -> HeaderValue {
        HeaderValue::from_maybe_shared(self.forwarded.clone()).expect("a Forwarded element is a valid header value")
    }

    fn forwarded_text(&self) -> &str {
        std::str::from_utf8(&self.forwarded).unwrap_or_default()
    }

    fn ip_text(&self) -> &str {
        self.forwarded_text().get(self.ip_range()).unwrap_or_default()
    }

    fn ip_range(&self) -> std::ops::Range<usize> {
        usize::from(self.ip.0)..usize::from(self.ip.1)
    }
}

/// Removes hop-by-hop headers: the fixed set and any named in `Connection`. `TE: trailers` stays,
/// since it is end-to-end in meaning (gRPC needs it). `Host` and `Content-Length` are never removed
/// because a client listed them: that would change the request's target or framing.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One look at the names, then lookups only for those present: most heads carry none or one.
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        // By length first: most names are none of the six, and this tells at a glance.
        if !matches!(name.as_str().len(), 2 | 7 | 10 | 16 | 17) {
            continue;
        }
        if let Some(at) = HOP_BY_HOP.iter().position(|hop| *hop == name) {
            present[at] = true;
        }
    }
    if present[0] {
        // `Connection` first, since it may list more. Every line of it counts (`remove` gives back
        // only the first); a second line, rare, is the only case that allocates.
        let mut lines = headers.get_all(CONNECTION).iter();
        let first = lines.next().cloned();
        let rest: Vec<HeaderValue> = lines.cloned().collect();
        headers.remove(CONNECTION);
        for line in first.iter().chain(&rest) {
            remove_listed(headers, line);
        }
    }
    let last = HOP_BY_HOP.len() - 1;
    for at in (1..last).filter(|&at| present[at]) {
        headers.remove(HOP_BY_HOP[at]);
    }
    if present[last]
        && let Some(te) = headers.remove(TE)
        && te.as_bytes().eq_ignore_ascii_case(b"trailers")
    {
        headers.insert(TE, te);
    }
}

/// The fixed hop-by-hop set: `Connection` first and `TE` last, as [`strip_hop_by_hop`] expects.
static HOP_BY_HOP: [&HeaderName; 6] = [&CONNECTION, &KEEP_ALIVE, &PROXY_CONNECTION, &TRANSFER_ENCODING, &UPGRADE, &TE];

/// Removes the headers a `Connection` value names, other than the usual `keep-alive` and `close`.
fn remove_listed(headers: &mut HeaderMap, connection: &HeaderValue) {
    let Ok(value) = connection.to_str() else { return };
    for token in value.split(',').map(str::trim) {
        if token.eq_ignore_ascii_case("keep-alive") || token.eq_ignore_ascii_case("close") {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(token.as_bytes())
            && name != http::header::HOST
            && name != http::header::CONTENT_LENGTH
        {
            headers.remove(name);
        }
    }
}

/// Sets `X-Forwarded-For/-Proto/-Host` and `Forwarded`. A trusted peer's values are extended; an
/// untrusted peer's are replaced, so a client cannot forge its address.
pub fn add_forwarding_headers(headers: &mut HeaderMap, peer: &Peer, host: Option<&HeaderValue>) {
    let chain = |headers: &HeaderMap, name: &HeaderName| if peer.trusted { joined(headers, name) } else { None };
    let xff = match chain(headers, &X_FORWARDED_FOR) {
        Some(chain) => concat_value(&[&chain, ", ", peer.ip_text()]),
        None => Some(peer.ip()),
    };
    if let Some(xff) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), xff);
    }
    if !(peer.trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    }
    if !(peer.trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match host {
            Some(host) => headers.insert(X_FORWARDED_HOST.clone(), host.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
    let element = peer.forwarded_text();
    let host = host.and_then(|h| h.to_str().ok());
    let forwarded = match (chain(headers, &FORWARDED), host) {
        (None, None) => Some(peer.forwarded()),
        (None, Some(host)) => concat_value(&[element, ";host=\"", host, "\""]),
        (Some(chain), None) => concat_value(&[&chain, ", ", element]),
        (Some(chain), Some(host)) => concat_value(&[&chain, ", ", element, ";host=\"", host, "\""]),
    };
    if let Some(forwarded) = forwarded {
        headers.insert(FORWARDED, forwarded);
    }
}

/// A header value made of `parts`, built in one allocation and handed over without a copy.
fn concat_value(parts: &[&str]) -> Option<HeaderValue> {
    let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    parts.iter().for_each(|part| text.push_str(part));
    HeaderValue::from_maybe_shared(Bytes::from(text)).ok()
}

/// All values of a header joined with `, `, if there are any.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
    let first = values.next()?;
    Some(values.fold(first.to_string(), |mut all, v| {
        all.push_str(", ");
        all.push_str(v);
        all
    }))
}

/// The request's id: the client's when allowed and sane, a new random one otherwise. It is marked
/// sensitive so HTTP/2 (HPACK) sends it as a literal never indexed: an id is unique to its request,
/// so a table entry for it could never be used again and would only push out ones that could.
pub fn request_id(headers: &HeaderMap, settings: &RequestIdSettings) -> HeaderValue {
    let mut id = match headers.get(&settings.header) {
        Some(incoming) if settings.keep_incoming && is_sane_id(incoming.as_bytes()) => incoming.clone(),
        _ => new_request_id(),
    };
    id.set_sensitive(true);
    id
}

fn is_sane_id(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

thread_local! {
    static RNG_STATE: Cell<u64> = Cell::new(std::collections::hash_map::RandomState::new().build_hasher().finish() | 1);
}

/// 128 random bits as 32 hex digits, from a per-thread generator seeded by the OS.
///
/// The digits are the buffer's owner (one allocation, shared as they are): the id is cloned into
/// the upstream request, the response and the access log, and a copied buffer would be allocated
/// again, shared, on its first clone.
pub fn new_request_id() -> HeaderValue {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(&hex_digits(next_random()));
    out[16..].copy_from_slice(&hex_digits(next_random()));
    HeaderValue::from_maybe_shared(Bytes::from_owner(out)).expect("hex digits are a valid header value")
}

/// `word` as 16 lowercase hex digits, most significant first: every nibble is moved into a byte of
/// its own and turned into its digit, eight at a time, with no table and no loop.
fn hex_digits(word: u64) -> [u8; 16] {
    let high = nibbles_to_bytes((word >> 32) as u32);
    let low = nibbles_to_bytes(word as u32);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&nibble_digits(high).to_be_bytes());
    out[8..].copy_from_slice(&nibble_digits(low).to_be_bytes());
    out
}

/// The eight nibbles of `half`, each in a byte of its own, in the same order (the lowest nibble in the
/// lowest byte).
fn nibbles_to_bytes(half: u32) -> u64 {
    let mut x = u64::from(half);
    x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f
}

/// Each byte of `nibbles` (0 to 15) as its hex digit: `'0'` added, and `'a' - '0' - 10` more for
/// those of 10 and up (adding 6 carries into the high nibble exactly for them).
fn nibble_digits(nibbles: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let letters = ((nibbles + 6 * ONES) >> 4) & ONES;
    nibbles + u64::from(b'0') * ONES + letters * u64::from(b'a' - b'0' - 10)
}

/// splitmix64: fast, well mixed; ids need to be unique, not secret.
fn next_random() -> u64 {
    RNG_STATE.with(|state| {
        let next = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str, trusted: &[&str]) -> Peer {
        let nets: Vec<Cidr> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        Peer::new(addr.parse().unwrap(), &nets)
    }

    #[test]
    fn every_connection_line_is_honoured_and_te_trailers_stays() {
        let mut headers = HeaderMap::new();
        headers.append(CONNECTION, HeaderValue::from_static("x-one"));
        headers.append(CONNECTION, HeaderValue::from_static("x-two, upgrade"));
        for name in ["x-one", "x-two", "x-three", "upgrade", "proxy-connection", "transfer-encoding"] {
            headers.insert(name, HeaderValue::from_static("1"));
        }
        headers.insert(TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut headers);
        let mut names: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, vec!["te", "x-three"]);

        let mut headers = HeaderMap::new();
        headers.insert(TE, HeaderValue::from_static("gzip"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(), vec!["x-kept"]);
    }

    #[test]
    fn connection_listed_headers_go_but_host_and_length_stay() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("x-secret, host, content-length, keep-alive"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("host", HeaderValue::from_static("a"));
        headers.insert("content-length", HeaderValue::from_static("3"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut headers);
        let mut names: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, vec!["content-length", "host", "te"]);
    }

    #[test]
    fn untrusted_peer_cannot_forge_forwarding() {
        let mut headers = HeaderMap::new();
        headers.insert(&X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        headers.insert(FORWARDED, HeaderValue::from_static("for=6.6.6.6"));
        add_forwarding_headers(&mut headers, &peer("192.0.2.7:5000", &[]), Some(&HeaderValue::from_static("a.com")));
        assert_eq!(headers[&X_FORWARDED_FOR], "192.0.2.7");
        assert_eq!(headers[&X_FORWARDED_PROTO], "http");
        assert_eq!(headers[&X_FORWARDED_HOST], "a.com");
        assert_eq!(headers[FORWARDED], "for=192.0.2.7;proto=http;host=\"a.com\"");

        headers.insert(&X_FORWARDED_HOST, HeaderValue::from_static("forged.example"));
        add_forwarding_headers(&mut headers, &peer("192.0.2.7:5000", &[]), None);
        assert!(!headers.contains_key(&X_FORWARDED_HOST), "a host-less request kept a forged X-Forwarded-Host");
    }

    #[test]
    fn trusted_peer_chain_is_extended() {
        let mut headers = HeaderMap::new();
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.1"));
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.2"));
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        add_forwarding_headers(&mut headers, &peer("[::ffff:10.1.2.3]:80", &["10.0.0.0/8"]), None);
        assert_eq!(headers[&X_FORWARDED_FOR], "203.0.113.1, 10.0.0.2, 10.1.2.3");
        assert_eq!(headers[&X_FORWARDED_PROTO], "https");
        assert_eq!(headers[FORWARDED], "for=10.1.2.3;proto=http");
    }

    #[test]
    fn ipv6_peer_is_quoted_in_forwarded() {
        let mut headers = HeaderMap::new();
        add_forwarding_headers(&mut headers, &peer("[2001:db8::1]:80", &[]), None);
        assert_eq!(headers[FORWARDED], "for=\"[2001:db8::1]\";proto=http");
        assert_eq!(headers[&X_FORWARDED_FOR], "2001:db8::1");
        headers.insert(&X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.1"));
        let longest = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:80";
        add_forwarding_headers(&mut headers, &peer(longest, &["::/0"]), None);
        assert_eq!(headers[&X_FORWARDED_FOR], "203.0.113.1, ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe");
    }

    #[test]
    fn hex_digits_match_the_formatter() {
        let words = [0, u64::MAX, 0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210, 0x0a0b_0c0d_0e0f_9a9b];
        for word in words.into_iter().chain((0..1000).map(|_| next_random())) {
            assert_eq!(std::str::from_utf8(&hex_digits(word)).unwrap(), format!("{word:016x}"));
        }
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_unique_when_made() {
        let settings = RequestIdSettings {
            enabled: true,
            header: HeaderName::from_static("x-request-id"),
            keep_incoming: true,
            in_response: true,
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&headers, &settings), "abc-123");
        headers.insert("x-request-id", HeaderValue::from_static("has space"));
        let made = request_id(&headers, &settings);
        assert_eq!(made.len(), 32);
        assert_ne!(made, new_request_id());
    }
}
