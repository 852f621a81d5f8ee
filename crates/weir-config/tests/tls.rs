//! A listener's `tls` section: defaults, unquoted versions, and the checks serde cannot make (names,
//! wildcards, the default certificate, routes on client identities).

use weir_config::{Alpn, Format, TlsVersion, parse_str};

fn listener(tls: &str) -> String {
    format!("listeners:\n  - name: secure\n    address: 127.0.0.1:8443\n    tls: {tls}\n")
}

fn problems(text: &str) -> Vec<String> {
    match parse_str(text, Format::Yaml, "test.yaml") {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.problems().iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn defaults_offer_h2_and_http1_from_tls_1_2_with_resumption() {
    let config =
        parse_str(&listener("{ certificates: [{ cert: a.crt, key: a.key }] }"), Format::Yaml, "t.yaml").unwrap();
    let tls = config.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.alpn, [Alpn::H2, Alpn::Http11]);
    assert_eq!(tls.min_version, TlsVersion::Tls12);
    assert!(tls.session_tickets && tls.watch && tls.session_cache > 10_000);
    assert!(tls.client_auth.is_none());
}

#[test]
fn versions_and_alpn_ids_are_written_as_on_the_wire() {
    let text = listener("{ certificates: [{ cert: a.crt, key: a.key }], min_version: 1.3, alpn: [http/1.1] }");
    let config = parse_str(&text, Format::Yaml, "t.yaml").unwrap();
    let tls = config.listeners[0].tls.as_ref().unwrap();
    assert_eq!((tls.min_version, tls.alpn.as_slice()), (TlsVersion::Tls13, &[Alpn::Http11][..]));
}

#[test]
fn bad_names_defaults_and_empty_lists_are_named_by_field() {
    let text = listener(
        "{ certificates: [{ name: a, cert: a.crt, key: a.key, server_names: [\"a.*.example.com\"] }, { name: a, cert: b.crt, key: b.key }], default_certificate: c, alpn: [] }",
    );
    let found = problems(&text);
    for expected in [
        "listeners[0].tls.certificates[0].server_names: \"a.*.example.com\"",
        "listeners[0].tls.certificates[1].name: name \"a\" is used twice",
        "listeners[0].tls.default_certificate: no certificate named \"c\"",
        "listeners[0].tls.alpn: name at least one",
    ] {
        assert!(found.iter().any(|p| p.contains(expected)), "{expected} not in {found:#?}");
    }
    assert!(problems(&listener("{ certificates: [] }"))[0].contains("listeners[0].tls.certificates"));
}

#[test]
fn a_route_on_a_spiffe_id_needs_a_listener_that_verifies_clients() {
    let route =
        "routes:\n  - { match: { client_spiffe_id: \"spiffe://example.org/a\" }, direct_response: { status: 200 } }\n";
    let plain = format!("{}{route}", listener("{ certificates: [{ cert: a.crt, key: a.key }] }"));
    let found = problems(&plain);
    assert!(found[0].contains("routes[0].match.client_spiffe_id") && found[0].contains("client_auth"), "{found:?}");
    let verifying = listener("{ certificates: [{ cert: a.crt, key: a.key }], client_auth: { ca: ca.pem } }");
    parse_str(&format!("{verifying}{route}"), Format::Yaml, "t.yaml").unwrap();
}

#[test]
fn upstream_tls_takes_a_ca_a_server_name_and_a_client_certificate() {
    let upstream = |extra: &str| {
        format!(
            "{}upstreams:\n  secure:\n    endpoints: [\"10.0.0.1:443\"]\n    tls: {{ ca: ca.pem, server_name: backend.internal, client_certificate: {{ cert: c.crt, key: c.key }} }}\n{extra}",
            listener("{ certificates: [{ cert: a.crt, key: a.key }] }")
        )
    };
    let config = parse_str(&upstream(""), Format::Yaml, "t.yaml").unwrap();
    let tls = config.upstreams["secure"].tls.as_ref().unwrap();
    assert_eq!(tls.server_name.as_deref(), Some("backend.internal"));
    assert!(tls.client_certificate.is_some());
    let found = problems(&upstream("").replace("backend.internal", "bad name"));
    assert!(found[0].contains("upstreams.secure.tls.server_name"), "{found:?}");
}
