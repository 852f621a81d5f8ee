//! Support for the admin API tests: a gateway with one route per behaviour worth counting, the
//! traffic that exercises each once, and readers for the answers.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use weir_test::{Exchange, MockUpstream, OpenApi, TestGateway, http1_request};

/// A gateway after [`drive_traffic`], with its upstream.
pub struct Traffic {
    pub gateway: TestGateway,
    /// Kept alive with the gateway that forwards to it.
    _mock: MockUpstream,
}

impl Traffic {
    /// Requests [`drive_traffic`] sends, each on its own connection.
    pub const REQUESTS: usize = 13;

    pub async fn get(&self, path: &str) -> Exchange {
        send(&self.gateway, path, &[], "").await
    }
}

fn config(mock: &MockUpstream) -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let live = mock.addr();
    format!(
        r#"admin: {{ address: "127.0.0.1:0" }}
listeners:
  - {{ name: public, address: "127.0.0.1:0" }}
upstreams:
  live:
    endpoints: ["{live}"]
    breaker: {{ failure_rate: 50%, min_calls: 100, window: 10s, open_for: 60s }}
  dead:
    endpoints: ["{closed}"]
    breaker: {{ failure_rate: 50%, min_calls: 2, window: 10s, open_for: 60s }}
rate_limit:
  rules: [{{ name: everyone, key: [client_ip], rate: 1000/s }}]
routes:
  - {{ name: ok, match: {{ path_prefix: /ok }}, upstream: live }}
  - name: retry
    match: {{ path_prefix: /retry }}
    upstream: live
    retry: {{ attempts: 2, on: [503], backoff: {{ base: 1ms, max: 1ms }} }}
  - name: frugal
    match: {{ path_prefix: /frugal }}
    upstream: live
    retry: {{ attempts: 2, on: [503], budget: {{ ratio: 0, min_per_second: 0 }} }}
  - name: limited
    match: {{ path_prefix: /limited }}
    upstream: live
    rate_limit: [{{ name: per-ip, key: [client_ip], rate: 1/min, burst: 1 }}]
  - name: shed
    match: {{ path_prefix: /shed }}
    upstream: live
    concurrency: {{ max_in_flight: 1 }}
  - {{ name: broken, match: {{ path_prefix: /broken }}, upstream: dead }}
"#
    )
}

/// Starts a gateway (on a file, so `/reload` has a source) and sends: four successes (one with a
/// 5-byte body), a retried 503, a 503 the budget does not retry, an allowed request and a 429, a
/// slow request and the one shed beside it, two connection failures that open a breaker (the second
/// refused by it) and one more request it refuses.
pub async fn drive_traffic() -> Traffic {
    let mock = MockUpstream::start("live").await;
    let gateway = TestGateway::start_file(config_file(&config(&mock))).await;
    for path in ["/ok/1", "/ok/2", "/ok/3"] {
        assert_eq!(send(&gateway, path, &[], "").await.status, 200);
    }
    assert_eq!(send(&gateway, "/ok/post", &[], "hello").await.status, 200);
    assert_eq!(send(&gateway, "/retry", &[("x-mock-status", "503")], "").await.status, 503);
    assert_eq!(send(&gateway, "/frugal", &[("x-mock-status", "503")], "").await.status, 503);
    assert_eq!(send(&gateway, "/limited", &[], "").await.status, 200);
    assert_eq!(send(&gateway, "/limited", &[], "").await.status, 429);
    let seen = mock.count();
    let addr = gateway.addr();
    let slow = tokio::spawn(async move {
        let request = build("/shed/slow", &[("x-mock-delay-ms", "1000")], "");
        http1_request(addr, request).await.unwrap().status
    });
    mock.wait_for(seen + 1).await;
    assert_eq!(send(&gateway, "/shed/now", &[], "").await.status, 503);
    assert_eq!(slow.await.unwrap(), 200);
    // The second failure trips the breaker, which then refuses that request's next connect try.
    for expected in ["connect_error", "breaker_open", "breaker_open"] {
        let refused = send(&gateway, "/broken", &[], "").await;
        assert!(refused.header("proxy-status").is_some_and(|s| s.contains(expected)), "{refused:?}");
    }
    Traffic { gateway, _mock: mock }
}

fn build(path: &str, headers: &[(&str, &str)], body: &'static str) -> Request<Full<Bytes>> {
    let method = if body.is_empty() { "GET" } else { "POST" };
    let mut request = Request::builder().method(method).uri(path).header("x-mock-body", "ok");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::new(Bytes::from_static(body.as_bytes()))).unwrap()
}

async fn send(gateway: &TestGateway, path: &str, headers: &[(&str, &str)], body: &'static str) -> Exchange {
    http1_request(gateway.addr(), build(path, headers, body)).await.unwrap()
}

fn config_file(yaml: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!("weir-admin-api-{}-{}.yaml", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let path = std::env::temp_dir().join(name);
    std::fs::write(&path, yaml).unwrap();
    path
}

/// One admin request, `GET` or `POST`.
pub async fn admin(gateway: &TestGateway, method: &str, path: &str) -> Exchange {
    admin_accepting(gateway, method, path, "*/*").await
}

/// One admin request asking for the `accept` content type.
pub async fn admin_accepting(gateway: &TestGateway, method: &str, path: &str, accept: &str) -> Exchange {
    let request = Request::builder().method(method).uri(path).header("accept", accept);
    http1_request(gateway.admin(), request.body(Full::new(Bytes::new())).unwrap()).await.unwrap()
}

/// The admin API's description, from the docs.
pub fn openapi() -> OpenApi {
    OpenApi::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/admin-api.openapi.json"))
}

/// The value of `series` in metrics text: a whole series (`name{labels}`), or a prefix of one
/// ending inside its labels.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        let value = if series.ends_with('}') { rest.strip_prefix(' ')? } else { rest.rsplit(' ').next()? };
        value.parse().ok()
    })
}

/// promtool from `PATH`. Without it the test is skipped, with the reason printed, unless
/// `WEIR_REQUIRE_PROMTOOL=1` (scripts/test sets it) makes its absence a failure.
pub fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join("promtool")).find(|p| p.is_file()));
    if found.is_none() {
        assert!(
            std::env::var("WEIR_REQUIRE_PROMTOOL").as_deref() != Ok("1"),
            "WEIR_REQUIRE_PROMTOOL=1 but promtool is not on PATH (Debian package prometheus)"
        );
        eprintln!("skipped: promtool is not on PATH (install the Debian package prometheus)");
    }
    found
}

/// What `promtool check metrics` says of `text`: empty when it passes.
pub fn promtool_check(promtool: &Path, text: &str) -> String {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() && said.trim().is_empty() { String::new() } else { format!("{}\n{said}", output.status) }
}
