//! Concurrency limits in the file format: defaults, and bad values named by field.

use std::time::Duration;

use weir_config::{Format, parse_str};

const BASE: &str = "listeners:\n  - name: public\n    address: 127.0.0.1:8080\nupstreams:\n  users:\n    endpoints: [\"127.0.0.1:9001\"]\n    concurrency: { max_in_flight: 100, adaptive: {} }\nroutes:\n  - upstream: users\n    concurrency: { max_in_flight: 4, max_queue: 8 }\n";

#[test]
fn limits_parse_with_their_defaults() {
    let config = parse_str(BASE, Format::Yaml, "test.yaml").unwrap();
    let route = config.routes[0].concurrency.as_ref().unwrap();
    assert_eq!((route.max_in_flight, route.max_queue), (4, 8));
    assert_eq!(route.queue_timeout.0, Duration::from_millis(100));
    assert!(route.adaptive.is_none());
    let upstream = config.upstreams["users"].concurrency.as_ref().unwrap();
    assert_eq!(upstream.max_queue, 0);
    let adaptive = upstream.adaptive.as_ref().unwrap();
    assert_eq!((adaptive.min, adaptive.max, adaptive.tolerance), (1, 1000, 2.0));
}

#[test]
fn bad_limits_name_their_field() {
    let cases = [
        ("max_in_flight: 4,", "max_in_flight: 0,", "routes[0].concurrency.max_in_flight"),
        ("max_queue: 8 }", "max_queue: 8, queue_timeout: 0s }", "routes[0].concurrency.queue_timeout"),
        ("adaptive: {}", "adaptive: { min: 10, max: 5 }", "upstreams.users.concurrency.adaptive"),
        ("adaptive: {}", "adaptive: { tolerance: 0.5 }", "upstreams.users.concurrency.adaptive.tolerance"),
        ("max_queue: 8 }", "max_queue: 8, burst: 3 }", "burst"),
    ];
    for (from, to, expected) in cases {
        let text = BASE.replace(from, to);
        assert_ne!(text, BASE, "case {from:?} did not apply");
        let error = parse_str(&text, Format::Yaml, "test.yaml").expect_err(to);
        let problems: Vec<String> = error.problems().iter().map(ToString::to_string).collect();
        assert!(problems.iter().any(|p| p.contains(expected)), "{expected:?} not in {problems:?}");
    }
}
