//! TLS termination over real sockets, with certificates made when the test runs: certificates by
//! SNI (exact, wildcard, default), h2 through ALPN, certificate files replaced on disk and by a
//! configuration reload, mutual TLS with the client's identity in the access log, resumption, and
//! TLS turned on and off by a reload on the same socket.

use std::path::{Path, PathBuf};
use std::time::Instant;

use http::Request;
use weir_test::tls::{
    Leaf, TestCa, accept_any_server_config, client_config, client_config_with, served_certificate, tls_connect,
    tls_request, write_atomically,
};
use weir_test::{MockUpstream, TEST_TIMEOUT, TestGateway};

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-tls-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A gateway with one TLS listener (`tls` is the listener's `tls:` value) and a route to `mock`.
fn config(mock: &MockUpstream, tls: &str, extra: &str) -> String {
    format!(
        "{extra}listeners:\n  - name: secure\n    address: 127.0.0.1:0\n    tls: {tls}\nupstreams:\n  app: {{ endpoints: [\"{}\"] }}\nroutes:\n  - {{ name: app, upstream: app }}\n",
        mock.addr()
    )
}

fn certificate(cert: &Path, key: &Path) -> String {
    format!("{{ cert: \"{}\", key: \"{}\" }}", cert.display(), key.display())
}

fn get(host: &str) -> Request<String> {
    Request::get("/hello").header("host", host).body(String::new()).unwrap()
}

/// The value of the series whose line starts with `series` (name, labels and a space).
fn counter(gateway: &TestGateway, series: &str) -> u64 {
    let text = gateway.gateway().metrics().encode();
    let line = text.lines().find(|line| line.starts_with(series)).unwrap_or_else(|| panic!("{series} missing"));
    line[series.len()..].trim().parse().unwrap()
}

/// Polls the gateway's metrics until `line` is there.
async fn metric_reaches(gateway: &TestGateway, line: &str) {
    let deadline = Instant::now() + TEST_TIMEOUT;
    loop {
        let text = gateway.gateway().metrics().encode();
        if text.contains(line) {
            return;
        }
        assert!(Instant::now() < deadline, "{line} not in the metrics:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn certificates_are_chosen_by_exact_name_wildcard_or_default() {
    let dir = temp_dir("sni");
    let ca = TestCa::new("weir test CA");
    let (api, wild, fallback) =
        (ca.server(&["api.example.com"]), ca.server(&["*.example.org"]), ca.server(&["fallback.test"]));
    let (api_cert, api_key) = api.write(&dir, "api");
    let (wild_cert, wild_key) = wild.write(&dir, "wild");
    let (fallback_cert, fallback_key) = fallback.write(&dir, "fallback");
    let tls = format!(
        "{{ certificates: [{}, {}, {{ name: fallback, cert: \"{}\", key: \"{}\" }}], default_certificate: fallback }}",
        certificate(&api_cert, &api_key),
        certificate(&wild_cert, &wild_key),
        fallback_cert.display(),
        fallback_key.display()
    );
    let mock = MockUpstream::start("app").await;
    let gateway = TestGateway::start(&config(&mock, &tls, "")).await;
    let trusting = client_config(&ca, &["http/1.1"], None);
    let any = accept_any_server_config();
    for (name, client, expected) in [
        ("api.example.com", &trusting, &api),
        ("www.example.org", &trusting, &wild),
        ("a.b.example.org", &any, &fallback),
        ("unknown.test", &any, &fallback),
    ] {
        let stream = tls_connect(gateway.addr(), name, client).await.unwrap();
        assert_eq!(served_certificate(&stream), expected.der, "the certificate served for {name}");
        let answer = tls_request(stream, get(name)).await.unwrap();
        assert_eq!(answer.status, 200, "{name}");
    }
    let text = gateway.gateway().metrics().encode();
    assert!(text.contains("weir_tls_handshakes_total{listener=\"secure\",result=\"ok\"} 4"), "{text}");
    let expiry = "weir_tls_certificate_expiry_timestamp_seconds{listener=\"secure\",certificate=\"fallback\"} ";
    assert!(text.contains(expiry) && text.contains("certificate=\"certificates[0]\""), "{text}");
}

#[tokio::test]
async fn alpn_h2_serves_http2_and_the_access_log_says_so() {
    let dir = temp_dir("alpn");
    let ca = TestCa::new("weir test CA");
    let (cert, key) = ca.server(&["api.example.com"]).write(&dir, "api");
    let log = dir.join("access.log");
    let mock = MockUpstream::start("app").await;
    let tls = format!("{{ certificates: [{}] }}", certificate(&cert, &key));
    let gateway =
        TestGateway::start(&config(&mock, &tls, &format!("access_log: {{ path: \"{}\" }}\n", log.display()))).await;
    let stream =
        tls_connect(gateway.addr(), "api.example.com", &client_config(&ca, &["h2", "http/1.1"], None)).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let answer = tls_request(stream, get("api.example.com")).await.unwrap();
    assert_eq!(answer.status, 200);
    let line = read_log_line(&log).await;
    assert_eq!(line["protocol"], "HTTP/2");
    assert_eq!(line["alpn"], "h2");
    assert_eq!(line["tls_sni"], "api.example.com");
    assert_eq!(line["tls_version"], "1.3");
    assert!(line.get("tls_client_subject").is_none(), "{line}");
}

/// Polls the log until it has a complete line, and parses the first.
async fn read_log_line(path: &Path) -> serde_json::Value {
    let deadline = Instant::now() + TEST_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some((line, _)) = text.split_once('\n') {
            return serde_json::from_str(line).unwrap();
        }
        assert!(Instant::now() < deadline, "no access-log line");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Connects until the served certificate is `expected` (the watcher reloads after a debounce).
async fn served_becomes(gateway: &TestGateway, ca: &TestCa, expected: &Leaf) {
    let client = client_config(ca, &["http/1.1"], None);
    let deadline = Instant::now() + TEST_TIMEOUT;
    loop {
        let stream = tls_connect(gateway.addr(), "api.example.com", &client).await.unwrap();
        if served_certificate(&stream) == expected.der {
            return;
        }
        assert!(Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_serves_new_connections_and_a_broken_one_is_refused() {
    let dir = temp_dir("replace");
    let ca = TestCa::new("weir test CA");
    let first = ca.server(&["api.example.com"]);
    let (cert, key) = first.write(&dir, "api");
    let mock = MockUpstream::start("app").await;
    let gateway =
        TestGateway::start(&config(&mock, &format!("{{ certificates: [{}] }}", certificate(&cert, &key)), "")).await;
    served_becomes(&gateway, &ca, &first).await;
    let second = ca.server(&["api.example.com"]);
    second.write(&dir, "api");
    served_becomes(&gateway, &ca, &second).await;
    metric_reaches(&gateway, "weir_tls_certificate_reloads_total{listener=\"secure\",result=\"success\"} 1").await;
    // (The key and the certificate are two renames: a watcher that saw them apart counted one failure.)
    let failures = "weir_tls_certificate_reloads_total{listener=\"secure\",result=\"failure\"} ";
    let before = counter(&gateway, failures);
    // A key that belongs to another certificate: refused, counted, and the second keeps serving.
    write_atomically(&key, &ca.server(&["api.example.com"]).key_pem);
    metric_reaches(&gateway, &format!("{failures}{}", before + 1)).await;
    served_becomes(&gateway, &ca, &second).await;
}

#[tokio::test]
async fn a_reload_that_changes_only_certificates_applies_without_a_restart() {
    let dir = temp_dir("reload");
    let ca = TestCa::new("weir test CA");
    let (first, second) = (ca.server(&["api.example.com"]), ca.server(&["api.example.com"]));
    let (cert_a, key_a) = first.write(&dir, "a");
    let (cert_b, key_b) = second.write(&dir, "b");
    let mock = MockUpstream::start("app").await;
    let tls = |cert: &Path, key: &Path| format!("{{ certificates: [{}], watch: false }}", certificate(cert, key));
    let gateway = TestGateway::start(&config(&mock, &tls(&cert_a, &key_a), "")).await;
    served_becomes(&gateway, &ca, &first).await;
    let diff = gateway.reload(&config(&mock, &tls(&cert_b, &key_b), "")).unwrap();
    assert_eq!(diff.tls_changed, ["secure"]);
    served_becomes(&gateway, &ca, &second).await;
    let error = gateway.reload(&config(&mock, &tls(&cert_a, &key_b), "")).unwrap_err().to_string();
    assert!(error.contains("listeners[0].tls.certificates[0].key") && error.contains("does not match"), "{error}");
    served_becomes(&gateway, &ca, &second).await;
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_valid_certificate_and_logs_the_identity() {
    let dir = temp_dir("mtls");
    let ca = TestCa::new("weir test CA");
    let (cert, key) = ca.server(&["api.example.com"]).write(&dir, "api");
    let ca_file = dir.join("clients.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let log = dir.join("access.log");
    let mock = MockUpstream::start("app").await;
    let tls =
        format!("{{ certificates: [{}], client_auth: {{ ca: \"{}\" }} }}", certificate(&cert, &key), ca_file.display());
    let gateway =
        TestGateway::start(&config(&mock, &tls, &format!("access_log: {{ path: \"{}\" }}\n", log.display()))).await;
    let addr = gateway.addr();

    let anonymous = client_config(&ca, &["http/1.1"], None);
    let refused = match tls_connect(addr, "api.example.com", &anonymous).await {
        Ok(stream) => tls_request(stream, get("api.example.com")).await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a client without a certificate was served");
    metric_reaches(&gateway, "result=\"no_client_certificate\"} 1").await;

    let stranger = TestCa::new("another CA").client("intruder", &[]);
    let untrusted = client_config(&ca, &["http/1.1"], Some(&stranger));
    let refused = match tls_connect(addr, "api.example.com", &untrusted).await {
        Ok(stream) => tls_request(stream, get("api.example.com")).await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a client with a certificate from another CA was served");
    metric_reaches(&gateway, "result=\"bad_client_certificate\"} 1").await;
    assert_eq!(mock.count(), 0);

    let billing = ca.client("billing", &["spiffe://example.org/billing"]);
    let trusted = client_config(&ca, &["http/1.1"], Some(&billing));
    let stream = tls_connect(addr, "api.example.com", &trusted).await.unwrap();
    assert_eq!(tls_request(stream, get("api.example.com")).await.unwrap().status, 200);
    let line = read_log_line(&log).await;
    assert_eq!(line["tls_client_subject"], "CN=billing");
    assert_eq!(line["tls_client_spiffe_id"], "spiffe://example.org/billing");
}

#[tokio::test]
async fn sessions_resume_with_tickets_and_with_session_ids() {
    let dir = temp_dir("resume");
    let ca = TestCa::new("weir test CA");
    let (cert, key) = ca.server(&["api.example.com"]).write(&dir, "api");
    let mock = MockUpstream::start("app").await;
    let gateway =
        TestGateway::start(&config(&mock, &format!("{{ certificates: [{}] }}", certificate(&cert, &key)), "")).await;
    let tls13 = client_config(&ca, &["http/1.1"], None);
    // TLS 1.2 without tickets resumes by session id, from the server's session cache.
    let mut tls12 = (*client_config_with(&ca, &["http/1.1"], None, &[&rustls::version::TLS12])).clone();
    tls12.resumption =
        std::mem::take(&mut tls12.resumption).tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
    let tls12 = std::sync::Arc::new(tls12);
    for client in [&tls13, &tls12] {
        for attempt in 0..2 {
            let stream = tls_connect(gateway.addr(), "api.example.com", client).await.unwrap();
            let kind = stream.get_ref().1.handshake_kind();
            // A request's round trip also brings the TLS 1.3 tickets the server sends after the handshake.
            assert_eq!(tls_request(stream, get("api.example.com")).await.unwrap().status, 200);
            let resumed = kind == Some(rustls::HandshakeKind::Resumed);
            assert_eq!(resumed, attempt == 1, "attempt {attempt}: {kind:?}");
        }
    }
    metric_reaches(&gateway, "weir_tls_handshakes_resumed_total{listener=\"secure\"} 2").await;
}

#[tokio::test]
async fn routes_match_the_client_spiffe_id_and_optional_client_auth_serves_anonymous_clients() {
    let dir = temp_dir("spiffe");
    let ca = TestCa::new("weir test CA");
    let (cert, key) = ca.server(&["api.example.com"]).write(&dir, "api");
    let ca_file = dir.join("clients.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let yaml = format!(
        "listeners:\n  - name: secure\n    address: 127.0.0.1:0\n    tls: {{ certificates: [{}], client_auth: {{ ca: \"{}\", required: false }} }}\nroutes:\n  - {{ match: {{ client_spiffe_id: \"spiffe://example.org/billing\" }}, direct_response: {{ status: 200, body: billing }} }}\n  - {{ direct_response: {{ status: 200, body: anyone }} }}\n",
        certificate(&cert, &key),
        ca_file.display()
    );
    let gateway = TestGateway::start(&yaml).await;
    let billing = ca.client("billing", &["spiffe://example.org/billing"]);
    let other = ca.client("search", &["spiffe://example.org/search"]);
    for (identity, expected) in [(Some(&billing), "billing"), (Some(&other), "anyone"), (None, "anyone")] {
        let client = client_config(&ca, &["h2"], identity);
        let stream = tls_connect(gateway.addr(), "api.example.com", &client).await.unwrap();
        assert_eq!(tls_request(stream, get("api.example.com")).await.unwrap().text(), expected);
    }
}

#[tokio::test]
async fn the_framing_guard_refuses_bad_http1_framing_over_tls_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = temp_dir("framing");
    let ca = TestCa::new("weir test CA");
    let (cert, key) = ca.server(&["api.example.com"]).write(&dir, "api");
    let mock = MockUpstream::start("app").await;
    let gateway =
        TestGateway::start(&config(&mock, &format!("{{ certificates: [{}] }}", certificate(&cert, &key)), "")).await;
    let mut stream =
        tls_connect(gateway.addr(), "api.example.com", &client_config(&ca, &["http/1.1"], None)).await.unwrap();
    let smuggling =
        "POST /a HTTP/1.1\r\nhost: api.example.com\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
    stream.write_all(smuggling.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(TEST_TIMEOUT, stream.read_to_end(&mut answer)).await.expect("an answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn a_reload_with_one_bad_listener_certificate_changes_no_listener() {
    let dir = temp_dir("all-or-nothing");
    let ca = TestCa::new("weir test CA");
    let (old, new) = (ca.server(&["api.example.com"]), ca.server(&["api.example.com"]));
    let (old_cert, old_key) = old.write(&dir, "old");
    let (new_cert, new_key) = new.write(&dir, "new");
    let (_, stray_key) = ca.server(&["api.example.com"]).write(&dir, "stray");
    let yaml = |first: (&Path, &Path), second: (&Path, &Path)| {
        format!(
            "listeners:\n  - {{ name: one, address: \"127.0.0.1:0\", tls: {{ certificates: [{}], watch: false }} }}\n  - {{ name: two, address: \"127.0.0.1:0\", tls: {{ certificates: [{}], watch: false }} }}\nroutes:\n  - {{ direct_response: {{ status: 200 }} }}\n",
            certificate(first.0, first.1),
            certificate(second.0, second.1)
        )
    };
    let gateway = TestGateway::start(&yaml((&old_cert, &old_key), (&old_cert, &old_key))).await;
    let error = gateway.reload(&yaml((&new_cert, &new_key), (&new_cert, &stray_key))).unwrap_err().to_string();
    assert!(error.contains("listeners[1].tls.certificates[0].key"), "{error}");
    let client = client_config(&ca, &["http/1.1"], None);
    let first = tls_connect(gateway.listener("one"), "api.example.com", &client).await.unwrap();
    assert_eq!(served_certificate(&first), old.der, "listener one changed although the reload failed");
}

#[tokio::test]
async fn a_reload_turns_tls_on_and_off_on_the_same_socket() {
    let dir = temp_dir("turned-on");
    let ca = TestCa::new("weir test CA");
    let leaf = ca.server(&["api.example.com"]);
    let (cert, key) = leaf.write(&dir, "leaf");
    let mock = MockUpstream::start("app").await;
    let cleartext = config(&mock, "null", "");
    let secured = config(&mock, &format!("{{ certificates: [{}], watch: false }}", certificate(&cert, &key)), "");
    let path = dir.join("weir.yaml");
    std::fs::write(&path, &cleartext).unwrap();
    let gateway = TestGateway::start_file(path.clone()).await;
    let address = gateway.listener("secure");
    let plain = || weir_test::http1_request(address, get("api.example.com"));
    assert_eq!(plain().await.unwrap().status, 200);

    std::fs::write(&path, &secured).unwrap();
    gateway.reload_file().await.expect("TLS turned on");
    assert_eq!(gateway.listener("secure"), address);
    let client = client_config(&ca, &["http/1.1"], None);
    let stream = tls_connect(address, "api.example.com", &client).await.expect("a TLS handshake");
    assert_eq!(served_certificate(&stream), leaf.der);
    assert_eq!(tls_request(stream, get("api.example.com")).await.unwrap().status, 200);

    std::fs::write(&path, &cleartext).unwrap();
    gateway.reload_file().await.expect("TLS turned off");
    assert_eq!(plain().await.unwrap().status, 200);
}
