//! Chosen request and response headers in access-log lines, with credentials redacted whether or
//! not they are listed: the secrets sent and received never reach the log file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use serde_json::{Value, json};
use weir_test::{MockUpstream, TEST_TIMEOUT, TestGateway, http1_request};

const SECRETS: [&str; 5] = ["Bearer hunter2", "sid=in-cookie", "k-api-9", "Basic cHJveHk=", "sid=out-cookie"];

fn log_path() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-access-headers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("access.log")
}

/// Polls the log until it holds `count` lines; returns the text.
async fn wait_for_lines(path: &Path, count: usize) -> String {
    let deadline = Instant::now() + TEST_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.matches('\n').count() >= count {
            return text;
        }
        assert!(Instant::now() < deadline, "fewer than {count} lines after the timeout:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn config(mock: &MockUpstream, log: &Path) -> String {
    format!(
        r#"access_log:
  path: "{}"
  fields: [status, route]
  request_headers: [user-agent, x-tenant, authorization, cookie, x-api-key, proxy-authorization]
  response_headers: [x-cache, set-cookie]
  secret_headers: [x-api-key]
listeners:
  - {{ name: public, address: "127.0.0.1:0" }}
upstreams:
  live:
    endpoints: ["{}"]
routes:
  - {{ name: users, match: {{ path_prefix: /users }}, upstream: live }}
"#,
        log.display(),
        mock.addr()
    )
}

fn request(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header("user-agent", "curl/8.5.0")
        .header("x-tenant", "acme")
        .header("authorization", SECRETS[0])
        .header("cookie", SECRETS[1])
        .header("x-api-key", SECRETS[2])
        .header("proxy-authorization", SECRETS[3])
        .header("x-mock-header", format!("set-cookie={}", SECRETS[4]))
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn listed_headers_are_logged_and_secrets_are_redacted() {
    let mock = MockUpstream::start("a").await;
    let path = log_path();
    let gateway = TestGateway::start(&config(&mock, &path)).await;
    assert_eq!(http1_request(gateway.addr(), request("/users/1")).await.unwrap().status, 200);
    assert_eq!(http1_request(gateway.addr(), request("/nowhere")).await.unwrap().status, 404);
    let text = wait_for_lines(&path, 2).await;
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret:?} in the log:\n{text}");
    }
    let lines: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let redacted = "[redacted]";
    let request_headers = json!({
        "user-agent": "curl/8.5.0", "x-tenant": "acme", "authorization": redacted, "cookie": redacted,
        "x-api-key": redacted, "proxy-authorization": redacted,
    });
    assert_eq!(lines[0]["request_headers"], request_headers, "{text}");
    assert_eq!(lines[0]["response_headers"], json!({ "set-cookie": redacted }), "{text}");
    assert_eq!(lines[1]["status"], 404);
    assert_eq!(lines[1]["request_headers"], request_headers, "a refusal's line too: {text}");
}
