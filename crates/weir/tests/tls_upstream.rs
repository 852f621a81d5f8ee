//! TLS to upstreams, against an upstream that speaks TLS with a certificate made when the test
//! runs: verification against a CA file with a server name override, a client certificate for an
//! upstream that requires one, and the refusals when verification or the client certificate fails.

use std::path::{Path, PathBuf};

use http::Request;
use weir_test::tls::{TestCa, TlsUpstream};
use weir_test::{TestGateway, http1_request};

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-tls-upstream-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(upstream: &TlsUpstream, tls: &str) -> String {
    format!(
        "listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]\nupstreams:\n  secure:\n    endpoints: [\"{}\"]\n    tls: {tls}\nroutes:\n  - {{ name: secure, upstream: secure }}\n",
        upstream.addr()
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn get(gateway: &TestGateway) -> (u16, String, Option<String>) {
    let request = Request::get("/x").header("host", "api.example.com").body(String::new()).unwrap();
    let answer = http1_request(gateway.addr(), request).await.unwrap();
    (answer.status.as_u16(), answer.text(), answer.header("proxy-status").map(str::to_string))
}

#[tokio::test]
async fn weir_verifies_the_upstream_against_its_ca_with_the_server_name_given() {
    let dir = temp_dir("verify");
    let ca = TestCa::new("upstream CA");
    let upstream = TlsUpstream::start(&ca.server(&["backend.internal"]), None).await;
    let ca_file = write(&dir, "ca.pem", &ca.pem());
    let tls = format!("{{ ca: \"{ca_file}\", server_name: backend.internal }}");
    let gateway = TestGateway::start(&config(&upstream, &tls)).await;
    let (status, body, _) = get(&gateway).await;
    assert_eq!((status, body.as_str()), (200, "secure"));
    assert_eq!(upstream.seen()[0].server_name.as_deref(), Some("backend.internal"));
    // The upstream closes every connection after one answer: the next connection resumes the session.
    assert_eq!(get(&gateway).await.0, 200);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    assert!(!seen[0].resumed && seen[1].resumed, "{seen:?}");

    let stranger = TestCa::new("another CA");
    let other_file = write(&dir, "other.pem", &stranger.pem());
    let tls = format!("{{ ca: \"{other_file}\", server_name: backend.internal }}");
    let untrusting = TestGateway::start(&config(&upstream, &tls)).await;
    let (status, _, proxy_status) = get(&untrusting).await;
    assert_eq!(status, 502);
    assert!(proxy_status.unwrap().contains("connect_error"));
}

#[tokio::test]
async fn weir_presents_its_client_certificate_to_an_upstream_that_requires_one() {
    let dir = temp_dir("mtls");
    let ca = TestCa::new("mesh CA");
    let upstream = TlsUpstream::start(&ca.server(&["backend.internal"]), Some(&ca)).await;
    let ca_file = write(&dir, "ca.pem", &ca.pem());
    let (cert, key) = ca.client("weir", &["spiffe://example.org/weir"]).write(&dir, "weir");
    let with_certificate = format!(
        "{{ ca: \"{ca_file}\", server_name: backend.internal, client_certificate: {{ cert: \"{}\", key: \"{}\" }} }}",
        cert.display(),
        key.display()
    );
    let gateway = TestGateway::start(&config(&upstream, &with_certificate)).await;
    assert_eq!(get(&gateway).await.0, 200);
    assert!(upstream.seen()[0].client_certificate);

    let without = format!("{{ ca: \"{ca_file}\", server_name: backend.internal }}");
    let anonymous = TestGateway::start(&config(&upstream, &without)).await;
    assert_eq!(get(&anonymous).await.0, 502);
}

#[tokio::test]
async fn health_checks_speak_tls_to_a_tls_upstream() {
    let dir = temp_dir("health");
    let ca = TestCa::new("upstream CA");
    let upstream = TlsUpstream::start(&ca.server(&["backend.internal"]), None).await;
    let ca_file = write(&dir, "ca.pem", &ca.pem());
    let tls = format!(
        "{{ ca: \"{ca_file}\", server_name: backend.internal }}\n    health_check: {{ path: /healthz, interval: 50ms, jitter: 0s }}"
    );
    let gateway = TestGateway::start(&config(&upstream, &tls)).await;
    // Probes alone (no request yet) complete TLS handshakes with the upstream.
    let deadline = std::time::Instant::now() + weir_test::TEST_TIMEOUT;
    while upstream.seen().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no health probe over TLS reached the upstream");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(upstream.seen().iter().all(|seen| seen.server_name.as_deref() == Some("backend.internal")));
    assert_eq!(get(&gateway).await.0, 200);
}
