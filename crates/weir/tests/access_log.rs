//! JSON access logs, read back from the file the gateway writes: every documented field for proxied,
//! direct, refused and HTTP/2 requests, secrets never written, hostile bytes kept inside their
//! strings, and sampling that keeps about the configured share while errors are always logged.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use http::Request;
use http_body_util::{Empty, Full};
use serde_json::Value;
use weir_test::{MockUpstream, TEST_TIMEOUT, TestGateway, h2c_request, http1_request, raw_exchange};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn log_path(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-access-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("access.log")
}

/// Polls the log until it holds `count` lines, and parses every line as JSON.
async fn read_lines(path: &Path, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + TEST_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let complete: Vec<&str> = text.split_inclusive('\n').filter(|l| l.ends_with('\n')).collect();
        if complete.len() >= count {
            return complete
                .iter()
                .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line:?}")))
                .collect();
        }
        assert!(Instant::now() < deadline, "{} of {count} lines after the timeout:\n{text}", complete.len());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn config(mock: &MockUpstream, access_log: &str) -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    format!(
        "access_log: {access_log}\nlisteners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n  live:\n    endpoints: [\"{}\"]\n  dead:\n    endpoints: [\"{closed}\"]\nroutes:\n  - {{ name: users, match: {{ path_prefix: /users }}, upstream: live }}\n  - {{ name: broken, match: {{ path_prefix: /broken }}, upstream: dead }}\n  - {{ name: hello, match: {{ path: /hello }}, direct_response: {{ status: 200, body: hi }} }}\n",
        mock.addr()
    )
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path).header("host", "api.example.com").body(Empty::new()).unwrap()
}

#[tokio::test]
async fn every_field_is_logged_and_secrets_never_are() {
    let mock = MockUpstream::start("a").await;
    let path = log_path("fields");
    let gateway = TestGateway::start(&config(&mock, &format!("{{ path: \"{}\" }}", path.display()))).await;
    let proxied = Request::post("/users/7?token=query-secret")
        .header("host", "api.example.com")
        .header("x-request-id", "req-123")
        .header("traceparent", TRACEPARENT)
        .header("authorization", "Bearer auth-secret")
        .header("cookie", "session=cookie-secret")
        .header("x-mock-echo", "1")
        .header("x-mock-header", "set-cookie=setcookie-secret")
        .header("user-agent", "weir-test/1.0 \"quoted\"")
        .body(Full::new(Bytes::from_static(b"hello world")))
        .unwrap();
    let answer = http1_request(gateway.addr(), proxied).await.unwrap();
    assert_eq!((answer.status.as_u16(), answer.text().as_str()), (200, "hello world"));
    let lines = read_lines(&path, 1).await;
    let line = &lines[0];
    let time = line["time"].as_str().unwrap();
    assert!(time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T' && time.as_bytes()[19] == b'.');
    assert_eq!(line["request_id"], "req-123");
    assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(line["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(line["method"], "POST");
    assert_eq!(line["host"], "api.example.com");
    assert_eq!(line["path"], "/users/7");
    assert_eq!(line["protocol"], "HTTP/1.1");
    assert_eq!(line["status"], 200);
    assert_eq!(line["bytes_in"], 11);
    assert_eq!(line["bytes_out"], 11);
    assert!(line["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(line["upstream"], mock.addr().to_string());
    assert_eq!(line["attempts"], 1);
    assert_eq!(line["route"], "users");
    assert_eq!(line["aborted"], false);
    assert_eq!(line["user_agent"], "weir-test/1.0 \"quoted\"");
    assert!(line.get("reason").is_none(), "{line}");
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in ["auth-secret", "cookie-secret", "setcookie-secret", "query-secret"] {
        assert!(!text.contains(secret), "{secret} written to the access log: {text}");
    }
}

#[tokio::test]
async fn direct_refused_and_http2_requests_are_logged() {
    let mock = MockUpstream::start("a").await;
    let path = log_path("kinds");
    let gateway = TestGateway::start(&config(&mock, &format!("{{ path: \"{}\" }}", path.display()))).await;
    http1_request(gateway.addr(), get("/hello")).await.unwrap();
    read_lines(&path, 1).await;
    http1_request(gateway.addr(), get("/nowhere")).await.unwrap();
    read_lines(&path, 2).await;
    http1_request(gateway.addr(), get("/broken")).await.unwrap();
    read_lines(&path, 3).await;
    let h2 = Request::get("http://api.example.com:8080/users/2").body(Empty::<Bytes>::new()).unwrap();
    assert_eq!(h2c_request(gateway.addr(), h2).await.unwrap().status, 200);
    let lines = read_lines(&path, 4).await;
    let (direct, unrouted, refused, http2) = (&lines[0], &lines[1], &lines[2], &lines[3]);
    assert_eq!(
        (direct["route"].as_str(), direct["status"].as_u64(), direct["attempts"].as_u64()),
        (Some("hello"), Some(200), Some(0))
    );
    assert_eq!(direct["bytes_out"], 2);
    assert!(direct.get("upstream").is_none() && direct.get("trace_id").is_none());
    assert_eq!((unrouted["status"].as_u64(), unrouted["reason"].as_str()), (Some(404), Some("no_route")));
    assert!(unrouted.get("route").is_none());
    assert_eq!((refused["status"].as_u64(), refused["reason"].as_str()), (Some(502), Some("connect_error")));
    assert_eq!((refused["route"].as_str(), refused["attempts"].as_u64()), (Some("broken"), Some(1)));
    assert!(refused["upstream"].is_string());
    assert_eq!((http2["protocol"].as_str(), http2["host"].as_str()), (Some("HTTP/2"), Some("api.example.com:8080")));
    assert_eq!(http2["bytes_out"], "hello from a".len());
    // Every request got a request id of its own.
    assert!(lines.iter().all(|line| !line["request_id"].as_str().unwrap().is_empty()));
}

#[tokio::test]
async fn hostile_bytes_stay_inside_their_strings() {
    let mock = MockUpstream::start("a").await;
    let path = log_path("hostile");
    let gateway = TestGateway::start(&config(&mock, &format!("{{ path: \"{}\", query: true }}", path.display()))).await;
    let request = b"GET /users/q'x?a=%22b&c=d|e HTTP/1.1\r\nHost: evil\"}\xff\xfe.example\r\nConnection: close\r\n\r\n";
    let answer = raw_exchange(gateway.addr(), request).await;
    assert_eq!(answer.status(), Some(200), "{}", answer.text());
    let lines = read_lines(&path, 1).await;
    assert_eq!(lines[0]["host"], "evil\"}\u{fffd}\u{fffd}.example");
    assert_eq!(lines[0]["path"], "/users/q'x?a=%22b&c=d|e");
    assert_eq!(lines[0]["route"], "users");
    // A refused head is logged without the parts it could not trust.
    let refused = raw_exchange(gateway.addr(), b"GET /caf\xc3\xa9\xff HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(refused.status(), Some(400));
    let lines = read_lines(&path, 2).await;
    assert_eq!((lines[1]["status"].as_u64(), lines[1]["reason"].as_str()), (Some(400), Some("bad_request")));
    for absent in ["method", "host", "path", "route", "user_agent"] {
        assert!(lines[1].get(absent).is_none(), "{absent} in {}", lines[1]);
    }
}

#[tokio::test]
async fn sampling_keeps_about_the_ratio_and_every_error() {
    let mock = MockUpstream::start("a").await;
    let path = log_path("sampling");
    let access_log =
        format!("{{ path: \"{}\", sample_ratio: 0.25, sample_seed: 7, fields: [path, status] }}", path.display());
    let gateway = TestGateway::start(&config(&mock, &access_log)).await;
    for i in 0..240 {
        let target = if i % 12 == 0 { "/nowhere" } else { "/hello" };
        http1_request(gateway.addr(), get(target)).await.unwrap();
    }
    // An error is always logged, and lines are written in order: once it is there, all are.
    http1_request(gateway.addr(), get("/last")).await.unwrap();
    let deadline = Instant::now() + TEST_TIMEOUT;
    let lines = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains("\"/last\"") {
            break text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).collect::<Vec<_>>();
        }
        assert!(Instant::now() < deadline, "the last line never came");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let errors = lines.iter().filter(|l| l["status"] == 404).count();
    let kept = lines.iter().filter(|l| l["status"] == 200).count();
    assert_eq!(errors, 21, "every error is logged");
    // 220 successes at 0.25: 55 expected, standard deviation about 6.4.
    assert!((30..=80).contains(&kept), "kept {kept} of 220");
    assert!(lines.iter().all(|l| l.as_object().unwrap().len() == 2), "only the chosen fields");
}

#[tokio::test]
async fn a_client_that_goes_away_mid_body_is_logged_as_aborted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = MockUpstream::start("a").await;
    let path = log_path("aborted");
    let gateway = TestGateway::start(&config(&mock, &format!("{{ path: \"{}\" }}", path.display()))).await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr()).await.unwrap();
    let request = "GET /users/slow HTTP/1.1\r\nHost: a\r\nx-mock-chunks: 100\r\nx-mock-chunk-size: 100\r\nx-mock-chunk-delay-ms: 50\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 64];
    let read = tokio::time::timeout(TEST_TIMEOUT, stream.read(&mut head)).await.unwrap().unwrap();
    assert!(head[..read].starts_with(b"HTTP/1.1 200"));
    drop(stream);
    let lines = read_lines(&path, 1).await;
    assert_eq!((lines[0]["status"].as_u64(), lines[0]["aborted"].as_bool()), (Some(200), Some(true)));
    assert!(lines[0]["bytes_out"].as_u64().unwrap() < 100 * 100);
}

#[tokio::test]
async fn a_log_file_that_cannot_be_opened_stops_the_start() {
    let text = "access_log: { path: /nonexistent-dir/weir/access.log }\nlisteners:\n  - { name: public, address: \"127.0.0.1:0\" }\n";
    let config = weir_config::parse_str(text, weir_config::Format::Yaml, "test.yaml").unwrap();
    let error = weir_proxy::Server::bind(&config).err().expect("the start should fail").to_string();
    assert!(error.contains("access log: cannot open /nonexistent-dir/weir/access.log"), "{error}");
}
