//! Rate limiting through the gateway over real sockets: refusals with their fields and the rule's
//! name, counts at the upstream, keys from headers, global rules shared by every route, and metrics.

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use weir_test::{Exchange, MockUpstream, TestGateway, http1_request};

fn get(path: &str, headers: &[(&str, &str)]) -> Request<Empty<Bytes>> {
    let mut builder = Request::get(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Empty::new()).unwrap()
}

async fn send(gateway: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Exchange {
    http1_request(gateway.addr(), get(path, headers)).await.unwrap()
}

fn config(mock: &MockUpstream, global: &str, route_rules: &str) -> String {
    format!(
        "admin: {{ address: \"127.0.0.1:0\" }}\nlisteners:\n  - {{ name: public, address: \"127.0.0.1:0\" }}\nupstreams:\n  app:\n    endpoints: [\"{}\"]\nrate_limit:\n  rules: {global}\nroutes:\n  - name: api\n    match: {{ path_prefix: /api }}\n    upstream: app\n    rate_limit: {route_rules}\n  - name: other\n    upstream: app\n",
        mock.addr()
    )
}

#[tokio::test]
async fn a_client_over_its_burst_gets_429_with_retry_after_and_the_rules_fields() {
    let mock = MockUpstream::start("app").await;
    let rules = "[{ name: per-ip, key: client_ip, rate: 2/min, burst: 3 }]";
    let gateway = TestGateway::start(&config(&mock, "[]", rules)).await;
    for _ in 0..3 {
        assert_eq!(send(&gateway, "/api/x", &[]).await.status, 200);
    }
    let refused = send(&gateway, "/api/x", &[]).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.text(), "429 rate_limited by rule per-ip\n");
    assert_eq!(refused.header("proxy-status"), Some("weir; error=http_request_denied; details=\"rate_limited\""));
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((29..=30).contains(&retry), "one request costs 30 s: {retry}");
    assert_eq!(refused.header("ratelimit-policy"), Some("\"per-ip\";q=2;w=60"));
    assert_eq!(refused.header("ratelimit"), Some(format!("\"per-ip\";r=0;t={retry}").as_str()));
    // The refused request never reached the upstream; another route is not limited.
    assert_eq!(mock.count(), 3);
    assert_eq!(send(&gateway, "/elsewhere", &[]).await.status, 200);
}

#[tokio::test]
async fn header_keys_count_apart_and_allowed_responses_carry_fields_when_asked() {
    let mock = MockUpstream::start("app").await;
    let rules = "[{ name: per-key, key: header:x-api-key, rate: 1/min, burst: 2, response_headers: true }]";
    let gateway = TestGateway::start(&config(&mock, "[]", rules)).await;
    let first = send(&gateway, "/api", &[("x-api-key", "alice")]).await;
    assert_eq!(first.header("ratelimit-policy"), Some("\"per-key\";q=1;w=60"));
    assert_eq!(first.header("ratelimit"), Some("\"per-key\";r=1;t=60"));
    assert_eq!(send(&gateway, "/api", &[("x-api-key", "alice")]).await.status, 200);
    assert_eq!(send(&gateway, "/api", &[("x-api-key", "alice")]).await.status, 429);
    assert_eq!(send(&gateway, "/api", &[("x-api-key", "bob")]).await.status, 200);
    // Without the header the rule has no key and does not apply.
    let anonymous = send(&gateway, "/api", &[]).await;
    assert_eq!(anonymous.status, 200);
    assert!(anonymous.header("ratelimit").is_none());
}

#[tokio::test]
async fn global_rules_apply_to_every_route_with_one_budget_and_are_counted() {
    let mock = MockUpstream::start("app").await;
    let global = "[{ name: everyone, key: client_ip, rate: 1/min, burst: 3 }]";
    let gateway = TestGateway::start(&config(&mock, global, "[]")).await;
    let statuses = [
        send(&gateway, "/api/a", &[]).await.status,
        send(&gateway, "/b", &[]).await.status,
        send(&gateway, "/api/c", &[]).await.status,
        send(&gateway, "/d", &[]).await.status,
    ];
    assert_eq!(statuses, [200, 200, 200, 429]);
    let metrics = http1_request(gateway.admin(), get("/metrics", &[])).await.unwrap().text();
    for line in [
        "weir_ratelimit_decisions_total{scope=\"global\",rule=\"everyone\",outcome=\"allowed\"} 3",
        "weir_ratelimit_decisions_total{scope=\"global\",rule=\"everyone\",outcome=\"limited\"} 1",
        "weir_ratelimit_keys{scope=\"global\",rule=\"everyone\"} 1",
        "weir_ratelimit_key_capacity{scope=\"global\",rule=\"everyone\"} 100032",
        "weir_ratelimit_memory_bytes{scope=\"global\",rule=\"everyone\"} 2228224",
        "weir_refusals_total{route=\"other\",reason=\"rate_limited\"} 1",
        "weir_requests_total{route=\"other\",code_class=\"4xx\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}
