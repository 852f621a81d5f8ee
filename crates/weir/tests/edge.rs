//! Hostile and broken input at the edge, sent as raw bytes: every malformed-framing probe is answered
//! 400 and nothing reaches the upstream; limits answer 413, 414, 431; slow and idle clients are cut.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_test::{MockUpstream, TestGateway, raw_exchange};

async fn guarded_gateway(mock: &MockUpstream, listener_extra: &str) -> TestGateway {
    let text = format!(
        "listeners:\n  - name: public\n    address: 127.0.0.1:0\n{listener_extra}upstreams:\n  backend:\n    endpoints: [\"{}\"]\nroutes:\n  - upstream: backend\n    max_body_size: 100\n",
        mock.addr()
    );
    TestGateway::start(&text).await
}

/// Head-level probes: the gateway must refuse before any upstream connection is made.
const HEAD_PROBES: &[(&str, &str)] = &[
    ("cl then te", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("te then cl", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
    ("differing cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("cl list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!"),
    ("signed cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello"),
    ("hex cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello"),
    ("te xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
    ("te gzip chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    (
        "te chunked twice",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    ("te identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n"),
    ("te space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
    ("te vertical tab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n"),
    ("te on http/1.0", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("bare lf in head", "GET / HTTP/1.1\nHost: a\n\n"),
    ("bare lf after header", "GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n"),
    ("bare cr in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n"),
    ("nul in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n"),
    ("space in name", "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n"),
    ("empty name", "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n"),
    ("obs fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n"),
    ("bad version", "GET / HTTP/1.2\r\nHost: a\r\n\r\n"),
    ("extra space in request line", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("two hosts", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\nhost: evil\r\n\r\n"),
    ("no host", "GET / HTTP/1.1\r\nX-A: b\r\n\r\n"),
    ("late h2 preface", "GET / HTTP/1.1\r\nHost: a\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
];

#[tokio::test]
async fn malformed_heads_get_400_and_never_reach_the_upstream() {
    let mock = MockUpstream::start("a").await;
    let gateway = guarded_gateway(&mock, "").await;
    for (name, probe) in HEAD_PROBES {
        let response = raw_exchange(gateway.addr(), probe.as_bytes()).await;
        let text = response.text();
        let last_status = text.rsplit("HTTP/1.1 ").next().and_then(|s| s.get(..3));
        assert_eq!(last_status, Some("400"), "{name}: {text}");
        assert!(text.contains("proxy-status: weir; error=http_request_error"), "{name}: {text}");
    }
    // The one valid request among them (before the late preface) is the only one that arrived.
    assert_eq!(mock.count(), 1);
    assert_eq!(mock.received()[0].method, "GET");
}

#[tokio::test]
async fn http11_heads_without_one_host_line_are_refused_by_name_and_one_host_is_forwarded_as_sent() {
    let mock = MockUpstream::start("a").await;
    let gateway = guarded_gateway(&mock, "").await;
    let response = raw_exchange(gateway.addr(), b"GET / HTTP/1.1\r\nHost: a\r\nHOST: b\r\n\r\n").await;
    assert_eq!(response.status(), Some(400), "{}", response.text());
    assert!(response.text().contains("details=\"duplicate_host\""), "{}", response.text());
    let response = raw_exchange(gateway.addr(), b"GET http://a.example/ HTTP/1.1\r\nAccept: */*\r\n\r\n").await;
    assert_eq!(response.status(), Some(400), "{}", response.text());
    assert!(response.text().contains("details=\"missing_host\""), "{}", response.text());
    assert_eq!(mock.count(), 0);

    let response =
        raw_exchange(gateway.addr(), b"GET / HTTP/1.1\r\nHost: Example.COM:8080\r\nConnection: close\r\n\r\n").await;
    assert_eq!(response.status(), Some(200), "{}", response.text());
    let received = &mock.received()[0];
    let hosts: Vec<_> = received.headers.get_all("host").iter().collect();
    assert_eq!(hosts, ["Example.COM:8080"]);
}

#[tokio::test]
async fn malformed_chunked_bodies_get_400_and_no_complete_request_reaches_the_upstream() {
    let mock = MockUpstream::start("a").await;
    let gateway = guarded_gateway(&mock, "").await;
    let probes: &[(&str, &str)] = &[
        ("bare lf after size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
        ("bad size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        (
            "missing crlf after data",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        ),
        (
            "size overflow",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
        ),
    ];
    for (name, probe) in probes {
        let response = raw_exchange(gateway.addr(), probe.as_bytes()).await;
        assert_eq!(response.status(), Some(400), "{name}: {}", response.text());
    }
    assert_eq!(mock.count(), 0, "a malformed body reached the upstream whole");
}

#[tokio::test]
async fn limits_answer_413_414_431() {
    let mock = MockUpstream::start("a").await;
    let limits = "    max_head_size: 1KiB\n    max_headers: 10\n    max_uri_length: 100\n";
    let gateway = guarded_gateway(&mock, limits).await;
    let long_header = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "x".repeat(2000));
    let many_headers =
        format!("GET / HTTP/1.1\r\nHost: a\r\n{}\r\n", (0..11).map(|i| format!("X-{i}: v\r\n")).collect::<String>());
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(200));
    let big_body = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n{}", "b".repeat(101));
    let big_chunked = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n{}\r\n0\r\n\r\n",
        "c".repeat(101)
    );
    let cases = [(long_header, 431), (many_headers, 431), (long_uri, 414), (big_body, 413), (big_chunked, 413)];
    for (probe, status) in cases {
        let response = raw_exchange(gateway.addr(), probe.as_bytes()).await;
        assert_eq!(response.status(), Some(status), "{}", response.text());
    }
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn slow_request_head_is_cut_with_408() {
    let mock = MockUpstream::start("a").await;
    let gateway = guarded_gateway(&mock, "    header_read_timeout: 300ms\n").await;
    let response = raw_exchange(gateway.addr(), b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ").await;
    assert_eq!(response.status(), Some(408), "{}", response.text());
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn connection_that_never_speaks_is_closed_silently() {
    let mock = MockUpstream::start("a").await;
    let gateway = guarded_gateway(&mock, "    header_read_timeout: 200ms\n").await;
    let response = raw_exchange(gateway.addr(), b"").await;
    assert!(response.bytes.is_empty(), "{}", response.text());
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    let mock = MockUpstream::start("a").await;
    let gateway = guarded_gateway(&mock, "    idle_timeout: 300ms\n").await;
    let mut stream = TcpStream::connect(gateway.addr()).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut bytes = Vec::new();
    // The server answers, then closes the idle connection by itself: read_to_end returns.
    tokio::time::timeout(weir_test::TEST_TIMEOUT, stream.read_to_end(&mut bytes)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test]
async fn connections_past_the_cap_wait_for_a_free_slot() {
    let mock = MockUpstream::start("a").await;
    let gateway = guarded_gateway(&mock, "    max_connections: 1\n").await;
    let mut first = TcpStream::connect(gateway.addr()).await.unwrap();
    first.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let n = first.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let mut second = TcpStream::connect(gateway.addr()).await.unwrap();
    second.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
    assert!(waited.is_err(), "the second connection was served while the first held the only slot");
    drop(first);
    let mut rest = Vec::new();
    tokio::time::timeout(weir_test::TEST_TIMEOUT, second.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert!(rest.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&rest));
}
