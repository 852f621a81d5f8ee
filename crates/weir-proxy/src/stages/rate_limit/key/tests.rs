use std::net::SocketAddr;

use http::Request;
use weir_config::ratelimit::KeyPart;

use super::*;

fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut builder = Request::get(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

fn cidrs(list: &[&str]) -> Vec<Cidr> {
    list.iter().map(|c| c.parse().unwrap()).collect()
}

fn peer(addr: &str, trusted: &[Cidr]) -> Peer {
    Peer::new(addr.parse::<SocketAddr>().unwrap(), trusted)
}

/// The key a spec builds, as bytes, or `None` when a part is missing.
fn key(spec: &[&str], template: Option<&str>, parts: &Parts) -> Option<Vec<u8>> {
    let spec: Vec<KeyPart> = spec.iter().map(|p| p.parse().unwrap()).collect();
    let view = RequestView { parts, client_ip: "192.0.2.1".parse().unwrap(), route: "items" };
    let mut out = Vec::new();
    KeySpec::new(&spec, template).build(&view, &mut out).then_some(out)
}

#[test]
fn an_untrusted_peer_is_the_client_whatever_it_claims() {
    let trusted = cidrs(&["10.0.0.0/8"]);
    let request = parts("/", &[("x-forwarded-for", "1.2.3.4")]);
    assert_eq!(
        client_ip(&request, &peer("203.0.113.9:5000", &trusted), &trusted),
        "203.0.113.9".parse::<IpAddr>().unwrap()
    );
}

#[test]
fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() {
    let trusted = cidrs(&["10.0.0.0/8"]);
    let request = parts("/", &[("x-forwarded-for", "6.6.6.6, 198.51.100.7"), ("x-forwarded-for", "10.1.1.1")]);
    let ip = client_ip(&request, &peer("10.0.0.2:5000", &trusted), &trusted);
    assert_eq!(ip, "198.51.100.7".parse::<IpAddr>().unwrap());
    let all_trusted = parts("/", &[("x-forwarded-for", "10.2.2.2, 10.3.3.3")]);
    let ip = client_ip(&all_trusted, &peer("10.0.0.2:5000", &trusted), &trusted);
    assert_eq!(ip, "10.2.2.2".parse::<IpAddr>().unwrap());
    let garbage = parts("/", &[("x-forwarded-for", "nonsense")]);
    let ip = client_ip(&garbage, &peer("10.0.0.2:5000", &trusted), &trusted);
    assert_eq!(ip, "10.0.0.2".parse::<IpAddr>().unwrap());
}

#[test]
fn parts_come_from_headers_cookies_queries_and_paths() {
    let request =
        parts("/tenants/acme/files/a/b?page=2&user=bob", &[("x-api-key", "k1"), ("cookie", "theme=dark; session=s42")]);
    let template = Some("/tenants/{tenant}/files/{*rest}");
    assert_eq!(key(&["header:x-api-key"], None, &request).unwrap(), b"k1");
    assert_eq!(key(&["cookie:session"], None, &request).unwrap(), b"s42");
    assert_eq!(key(&["query:user"], None, &request).unwrap(), b"bob");
    assert_eq!(key(&["path:tenant"], template, &request).unwrap(), b"acme");
    assert_eq!(key(&["path:rest"], template, &request).unwrap(), b"a/b");
    assert_eq!(key(&["route", "query:page"], None, &request).unwrap(), b"items\x1f2");
    assert_eq!(key(&["client_ip"], None, &request).unwrap(), [192, 0, 2, 1]);
}

#[test]
fn a_missing_part_means_no_key() {
    let request = parts("/?other=1", &[("cookie", "theme=dark")]);
    assert!(key(&["header:x-api-key"], None, &request).is_none());
    assert!(key(&["cookie:session"], None, &request).is_none());
    assert!(key(&["query:user"], None, &request).is_none());
    assert!(key(&["client_ip", "query:user"], None, &request).is_none());
}
