//! Building a rule's key from a request: the client IP, the route, a header, a cookie, a query or
//! path parameter, or several of them. Parts are fed to a [`KeySink`] one by one, so a local rule
//! hashes them without building a string and a global rule writes them into one buffer.

use std::hash::Hasher;
use std::net::IpAddr;

use http::HeaderName;
use http::header::COOKIE;
use http::request::Parts;
use weir_config::ratelimit::KeyPart;
use weir_config::values::Cidr;

use crate::forward::Peer;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// What a key is built from: the request and its client address, worked out once per request.
pub struct RequestView<'a> {
    pub parts: &'a Parts,
    pub client_ip: IpAddr,
    /// The name of the route the request matched.
    pub route: &'a str,
}

impl<'a> RequestView<'a> {
    pub fn new(parts: &'a Parts, route: &'a str, peer: &Peer, trusted_proxies: &[Cidr]) -> RequestView<'a> {
        RequestView { parts, client_ip: client_ip(parts, peer, trusted_proxies), route }
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy, in which case the
/// nearest `X-Forwarded-For` entry that is not itself a trusted proxy (the leftmost when all are).
pub fn client_ip(parts: &Parts, peer: &Peer, trusted_proxies: &[Cidr]) -> IpAddr {
    let peer_ip = peer.addr.ip().to_canonical();
    if !peer.trusted {
        return peer_ip;
    }
    let mut nearest = peer_ip;
    let values = parts.headers.get_all(&X_FORWARDED_FOR).iter().rev();
    for entry in values.filter_map(|v| v.to_str().ok()).flat_map(|v| v.rsplit(',')) {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else { return nearest };
        nearest = ip.to_canonical();
        if !trusted_proxies.iter().any(|net| net.contains(nearest)) {
            break;
        }
    }
    nearest
}

/// Where key parts go.
pub trait KeySink {
    fn part(&mut self, bytes: &[u8]);
}

/// Feeds parts to a hasher, each followed by a separator so `ab`+`c` and `a`+`bc` differ.
pub struct HashSink<H>(pub H);

impl<H: Hasher> KeySink for HashSink<H> {
    fn part(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
        self.0.write_u8(0xff);
    }
}

impl KeySink for Vec<u8> {
    fn part(&mut self, bytes: &[u8]) {
        if !self.is_empty() {
            self.push(0x1f);
        }
        self.extend_from_slice(bytes);
    }
}

/// A rule's key, compiled.
pub struct KeySpec {
    parts: Box<[CompiledPart]>,
}

enum CompiledPart {
    ClientIp,
    Route,
    Header(HeaderName),
    Cookie(Box<str>),
    Query(Box<str>),
    /// The `index`th path segment, or with `rest` everything from it on.
    PathSegment {
        index: usize,
        rest: bool,
    },
}

impl KeySpec {
    /// Compiles key parts for a route whose path template is `template` (if any). Validation
    /// guarantees a path part's parameter is in the template.
    pub fn new(parts: &[KeyPart], template: Option<&str>) -> KeySpec {
        let compile = |part: &KeyPart| match part {
            KeyPart::ClientIp => CompiledPart::ClientIp,
            KeyPart::Route => CompiledPart::Route,
            KeyPart::Header(name) => CompiledPart::Header(name.0.clone()),
            KeyPart::Cookie(name) => CompiledPart::Cookie(name.as_str().into()),
            KeyPart::Query(name) => CompiledPart::Query(name.as_str().into()),
            KeyPart::PathParam(name) => path_segment(template.unwrap_or_default(), name),
        };
        KeySpec { parts: parts.iter().map(compile).collect() }
    }

    /// Feeds the request's key to `sink`; `false` when a part is missing from the request, in which
    /// case the rule does not apply to it.
    pub fn build(&self, view: &RequestView, sink: &mut impl KeySink) -> bool {
        for part in &self.parts {
            let found = match part {
                CompiledPart::ClientIp => {
                    match view.client_ip {
                        IpAddr::V4(v4) => sink.part(&v4.octets()),
                        IpAddr::V6(v6) => sink.part(&v6.octets()),
                    }
                    true
                }
                CompiledPart::Route => {
                    sink.part(view.route.as_bytes());
                    true
                }
                CompiledPart::Header(name) => view.parts.headers.get(name).map(|v| sink.part(v.as_bytes())).is_some(),
                CompiledPart::Cookie(name) => cookie(view.parts, name).map(|v| sink.part(v.as_bytes())).is_some(),
                CompiledPart::Query(name) => query(view.parts, name).map(|v| sink.part(v.as_bytes())).is_some(),
                CompiledPart::PathSegment { index, rest } => {
                    segment(view.parts.uri.path(), *index, *rest).map(|v| sink.part(v.as_bytes())).is_some()
                }
            };
            if !found {
                return false;
            }
        }
        true
    }
}

fn path_segment(template: &str, name: &str) -> CompiledPart {
    let segments = template.trim_start_matches('/').split('/');
    for (index, segment) in segments.enumerate() {
        let inner = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
        match inner {
            Some(param) if param == name => return CompiledPart::PathSegment { index, rest: false },
            Some(param) if param.strip_prefix('*') == Some(name) => {
                return CompiledPart::PathSegment { index, rest: true };
            }
            _ => {}
        }
    }
    unreachable!("validation keeps path keys to the route's template parameters")
}

/// The `index`th segment of `path` (after the leading `/`), or with `rest` the path from it on.
fn segment(path: &str, index: usize, rest: bool) -> Option<&str> {
    let path = path.strip_prefix('/')?;
    if rest {
        let start = path.split('/').take(index).map(|s| s.len() + 1).sum::<usize>();
        return path.get(start..).filter(|s| !s.is_empty());
    }
    path.split('/').nth(index).filter(|s| !s.is_empty())
}

fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    let values = parts.headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok());
    values.flat_map(|v| v.split(';')).find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

fn query<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

#[cfg(test)]
mod tests;
