//! The `rate_limit` sections: rules parse with their defaults, and mistakes name the field and what
//! would be valid.

use std::time::Duration;

use weir_config::ratelimit::{KeyPart, LimitMode, RedisFailure};
use weir_config::{Format, Problem, parse_str};

const GOOD: &str = r#"
listeners:
  - { name: public, address: 127.0.0.1:8080 }
rate_limit:
  max_keys: 5000
  redis: { address: 127.0.0.1:6379 }
  rules:
    - { name: per-ip, key: client_ip, rate: 6000/min, burst: 20 }
routes:
  - name: items
    match: { path_template: "/tenants/{tenant}/items" }
    direct_response: { status: 200 }
    rate_limit:
      - key: [header:x-api-key, "path:tenant"]
        rate: 10/s
        mode: global
        on_redis_error: refuse
        lease: 50
        response_headers: true
        exempt: { cidrs: [10.0.0.0/8], header: { name: x-bypass, secret: "0123456789abcdef" } }
"#;

fn problems(text: &str) -> Vec<Problem> {
    match parse_str(text, Format::Yaml, "test.yaml") {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.problems().to_vec(),
    }
}

#[test]
fn rules_parse_with_defaults() {
    let config = parse_str(GOOD, Format::Yaml, "good.yaml").unwrap();
    let global = &config.rate_limit.rules[0];
    assert_eq!(global.key, vec![KeyPart::ClientIp]);
    assert_eq!(global.rate.count, 6000);
    assert_eq!(global.rate.period, Duration::from_secs(60));
    assert_eq!(global.mode, LimitMode::Local);
    assert_eq!(global.redis_failure(), RedisFailure::Local);
    assert_eq!(global.lease, None);
    let rule = &config.routes[0].rate_limit[0];
    assert_eq!(rule.display_name(), "header:x-api-key+path:tenant");
    assert_eq!(rule.effective_burst(), 10);
    assert_eq!(rule.mode, LimitMode::Global);
    assert_eq!(rule.redis_failure(), RedisFailure::Refuse);
    assert_eq!(rule.lease, Some(50));
    assert_eq!(config.rate_limit.redis.as_ref().unwrap().timeout.0, Duration::from_millis(50));
}

#[test]
fn a_bad_rate_is_located_and_explained() {
    let text = GOOD.replace("rate: 10/s", "rate: 10/fortnight");
    let p = &problems(&text)[0];
    assert_eq!(p.line.map(|l| l.0), Some(15), "{p}");
    assert!(p.field.ends_with("rate_limit[0].rate"), "{p}");
    assert!(p.message.contains("6000/min"), "{p}");
}

#[test]
fn rule_mistakes_are_caught() {
    let cases = [
        ("key: client_ip,", "key: client-ip,", "use client_ip, route"),
        ("\"path:tenant\"", "\"path:user\"", "needs a {user} parameter"),
        ("burst: 20", "burst: 0", "between 1 and 1000000"),
        ("  redis: { address: 127.0.0.1:6379 }\n", "", "needs rate_limit.redis"),
        ("secret: \"0123456789abcdef\"", "secret: short", "at least 16"),
        ("max_keys: 5000", "max_keys: 0", "between 1 and"),
        ("name: per-ip", "name: \"per ip\"", "letters, digits"),
        ("      - key: [", "      - name: per-ip\n        key: [", "used twice"),
        ("key: client_ip,", "key: \"path:tenant\",", "use them on a route"),
        ("burst: 20 }", "burst: 20, on_redis_error: refuse }", "global rules only"),
        ("burst: 20 }", "burst: 20, lease: 10 }", "global rules only"),
        ("lease: 50", "lease: 0", "between 1 and 10000"),
        ("lease: 50", "lease: 10001", "between 1 and 10000"),
    ];
    for (from, to, expected) in cases {
        let text = GOOD.replace(from, to);
        assert_ne!(text, GOOD, "case {from:?} did not apply");
        let problems = problems(&text);
        assert!(problems.iter().any(|p| p.to_string().contains(expected)), "{expected:?} not in {problems:?}");
    }
}
