//! The admin API against its OpenAPI description, and `/metrics` after a known mix of traffic:
//! successes, a retry, a spent retry budget, a 429, a shed 503 and a breaker that opened. Every
//! JSON answer is checked against `docs/admin-api.openapi.json`; the metrics are checked for their
//! series and values, and by `promtool check metrics`.

mod admin_support;

use admin_support::{Traffic, admin, admin_accepting, drive_traffic, metric, openapi};
use weir_test::OpenApi;

#[tokio::test]
async fn every_admin_answer_matches_the_openapi_description() {
    let traffic = drive_traffic().await;
    let api = openapi();
    for (method, path) in [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/config"),
        ("GET", "/routes"),
        ("GET", "/upstreams"),
        ("GET", "/breakers"),
        ("GET", "/ratelimits"),
        ("POST", "/reload"),
        ("GET", "/reload"),
        ("GET", "/reload/diff"),
    ] {
        let answer = admin(&traffic.gateway, method, path).await;
        let content_type = answer.header("content-type").unwrap_or_default().to_string();
        if let Err(error) = api.check(method, path, answer.status.as_u16(), &content_type, &answer.text()) {
            panic!("{error}\n{}", answer.text());
        }
    }
}

#[tokio::test]
async fn breakers_and_rate_limits_show_live_state() {
    let traffic = drive_traffic().await;
    let breakers: serde_json::Value =
        serde_json::from_str(&admin(&traffic.gateway, "GET", "/breakers").await.text()).unwrap();
    let dead = &breakers["breakers"].as_array().unwrap().iter().find(|b| b["upstream"] == "dead").unwrap();
    assert_eq!(dead["state"], "open");
    assert_eq!(dead["endpoint"], serde_json::Value::Null);
    assert_eq!((dead["trips_total"].as_u64(), dead["transitions"]["open"].as_u64()), (Some(1), Some(1)));
    assert_eq!((dead["window"]["calls"].as_u64(), dead["window"]["failures"].as_u64()), (Some(2), Some(2)));
    let half_open_in = dead["half_open_in_seconds"].as_f64().unwrap();
    assert!(half_open_in > 0.0 && half_open_in <= 60.0, "{half_open_in}");
    let live = &breakers["breakers"].as_array().unwrap().iter().find(|b| b["upstream"] == "live").unwrap();
    assert_eq!(live["state"], "closed");
    assert_eq!(live["half_open_in_seconds"], serde_json::Value::Null);

    let limits: serde_json::Value =
        serde_json::from_str(&admin(&traffic.gateway, "GET", "/ratelimits").await.text()).unwrap();
    let rules = limits["rules"].as_array().unwrap();
    let global = rules.iter().find(|r| r["name"] == "everyone").unwrap();
    assert_eq!((global["scope"].as_str(), global["route"].as_str()), (Some("global"), None));
    let per_ip = rules.iter().find(|r| r["name"] == "per-ip").unwrap();
    assert_eq!((per_ip["scope"].as_str(), per_ip["route"].as_str()), (Some("route"), Some("limited")));
    assert_eq!((per_ip["backend"].as_str(), per_ip["burst"].as_u64()), (Some("local"), Some(1)));
    assert_eq!(per_ip["key"], serde_json::json!(["client_ip"]));
    assert_eq!((per_ip["decisions"]["allowed"].as_u64(), per_ip["decisions"]["limited"].as_u64()), (Some(1), Some(1)));
    assert_eq!(per_ip["tracked_keys"].as_u64(), Some(1));
    assert_eq!(rules.iter().filter(|r| r["name"] == "everyone").count(), 1, "a global rule is listed once");
    // Read live: more traffic moves the counts without a reload.
    traffic.get("/limited/again").await;
    let limits = admin(&traffic.gateway, "GET", "/ratelimits").await.text();
    assert!(limits.contains("\"limited\": 2"), "{limits}");
}

#[tokio::test]
async fn a_wrong_answer_is_rejected_by_the_description() {
    let traffic = drive_traffic().await;
    let api = openapi();
    let body = admin(&traffic.gateway, "GET", "/breakers").await.text();
    let good: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(api.check("GET", "/breakers", 200, "application/json", &body).is_ok());
    type Spoil = fn(&mut serde_json::Value);
    let wrong: [(&str, Spoil); 5] = [
        ("a required field missing", |v| drop(v["breakers"][0].as_object_mut().unwrap().remove("state"))),
        ("a field not described", |v| v["breakers"][0]["colour"] = "red".into()),
        ("a value outside the enum", |v| v["breakers"][0]["state"] = "ajar".into()),
        ("a string for an integer", |v| v["breakers"][0]["window"]["calls"] = "two".into()),
        ("null where null is not allowed", |v| v["breakers"][0]["trips_total"] = serde_json::Value::Null),
    ];
    for (what, spoil) in wrong {
        let mut value = good.clone();
        spoil(&mut value);
        let result = api.check("GET", "/breakers", 200, "application/json", &value.to_string());
        assert!(result.is_err(), "{what} was accepted");
    }
    assert!(api.check("GET", "/breakers", 418, "application/json", &body).is_err(), "an undescribed status");
    assert!(api.check("GET", "/nowhere", 200, "application/json", &body).is_err(), "an undescribed path");
    // oneOf: exactly one choice must fit.
    assert!(api.check("POST", "/reload", 200, "application/json", r#"{"result":"unchanged"}"#).is_ok());
    assert!(api.check("POST", "/reload", 200, "application/json", r#"{"result":"success"}"#).is_err());
    let unknown_keyword = OpenApi::from_value(serde_json::json!({
        "paths": { "/x": { "get": { "responses": { "200": { "content": {
            "application/json": { "schema": { "type": "string", "pattern": "^a" } } } } } } } }
    }));
    assert!(unknown_keyword.check("GET", "/x", 200, "application/json", "\"b\"").is_err());
}

#[tokio::test]
async fn metrics_after_traffic_have_the_expected_series_and_values() {
    let traffic = drive_traffic().await;
    let text = admin(&traffic.gateway, "GET", "/metrics").await.text();
    for (series, value) in [
        ("weir_requests_total{route=\"ok\",code_class=\"2xx\"}", 4.0),
        ("weir_upstream_duration_seconds_count{route=\"ok\"}", 4.0),
        ("weir_requests_by_method_total{route=\"ok\",method=\"GET\"}", 3.0),
        ("weir_requests_by_method_total{route=\"ok\",method=\"POST\"}", 1.0),
        ("weir_requests_by_method_total{route=\"ok\",method=\"other\"}", 0.0),
        ("weir_request_duration_seconds_count{route=\"ok\"}", 4.0),
        ("weir_requests_in_flight{route=\"ok\"}", 0.0),
        ("weir_request_body_bytes_total{route=\"ok\"}", 5.0),
        ("weir_response_body_bytes_total{route=\"ok\"}", 4.0 * 2.0),
        ("weir_retries_total{route=\"retry\"}", 1.0),
        ("weir_retry_budget_exhausted_total{route=\"retry\"}", 0.0),
        ("weir_retry_budget_exhausted_total{route=\"frugal\"}", 1.0),
        ("weir_requests_total{route=\"retry\",code_class=\"5xx\"}", 1.0),
        ("weir_refusals_total{route=\"limited\",reason=\"rate_limited\"}", 1.0),
        ("weir_ratelimit_decisions_total{scope=\"limited\",rule=\"per-ip\",outcome=\"allowed\"}", 1.0),
        ("weir_ratelimit_decisions_total{scope=\"limited\",rule=\"per-ip\",outcome=\"limited\"}", 1.0),
        (
            "weir_ratelimit_decisions_total{scope=\"global\",rule=\"everyone\",outcome=\"allowed\"}",
            Traffic::REQUESTS as f64,
        ),
        ("weir_concurrency_shed_total{scope=\"route\",name=\"shed\",cause=\"queue_full\"}", 1.0),
        ("weir_refusals_total{route=\"shed\",reason=\"shed\"}", 1.0),
        ("weir_requests_total{route=\"shed\",code_class=\"2xx\"}", 1.0),
        ("weir_refusals_total{route=\"broken\",reason=\"connect_error\"}", 1.0),
        ("weir_refusals_total{route=\"broken\",reason=\"breaker_open\"}", 2.0),
        ("weir_upstream_breaker_state{upstream=\"dead\",state=\"open\"}", 1.0),
        ("weir_upstream_breaker_state{upstream=\"dead\",state=\"closed\"}", 0.0),
        ("weir_upstream_breaker_trips_total{upstream=\"dead\"}", 1.0),
        ("weir_upstream_breaker_transitions_total{upstream=\"dead\",to=\"open\"}", 1.0),
        ("weir_upstream_breaker_transitions_total{upstream=\"dead\",to=\"half_open\"}", 0.0),
        ("weir_connections_total{listener=\"public\"}", Traffic::REQUESTS as f64),
        ("weir_http_connections_total{listener=\"public\",protocol=\"http1\"}", Traffic::REQUESTS as f64),
        ("weir_connections_open{listener=\"public\"}", 0.0),
        ("weir_upstream_endpoint_healthy{upstream=\"live\",endpoint=\"", 1.0),
    ] {
        assert_eq!(metric(&text, series), Some(value), "{series} in\n{text}");
    }
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn metrics_pass_promtool() {
    let Some(promtool) = admin_support::promtool() else { return };
    let traffic = drive_traffic().await;
    // promtool reads the Prometheus text format, which /metrics serves to scrapers that ask for it.
    let answer = admin_accepting(&traffic.gateway, "GET", "/metrics", "text/plain;version=0.0.4").await;
    assert_eq!(answer.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = answer.text();
    assert_eq!(metric(&text, "weir_retries_total{route=\"retry\"}"), Some(1.0), "{text}");
    let lint = admin_support::promtool_check(&promtool, &text);
    assert!(lint.is_empty(), "promtool check metrics:\n{lint}");
    // The check bites: a counter without its help text is refused.
    let spoiled = text.replacen("# HELP weir_retries_total", "# HELP weir_unrelated_total", 1);
    assert!(!admin_support::promtool_check(&promtool, &spoiled).is_empty());
}

#[tokio::test]
async fn refusals_for_a_missing_token_match_the_description_too() {
    let token = "0123456789abcdef-secret";
    let yaml = format!(
        "admin: {{ address: \"127.0.0.1:0\", token: \"{token}\" }}\nlisteners:\n  - {{ name: public, address: \"127.0.0.1:0\" }}\nroutes:\n  - {{ name: hello, direct_response: {{ status: 200, body: hi }} }}\n"
    );
    let gateway = weir_test::TestGateway::start(&yaml).await;
    let api = openapi();
    for path in ["/readyz", "/metrics", "/config", "/routes", "/upstreams", "/breakers", "/ratelimits", "/reload/diff"]
    {
        let refused = admin(&gateway, "GET", path).await;
        assert_eq!(refused.status, 401, "{path}");
        let content_type = refused.header("content-type").unwrap_or_default();
        api.check("GET", path, 401, content_type, &refused.text()).unwrap();
    }
    let request = http::Request::get("/ratelimits").header("authorization", format!("Bearer {token}"));
    let request = request.body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    let allowed = weir_test::http1_request(gateway.admin(), request).await.unwrap();
    assert_eq!(allowed.text(), "{\n  \"rules\": []\n}\n");
    api.check("GET", "/ratelimits", 200, allowed.header("content-type").unwrap(), &allowed.text()).unwrap();
}

#[tokio::test]
async fn a_redis_rule_shows_its_failure_mode_and_whether_redis_answers() {
    let mock = weir_test::MockUpstream::start("app").await;
    let mut redis = weir_test::RedisServer::start().await;
    let yaml = format!(
        "admin: {{ address: \"127.0.0.1:0\" }}\nlisteners:\n  - {{ name: public, address: \"127.0.0.1:0\" }}\nupstreams:\n  app:\n    endpoints: [\"{}\"]\nrate_limit:\n  redis: {{ address: \"{}\", timeout: 200ms }}\nroutes:\n  - name: api\n    upstream: app\n    rate_limit: [{{ name: shared, key: route, rate: 100/s, mode: global, on_redis_error: refuse }}]\n",
        mock.addr(),
        redis.addr()
    );
    let gateway = weir_test::TestGateway::start(&yaml).await;
    let api = openapi();
    let rule = async |gateway: &weir_test::TestGateway| {
        let answer = admin(gateway, "GET", "/ratelimits").await;
        api.check("GET", "/ratelimits", 200, answer.header("content-type").unwrap(), &answer.text()).unwrap();
        let body: serde_json::Value = serde_json::from_str(&answer.text()).unwrap();
        body["rules"][0].clone()
    };
    let get = || http::Request::get("/").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    assert_eq!(weir_test::http1_request(gateway.addr(), get()).await.unwrap().status, 200);
    let healthy = rule(&gateway).await;
    assert_eq!(healthy["backend"], "redis");
    assert_eq!(
        healthy["redis"],
        serde_json::json!({ "on_error": "refuse", "connected": true, "errors_total": 0, "lease": 1, "leased_keys": 0 })
    );
    redis.kill();
    assert_eq!(weir_test::http1_request(gateway.addr(), get()).await.unwrap().status, 429, "fails closed");
    let down = rule(&gateway).await;
    assert_eq!(
        down["redis"],
        serde_json::json!({ "on_error": "refuse", "connected": false, "errors_total": 1, "lease": 1, "leased_keys": 0 })
    );
    assert_eq!((down["decisions"]["allowed"].as_u64(), down["decisions"]["limited"].as_u64()), (Some(1), Some(1)));
}
