//! The request key a consistent-hash cluster balances on: a header, a cookie, the client's IP address
//! or the path. Hashed with a stable function, so every weir node sends a key to the same endpoint.

use std::net::IpAddr;

use http::HeaderName;
use http::header::COOKIE;
use http::request::Parts;

use crate::rng::stable_hash;

/// Where a request's balancing key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    Header(HeaderName),
    Cookie(String),
    ClientIp,
    Path,
}

impl HashKey {
    /// The key's hash for this request; `None` when the request does not carry the key.
    pub fn hash(&self, request: &Parts, client: IpAddr) -> Option<u64> {
        match self {
            HashKey::Header(name) => request.headers.get(name).map(|value| stable_hash(value.as_bytes())),
            HashKey::Cookie(name) => cookie(request, name).map(stable_hash),
            HashKey::ClientIp => Some(match client {
                IpAddr::V4(v4) => stable_hash(&v4.octets()),
                IpAddr::V6(v6) => stable_hash(&v6.octets()),
            }),
            HashKey::Path => Some(stable_hash(request.uri.path().as_bytes())),
        }
    }
}

/// The value of the first cookie called `name`, from any `Cookie` header.
fn cookie<'a>(request: &'a Parts, name: &str) -> Option<&'a [u8]> {
    request.headers.get_all(COOKIE).iter().find_map(|header| {
        header.as_bytes().split(|b| *b == b';').find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().uri("/a/b?x=1");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn cookies_are_found_among_others() {
        let key = HashKey::Cookie("session".into());
        let request = parts(&[("cookie", "a=1; session=abc"), ("cookie", "b=2")]);
        assert_eq!(key.hash(&request, CLIENT), Some(stable_hash(b"abc")));
        assert_eq!(key.hash(&parts(&[("cookie", "sessionx=abc")]), CLIENT), None);
    }

    #[test]
    fn missing_keys_give_none() {
        assert_eq!(HashKey::Header(HeaderName::from_static("x-user")).hash(&parts(&[]), CLIENT), None);
        assert!(HashKey::Path.hash(&parts(&[]), CLIENT).is_some());
    }

    #[test]
    fn the_path_key_ignores_the_query() {
        let a = HashKey::Path.hash(&parts(&[]), CLIENT);
        let b = http::Request::builder().uri("/a/b?y=2").body(()).unwrap().into_parts().0;
        assert_eq!(a, HashKey::Path.hash(&b, CLIENT));
    }
}
