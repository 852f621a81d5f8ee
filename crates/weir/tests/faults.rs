//! Fault injection over real sockets: a route's faults, an upstream's faults, header-controlled
//! faults, and run-time experiments through the admin API, down to the breaker they open.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{Empty, Full};
use weir_test::{Exchange, MockUpstream, OpenApi, TEST_TIMEOUT, TestGateway, h2c_request, http1_request};

fn config(mocks: &[&MockUpstream], upstream_extra: &str, routes: &str) -> String {
    let endpoints: Vec<String> = mocks.iter().map(|m| format!("\"{}\"", m.addr())).collect();
    format!(
        "admin: {{ address: \"127.0.0.1:0\" }}\nfault_injection: {{ seed: 42 }}\nlisteners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n  backend:\n    endpoints: [{}]\n    outlier_detection: {{ enabled: false }}\n{upstream_extra}routes:\n{routes}",
        endpoints.join(", ")
    )
}

async fn get(gateway: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Exchange {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    http1_request(gateway.addr(), request.body(Empty::<Bytes>::new()).unwrap()).await.unwrap()
}

async fn admin(gateway: &TestGateway, method: Method, path: &str, body: &str) -> Exchange {
    let request = Request::builder().method(method).uri(path).body(Full::new(Bytes::from(body.to_string()))).unwrap();
    http1_request(gateway.admin(), request).await.unwrap()
}

/// Checks an admin answer against the OpenAPI description, `path` written as described there.
fn described(method: &str, path: &str, answer: &Exchange) {
    let api =
        OpenApi::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/admin-api.openapi.json"));
    let content_type = answer.header("content-type").unwrap_or_default();
    let checked = api.check(method, path, answer.status.as_u16(), content_type, &answer.text());
    checked.unwrap_or_else(|e| panic!("{e}\n{}", answer.text()));
}

async fn metrics(gateway: &TestGateway) -> String {
    admin(gateway, Method::GET, "/metrics", "").await.text()
}

#[tokio::test]
async fn a_route_aborts_its_share_of_requests_and_says_why() {
    let mock = MockUpstream::start("a").await;
    let routes = "  - name: api\n    upstream: backend\n    faults:\n      - { abort: { status: 503 }, percent: 50 }\n";
    let gateway = TestGateway::start(&config(&[&mock], "", routes)).await;
    const REQUESTS: usize = 1_000;
    let mut aborted = 0;
    for _ in 0..REQUESTS {
        let response = get(&gateway, "/", &[]).await;
        if response.header("proxy-status").is_some_and(|s| s.contains("fault_injected")) {
            assert_eq!(response.status, 503);
            aborted += 1;
        } else {
            assert_eq!(response.status, 200);
        }
    }
    // 50% of 1,000: a standard deviation of about 16; five either way.
    assert!((420..=580).contains(&aborted), "{aborted} of {REQUESTS} aborted");
    assert_eq!(mock.count(), REQUESTS - aborted, "aborted requests never reach the upstream");
    let text = metrics(&gateway).await;
    let injected = format!(
        "weir_faults_injected_total{{target_type=\"route\",target=\"api\",kind=\"abort\",source=\"config\"}} {aborted}"
    );
    assert!(text.contains(&injected), "{text}");
    assert!(text.contains(&format!("weir_refusals_total{{route=\"api\",reason=\"fault_injected\"}} {aborted}")));
}

#[tokio::test]
async fn delays_and_throttles_slow_the_requests_they_choose() {
    let mock = MockUpstream::start("a").await;
    let routes = "  - name: slow\n    match: { path_prefix: /slow }\n    upstream: backend\n    faults:\n      - delay: { min: 300ms, max: 400ms }\n        when: { headers: [{ name: x-chaos, exact: \"1\" }] }\n  - name: narrow\n    match: { path_prefix: /narrow }\n    upstream: backend\n    faults:\n      - throttle: { bytes_per_second: 4KiB }\n";
    let gateway = TestGateway::start(&config(&[&mock], "", routes)).await;
    let started = tokio::time::Instant::now();
    assert_eq!(get(&gateway, "/slow", &[("x-chaos", "1")]).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300), "delayed by at least the range's minimum");
    let body = [("x-mock-chunks", "4"), ("x-mock-chunk-size", "1024")];
    let started = tokio::time::Instant::now();
    let response = get(&gateway, "/narrow", &body).await;
    assert_eq!((response.status.as_u16(), response.body.len()), (200, 4096));
    // 4 KiB at 4 KiB/s: the last slice goes out 0.95 s after the first.
    assert!(started.elapsed() >= Duration::from_millis(900), "throttled: {:?}", started.elapsed());
    let text = metrics(&gateway).await;
    assert!(text.contains(
        "weir_faults_injected_total{target_type=\"route\",target=\"slow\",kind=\"delay\",source=\"config\"} 1"
    ));
    assert!(text.contains(
        "weir_faults_injected_total{target_type=\"route\",target=\"narrow\",kind=\"throttle\",source=\"config\"} 1"
    ));
}

#[tokio::test]
async fn a_reset_fault_closes_the_connection_without_an_answer() {
    let mock = MockUpstream::start("a").await;
    let routes = "  - name: api\n    upstream: backend\n    faults: [{ abort: { reset: true } }]\n";
    let gateway = TestGateway::start(&config(&[&mock], "", routes)).await;
    let request = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
    assert!(http1_request(gateway.addr(), request).await.is_err(), "no response arrives");
    assert_eq!(mock.count(), 0);
    assert!(metrics(&gateway).await.contains("kind=\"reset\",source=\"config\"} 1"));
}

#[tokio::test]
async fn grpc_requests_are_aborted_in_grpc_form() {
    let mock = MockUpstream::start("a").await;
    let routes = "  - name: rpc\n    upstream: backend\n    faults: [{ abort: { grpc_status: resource_exhausted } }]\n";
    let gateway = TestGateway::start(&config(&[&mock], "", routes)).await;
    let request = Request::post("/pkg.Service/Method")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let response = h2c_request(gateway.addr(), request).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("grpc-status"), Some("8"));
    assert_eq!(response.header("grpc-message"), Some("fault_injected"));
    assert_eq!(response.header("content-type"), Some("application/grpc"));
    assert!(response.body.is_empty(), "trailers-only");
    // A plain HTTP request is left alone by a gRPC-only abort.
    assert_eq!(get(&gateway, "/", &[]).await.status, 200);
}

#[tokio::test]
async fn header_faults_work_only_where_enabled_and_with_the_secret() {
    let mock = MockUpstream::start("a").await;
    let routes = "  - name: on\n    match: { path_prefix: /on }\n    upstream: backend\n    header_faults: { secret: s3cret-s3cret-s3cret }\n  - name: off\n    upstream: backend\n";
    let gateway = TestGateway::start(&config(&[&mock], "", routes)).await;
    let asking = [("x-weir-fault-abort", "418"), ("x-weir-fault-secret", "s3cret-s3cret-s3cret")];
    let off = get(&gateway, "/off", &asking).await;
    assert_eq!(off.status, 200, "ignored on a route that does not enable them");
    let on = get(&gateway, "/on", &asking).await;
    assert_eq!(on.status, 418);
    let without_secret = get(&gateway, "/on", &asking[..1]).await;
    assert_eq!(without_secret.status, 200, "ignored without the secret");
    let upstream_saw = mock.received();
    let last = upstream_saw.last().unwrap();
    assert!(last.headers.get("x-weir-fault-abort").is_none(), "fault headers stay at the gateway on enabled routes");
    let bad = get(&gateway, "/on", &[("x-weir-fault-delay", "soon"), asking[1]]).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("x-weir-fault-delay"), "{}", bad.text());
}

#[tokio::test]
async fn an_upstream_fault_on_one_endpoint_is_retried_on_another() {
    let (a, b) = (MockUpstream::start("a").await, MockUpstream::start("b").await);
    let upstream = format!("    faults: [{{ abort: {{ status: 503 }}, endpoint: \"{}\" }}]\n", a.addr());
    let routes = "  - name: api\n    upstream: backend\n    retry: { attempts: 2, on: [503], backoff: { base: 1ms, max: 2ms } }\n";
    let gateway = TestGateway::start(&config(&[&a, &b], &upstream, routes)).await;
    for _ in 0..20 {
        let response = get(&gateway, "/", &[]).await;
        assert_eq!((response.status.as_u16(), response.header("x-upstream")), (200, Some("b")));
    }
    assert_eq!(a.count(), 0, "the faulted endpoint itself was never called");
    let text = metrics(&gateway).await;
    assert!(text.contains(
        "weir_faults_injected_total{target_type=\"upstream\",target=\"backend\",kind=\"abort\",source=\"config\"}"
    ));
}

const BREAKER: &str = "    breaker: { failure_rate: 30%, min_calls: 10, window: 10s, open_for: 200ms, max_open_for: 1s, half_open_probes: 2 }\n";

async fn breaker_state(gateway: &TestGateway) -> String {
    let body = admin(gateway, Method::GET, "/upstreams", "").await.text();
    let state = body.split("\"breaker\":{\"state\":\"").nth(1).expect("a breaker in /upstreams");
    state.split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn an_experiment_opens_the_breaker_then_ends_and_the_breaker_closes() {
    let mock = MockUpstream::start("a").await;
    let routes =
        "  - name: api\n    upstream: backend\n    fallback: { direct_response: { status: 200, body: fallback } }\n";
    let gateway = TestGateway::start(&config(&[&mock], BREAKER, routes)).await;
    assert_eq!(get(&gateway, "/", &[]).await.text(), "hello from a");
    let posted =
        r#"{"name": "backend outage", "upstream": "backend", "ttl": "2s", "abort": {"status": 503}, "percent": 50}"#;
    let created = admin(&gateway, Method::POST, "/faults", posted).await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert!(created.text().contains("\"target\":\"backend\""), "{}", created.text());
    // Half the calls fail: the breaker opens and the fallback answers.
    let opened = async { while get(&gateway, "/", &[]).await.text() != "fallback" {} };
    tokio::time::timeout(TEST_TIMEOUT, opened).await.expect("the breaker opened");
    assert_eq!(breaker_state(&gateway).await, "open");
    // The experiment ends by itself.
    let ended = async {
        while !admin(&gateway, Method::GET, "/faults", "").await.text().contains("\"experiments\":[]") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(TEST_TIMEOUT, ended).await.expect("the experiment expired");
    // With the upstream healthy again, the half-open probes pass and the breaker closes.
    let closed = async {
        while breaker_state(&gateway).await != "closed" {
            let _ = get(&gateway, "/", &[]).await;
        }
    };
    tokio::time::timeout(TEST_TIMEOUT, closed).await.expect("the breaker closed");
    assert_eq!(get(&gateway, "/", &[]).await.text(), "hello from a");
    let text = metrics(&gateway).await;
    assert!(text.contains("weir_fault_experiments_total{event=\"started\"} 1"), "{text}");
    assert!(text.contains("weir_fault_experiments_total{event=\"expired\"} 1"), "{text}");
    assert!(text.contains("weir_fault_experiments_active 0"), "{text}");
    assert!(text.contains("target_type=\"upstream\",target=\"backend\",kind=\"abort\",source=\"experiment\""));
    assert!(text.contains("weir_upstream_breaker_trips_total{upstream=\"backend\"} 1"), "{text}");
}

#[tokio::test]
async fn experiments_are_listed_deleted_and_refused_when_wrong() {
    let mock = MockUpstream::start("a").await;
    let routes = "  - name: api\n    upstream: backend\n    faults: [{ delay: 1ms, percent: 1 }]\n";
    let gateway = TestGateway::start(&config(&[&mock], "", routes)).await;
    let refused = [
        ("{", 400),
        (r#"{"route": "api", "abort": {"status": 503}}"#, 400),
        (r#"{"route": "nope", "ttl": "1m", "abort": {"status": 503}}"#, 422),
        (r#"{"route": "api", "ttl": "1m", "abort": {}}"#, 422),
        (r#"{"route": "api", "ttl": "1m", "persist": true, "abort": {"status": 503}}"#, 422),
    ];
    for (body, status) in refused {
        let answer = admin(&gateway, Method::POST, "/faults", body).await;
        assert_eq!(answer.status, status, "{body}");
        described("POST", "/faults", &answer);
    }
    let created =
        admin(&gateway, Method::POST, "/faults", r#"{"route": "api", "ttl": "1h", "abort": {"status": 500}}"#).await;
    assert_eq!(created.status, 201);
    described("POST", "/faults", &created);
    let id = created.text().split("\"id\":\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    assert_eq!(created.header("location"), Some(format!("/faults/{id}").as_str()));
    assert_eq!(get(&gateway, "/", &[]).await.status, 500);
    let listing = admin(&gateway, Method::GET, "/faults", "").await;
    described("GET", "/faults", &listing);
    let listing = listing.text();
    assert!(listing.contains(&id) && listing.contains("\"configured\":[{"), "{listing}");
    let one = admin(&gateway, Method::GET, &format!("/faults/{id}"), "").await;
    described("GET", "/faults/{id}", &one);
    let deleted = admin(&gateway, Method::DELETE, &format!("/faults/{id}"), "").await;
    assert_eq!(deleted.status, 204);
    described("DELETE", "/faults/{id}", &deleted);
    let again = admin(&gateway, Method::DELETE, &format!("/faults/{id}"), "").await;
    assert_eq!(again.status, 404);
    described("DELETE", "/faults/{id}", &again);
    assert_eq!(get(&gateway, "/", &[]).await.status, 200);
    assert!(metrics(&gateway).await.contains("weir_fault_experiments_total{event=\"deleted\"} 1"));
}

#[tokio::test]
async fn experiments_outlive_a_reload_and_kept_ones_a_restart() {
    let mock = MockUpstream::start("a").await;
    let dir = std::env::temp_dir().join(format!("weir-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("experiments.json");
    let routes = "  - name: api\n    upstream: backend\n";
    let text = config(&[&mock], "", routes).replace(
        "fault_injection: { seed: 42 }",
        &format!("fault_injection: {{ state_file: \"{}\" }}", state.display()),
    );
    let gateway = TestGateway::start(&text).await;
    let kept = r#"{"route": "api", "ttl": "1h", "persist": true, "abort": {"status": 507}}"#;
    assert_eq!(admin(&gateway, Method::POST, "/faults", kept).await.status, 201);
    gateway.reload(&text.replace("name: api", "name: api\n    timeout: 5s")).expect("reload");
    assert_eq!(get(&gateway, "/", &[]).await.status, 507, "the experiment carries on after a reload");
    gateway.stop().await;
    let restarted = TestGateway::start(&text).await;
    assert_eq!(get(&restarted, "/", &[]).await.status, 507, "the kept experiment came back");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_fault_endpoints_ask_for_the_token() {
    let mock = MockUpstream::start("a").await;
    let text = config(&[&mock], "", "  - upstream: backend\n").replace(
        "admin: { address: \"127.0.0.1:0\" }",
        "admin: { address: \"127.0.0.1:0\", token: abcdefghijklmnopqrstuvwxyz }",
    );
    let gateway = TestGateway::start(&text).await;
    assert_eq!(admin(&gateway, Method::GET, "/faults", "").await.status, 401);
    let posted = r#"{"upstream": "backend", "ttl": "1m", "abort": {"status": 503}}"#;
    assert_eq!(admin(&gateway, Method::POST, "/faults", posted).await.status, 401);
}

#[tokio::test]
async fn the_access_log_names_the_faults_a_request_got() {
    let mock = MockUpstream::start("a").await;
    let dir = std::env::temp_dir().join(format!("weir-fault-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    let routes = "  - name: api\n    upstream: backend\n    faults: [{ delay: 1ms }, { abort: { status: 503 } }]\n";
    let text = config(&[&mock], "", routes)
        .replace("listeners:", &format!("access_log: {{ path: \"{}\" }}\nlisteners:", path.display()));
    let gateway = TestGateway::start(&text).await;
    assert_eq!(get(&gateway, "/", &[]).await.status, 503);
    let logged = async {
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if let Some(line) = text.lines().next() {
                return serde_json::from_str::<serde_json::Value>(line).expect("a JSON line");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let line = tokio::time::timeout(TEST_TIMEOUT, logged).await.expect("a line was written");
    assert_eq!((line["faults"].as_str(), line["reason"].as_str()), (Some("delay,abort"), Some("fault_injected")));
    assert_eq!(line["status"], 503);
    std::fs::remove_dir_all(&dir).unwrap();
}
