use std::net::SocketAddr;

use http::Request;
use weir_config::{Format, parse_str};

use super::*;

fn stage(rules: &str) -> (RateLimitStage, Arc<Metrics>) {
    let text = format!(
        "listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]\nroutes:\n  - name: r\n    direct_response: {{ status: 200 }}\n    rate_limit: {rules}\n"
    );
    let config = parse_str(&text, Format::Yaml, "test.yaml").unwrap();
    let metrics = Metrics::new();
    let limiters = &mut carry::Rebuild::fresh();
    let shared = SharedRules::build(&config, &metrics, limiters);
    let stage = RateLimitStage::build(&shared, &config, &config.routes[0], &Arc::from("r"), &metrics, limiters);
    (stage, metrics)
}

fn request(headers: &[(&str, &str)]) -> Parts {
    let mut builder = Request::get("/");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

fn peer(addr: &str) -> Peer {
    Peer::new(addr.parse::<SocketAddr>().unwrap(), &[])
}

#[tokio::test]
async fn the_first_rule_to_refuse_is_named() {
    let (stage, metrics) = stage(
        "[{ name: wide, key: route, rate: 100/min, burst: 5 }, { name: narrow, key: client_ip, rate: 1/min, burst: 2 }]",
    );
    let client = peer("192.0.2.1:1000");
    let parts = request(&[]);
    assert!(stage.check(&client, &parts).await.is_ok());
    assert!(stage.check(&client, &parts).await.is_ok());
    let limited = stage.check(&client, &parts).await.err().expect("third request refused");
    assert_eq!(&*limited.rule.name, "narrow");
    // Another client still gets through the narrow rule, until the wide one is spent.
    let other = peer("192.0.2.2:1000");
    assert!(stage.check(&other, &parts).await.is_ok());
    assert!(stage.check(&other, &parts).await.is_ok());
    assert_eq!(&*stage.check(&other, &parts).await.err().unwrap().rule.name, "wide");
    let text = metrics.encode();
    assert!(
        text.contains("weir_ratelimit_decisions_total{scope=\"r\",rule=\"narrow\",outcome=\"limited\"} 1"),
        "{text}"
    );
    assert!(text.contains("weir_ratelimit_decisions_total{scope=\"r\",rule=\"wide\",outcome=\"limited\"} 1"), "{text}");
}

#[tokio::test]
async fn the_refusal_carries_retry_after_and_the_draft_fields() {
    let (stage, metrics) = stage("[{ name: per-ip, key: client_ip, rate: 1/min, burst: 1 }]");
    let client = peer("192.0.2.1:1000");
    let parts = request(&[]);
    stage.check(&client, &parts).await.ok().unwrap();
    let limited = stage.check(&client, &parts).await.err().unwrap();
    let response = limited.into_response(&metrics.route("r", &Refusal::REASONS));
    assert_eq!(response.status(), 429);
    let header = |name: &str| response.headers().get(name).unwrap().to_str().unwrap().to_string();
    let retry: u64 = header("retry-after").parse().unwrap();
    assert!((59..=60).contains(&retry), "{retry}");
    assert_eq!(header("ratelimit-policy"), "\"per-ip\";q=1;w=60");
    assert_eq!(header("ratelimit"), format!("\"per-ip\";r=0;t={retry}"));
    assert_eq!(header("proxy-status"), "weir; error=http_request_denied; details=\"rate_limited\"");
}

#[tokio::test]
async fn exempt_requests_and_requests_without_a_key_pass() {
    let (stage, metrics) = stage(
        "[{ name: key, key: header:x-api-key, rate: 1/min, burst: 1, exempt: { cidrs: [198.51.100.0/24], header: { name: x-bypass, secret: \"0123456789abcdef\" } } }]",
    );
    let keyed = request(&[("x-api-key", "a")]);
    let client = peer("192.0.2.1:1000");
    assert!(stage.check(&client, &keyed).await.is_ok());
    assert!(stage.check(&client, &keyed).await.is_err());
    assert!(stage.check(&peer("198.51.100.3:1"), &keyed).await.is_ok());
    let bypass = request(&[("x-api-key", "a"), ("x-bypass", "0123456789abcdef")]);
    assert!(stage.check(&client, &bypass).await.is_ok());
    let wrong = request(&[("x-api-key", "a"), ("x-bypass", "0123456789abcdeX")]);
    assert!(stage.check(&client, &wrong).await.is_err());
    assert!(stage.check(&client, &request(&[])).await.is_ok());
    let text = metrics.encode();
    assert!(text.contains("outcome=\"exempt\"} 2"), "{text}");
    assert!(text.contains("outcome=\"no_key\"} 1"), "{text}");
}

#[tokio::test]
async fn allowed_responses_carry_fields_only_when_asked() {
    let (stage, _) = stage(
        "[{ name: quiet, key: route, rate: 10/s }, { name: loud, key: route, rate: 10/s, burst: 3, response_headers: true }]",
    );
    let admission = stage.check(&peer("192.0.2.1:1"), &request(&[])).await.ok().unwrap();
    let mut headers = HeaderMap::new();
    admission.apply(&mut headers);
    assert_eq!(headers.get_all("ratelimit-policy").iter().count(), 1);
    assert_eq!(headers["ratelimit-policy"], "\"loud\";q=10;w=1");
    assert_eq!(headers["ratelimit"], "\"loud\";r=2;t=1");
}

/// The route's stage built against `registry`, with the registry to build the next one from.
fn rebuilt(
    registry: &carry::LimiterRegistry,
    global_burst: u32,
    route_burst: u32,
) -> (RateLimitStage, carry::LimiterRegistry) {
    let text = format!(
        "listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]\nrate_limit:\n  rules: [{{ name: all, key: header:x-all, rate: 1/min, burst: {global_burst} }}]\nroutes:\n  - name: r\n    direct_response: {{ status: 200 }}\n    rate_limit: [{{ name: own, key: header:x-own, rate: 1/min, burst: {route_burst} }}]\n"
    );
    let config = parse_str(&text, Format::Yaml, "test.yaml").unwrap();
    let metrics = Metrics::new();
    let mut limiters = registry.rebuild();
    let shared = SharedRules::build(&config, &metrics, &mut limiters);
    let stage = RateLimitStage::build(&shared, &config, &config.routes[0], &Arc::from("r"), &metrics, &mut limiters);
    (stage, limiters.finish())
}

#[tokio::test]
async fn unchanged_rules_keep_their_buckets_through_a_rebuild_and_changed_ones_start_whole() {
    let client = peer("192.0.2.1:1000");
    let (global, own) = (request(&[("x-all", "k")]), request(&[("x-own", "k")]));
    let (stage, registry) = rebuilt(&carry::LimiterRegistry::default(), 1, 1);
    assert_eq!(registry.len(), 2);
    for parts in [&global, &own] {
        assert!(stage.check(&client, parts).await.is_ok());
        assert!(stage.check(&client, parts).await.is_err());
    }
    let (stage, registry) = rebuilt(&registry, 1, 1);
    assert!(stage.check(&client, &global).await.is_err(), "the global rule's bucket was reset");
    assert!(stage.check(&client, &own).await.is_err(), "the route rule's bucket was reset");
    // The route rule changes: its limiter is new; the global rule's is still carried.
    let (stage, _) = rebuilt(&registry, 1, 2);
    assert!(stage.check(&client, &global).await.is_err());
    assert!(stage.check(&client, &own).await.is_ok());
}
