//! Loading configuration text: good files parse, bad ones name the line, field and what is valid.

use weir_config::values::HostPattern;
use weir_config::{Format, Problem, parse_str};

const GOOD: &str = r#"
listeners:
  - name: public
    address: 127.0.0.1:8080
upstreams:
  users:
    endpoints:
      - 127.0.0.1:9001
      - { address: "localhost:9002", weight: 3 }
routes:
  - name: users
    match: { host: "*.example.com", path_prefix: /users, method: [get, POST] }
    upstream: users
    timeout: 250ms
    max_body_size: 1MiB
  - match: { path: /hello }
    direct_response: { status: 200, body: "hi\n", headers: { content-type: text/plain } }
"#;

fn problems(text: &str, format: Format) -> Vec<Problem> {
    match parse_str(text, format, "test.yaml") {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.problems().to_vec(),
    }
}

#[test]
fn good_yaml_parses_with_defaults() {
    let config = parse_str(GOOD, Format::Yaml, "good.yaml").unwrap();
    assert_eq!(config.listeners[0].max_headers, 100);
    let route = &config.routes[0];
    assert_eq!(route.timeout.0, std::time::Duration::from_millis(250));
    assert_eq!(route.max_body_size.unwrap().0, 1 << 20);
    assert_eq!(route.matches.host, vec![HostPattern::Suffix(".example.com".into())]);
    assert_eq!(route.matches.method.len(), 2);
    assert_eq!(config.upstreams["users"].endpoints[1].weight, 3);
    assert_eq!(config.upstreams["users"].endpoints[1].address.host, "localhost");
}

#[test]
fn good_toml_parses() {
    let text = r#"
[[listeners]]
name = "public"
address = "127.0.0.1:8080"

[upstreams.users]
endpoints = ["127.0.0.1:9001"]

[[routes]]
upstream = "users"
match = { path_prefix = "/" }
"#;
    let config = parse_str(text, Format::Toml, "good.toml").unwrap();
    assert_eq!(config.routes.len(), 1);
}

#[test]
fn unknown_field_names_line_field_and_valid_names() {
    let text = GOOD.replace("    timeout: 250ms", "    tiemout: 250ms");
    let problems = problems(&text, Format::Yaml);
    assert_eq!(problems.len(), 1, "{problems:?}");
    let p = &problems[0];
    assert_eq!(p.line.map(|l| l.0), Some(14), "{p}");
    assert!(p.field.starts_with("routes[0]"), "{p}");
    assert!(p.message.contains("tiemout") && p.message.contains("timeout"), "{p}");
}

#[test]
fn bad_duration_names_line_and_format() {
    let text = GOOD.replace("timeout: 250ms", "timeout: 250 parsecs");
    let p = &problems(&text, Format::Yaml)[0];
    assert_eq!(p.line.map(|l| l.0), Some(14), "{p}");
    assert_eq!(p.field, "routes[0].timeout");
    assert!(!p.message.contains("at line"), "{p}");
    assert!(p.message.contains("250ms"), "{p}");
}

#[test]
fn toml_error_has_line_and_field() {
    let text = "[[listeners]]\nname = \"a\"\naddress = \"nonsense\"\n";
    let p = &problems(text, Format::Toml)[0];
    assert_eq!(p.line.map(|l| l.0), Some(3), "{p}");
    assert_eq!(p.field, "listeners[0].address");
}

#[test]
fn unknown_upstream_is_located_and_lists_choices() {
    let text = GOOD.replace("upstream: users", "upstream: usres");
    let p = &problems(&text, Format::Yaml)[0];
    assert_eq!(p.line.map(|l| l.0), Some(13), "{p}");
    assert!(p.message.contains("usres") && p.message.contains("defined: users"), "{p}");
}

#[test]
fn semantic_checks_catch_conflicts() {
    let cases = [
        ("path_prefix: /users,", "path: /a, path_prefix: /b,", "at most one of path"),
        (
            "    upstream: users\n    timeout",
            "    upstream: users\n    direct_response: { status: 200 }\n    timeout",
            "not both",
        ),
        ("path_prefix: /users,", "path_template: \"/users/{*rest}/x\",", "last segment"),
        (
            "    max_body_size: 1MiB",
            "    max_body_size: 1MiB\n    rewrite: { path: /x, strip_prefix: true }",
            "at most one of path",
        ),
        ("status: 200", "status: 999", "100 to 599"),
        ("address: 127.0.0.1:8080", "address: 127.0.0.1:8080\n    max_headers: 0", "between 1 and 1000"),
        ("timeout: 250ms", "timeout: 0s", "longer than zero"),
        ("\nlisteners:", "\nadmin: { address: \"0.0.0.0:9901\" }\nlisteners:", "set admin.token"),
        ("\nlisteners:", "\nadmin: { token: short }\nlisteners:", "at least 16"),
        (
            "  - match: { path: /hello }\n",
            "  - match: { path: /hello }\n    request_headers: { remove: [x-a] }\n",
            "cannot rewrite",
        ),
        (
            "    max_body_size: 1MiB",
            "    max_body_size: 1MiB\n    rewrite: { path_regex: { pattern: a, replacement: \"b c\" } }",
            "no spaces",
        ),
        ("\nlisteners:", "\naccess_log: { sample_ratio: 1.5 }\nlisteners:", "between 0 and 1"),
        ("\nlisteners:", "\naccess_log: { queue_lines: 0 }\nlisteners:", "between 1 and 1000000"),
        ("\nlisteners:", "\naccess_log: { fields: [status, status] }\nlisteners:", "listed twice"),
        (
            "\nlisteners:",
            "\naccess_log: { request_headers: [x-h0, x-h1, x-h2, x-h3, x-h4, x-h5, x-h6, x-h7, x-h8, x-h9, x-h10, x-h11, x-h12, x-h13, x-h14, x-h15, x-h16, x-h17, x-h18, x-h19, x-h20, x-h21, x-h22, x-h23, x-h24, x-h25, x-h26, x-h27, x-h28, x-h29, x-h30, x-h31, x-h32] }\nlisteners:",
            "at most 32 headers",
        ),
        ("\nlisteners:", "\naccess_log: { secret_headers: [\"bad header\"] }\nlisteners:", "header"),
    ];
    for (from, to, expected) in cases {
        let text = GOOD.replace(from, to);
        assert_ne!(text, GOOD, "case {from:?} did not apply");
        let problems = problems(&text, Format::Yaml);
        assert!(problems.iter().any(|p| p.to_string().contains(expected)), "{expected:?} not in {problems:?}");
    }
}

#[test]
fn error_display_names_file_and_line() {
    let text = GOOD.replace("upstream: users", "upstream: usres");
    let rendered = parse_str(&text, Format::Yaml, "gw.yaml").unwrap_err().to_string();
    assert!(rendered.starts_with("gw.yaml:13:"), "{rendered}");
}

const UPSTREAM_OPTIONS: &str = r#"
listeners:
  - name: public
    address: 127.0.0.1:8080
upstreams:
  users:
    endpoints: [127.0.0.1:9001, 127.0.0.1:9002]
    balance: consistent_hash
    hash_key: { cookie: session }
    pool: { max_connections: 64, acquire_timeout: 250ms, tcp_keepalive: 0s }
    health_check: { type: http, path: /healthz, expected_statuses: [200, "300-399"], interval: 2s }
    outlier_detection: { consecutive_5xx: 0, failure_percentage: "40%", max_ejection_percent: 30 }
  search:
    endpoints: [127.0.0.1:9003]
    balance: least_request
    health_check: { type: tcp }
    outlier_detection: { enabled: false }
routes:
  - upstream: users
"#;

#[test]
fn upstream_options_parse() {
    let config = parse_str(UPSTREAM_OPTIONS, Format::Yaml, "u.yaml").unwrap();
    let users = &config.upstreams["users"];
    assert_eq!(users.hash_key, Some(weir_config::HashKey::Cookie("session".into())));
    assert_eq!(users.pool.max_connections, 64);
    let check = users.health_check.as_ref().unwrap();
    assert_eq!(check.expected_statuses.iter().map(|r| r.0.clone()).collect::<Vec<_>>(), vec![200..=200, 300..=399]);
    assert_eq!(check.unhealthy_threshold, 3);
    assert_eq!(users.outlier_detection.failure_percentage.0, 40);
    assert_eq!(users.outlier_detection.consecutive_gateway_errors, 5);
    let search = &config.upstreams["search"];
    assert_eq!(search.balance, weir_config::Balance::LeastRequest);
    assert_eq!(search.health_check.as_ref().unwrap().kind, weir_config::HealthCheckKind::Tcp);
    assert!(!search.outlier_detection.enabled);
}

#[test]
fn bad_upstream_options_are_explained() {
    let cases = [
        ("    hash_key: { cookie: session }\n", "", "needs a hash_key"),
        ("    balance: least_request\n", "    balance: least_request\n    hash_key: path\n", "only used with"),
        ("balance: least_request", "balance: fastest", "least_request"),
        ("\"300-399\"", "\"399-300\"", "invalid status range"),
        ("\"40%\"", "\"140%\"", "0 to 100"),
        ("max_connections: 64", "max_connections: 0", "at least 1"),
        ("interval: 2s", "interval: 2s, unhealthy_threshold: 0", "at least 1"),
        ("max_ejection_percent: 30", "max_ejection_percent: 30, max_ejection_time: 1s", "at least base_ejection_time"),
    ];
    for (from, to, expected) in cases {
        let text = UPSTREAM_OPTIONS.replace(from, to);
        assert_ne!(text, UPSTREAM_OPTIONS, "case {from:?} did not apply");
        let problems = problems(&text, Format::Yaml);
        assert!(problems.iter().any(|p| p.to_string().contains(expected)), "{expected:?} not in {problems:?}");
    }
}

#[test]
fn access_log_section_parses_and_names_valid_fields() {
    let text = GOOD.replace(
        "\nlisteners:",
        "\naccess_log:\n  path: /var/log/weir/access.log\n  fields: [time, status, duration_ms]\n  sample_ratio: 0.25\nlisteners:",
    );
    let config = parse_str(&text, Format::Yaml, "log.yaml").unwrap();
    let log = config.access_log.as_ref().unwrap();
    assert_eq!(log.path.as_deref(), Some(std::path::Path::new("/var/log/weir/access.log")));
    assert_eq!(log.fields.len(), 3);
    assert_eq!(log.sample_ratio, 0.25);
    assert!(log.always_log_errors && !log.query);
    assert_eq!(log.queue_lines, 16_384);
    let typo = text.replace("duration_ms]", "duraton_ms]");
    let problems = problems(&typo, Format::Yaml);
    assert!(problems.iter().any(|p| p.message.contains("duration_ms")), "{problems:?}");
}

/// The blocks of `lang` code in `text`.
fn code_blocks<'a>(text: &'a str, lang: &str) -> Vec<&'a str> {
    let fence = format!("```{lang}\n");
    text.split(&fence).skip(1).filter_map(|rest| rest.split("```").next()).collect()
}

#[test]
fn the_reference_complete_examples_are_valid() {
    let reference =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md")).unwrap();
    let complete = &reference[reference.find("## A complete example").expect("complete example section")..];
    let (yaml, toml) = (code_blocks(complete, "yaml"), code_blocks(complete, "toml"));
    assert_eq!((yaml.len(), toml.len()), (1, 1));
    let from_yaml = parse_str(yaml[0], Format::Yaml, "example.yaml").unwrap_or_else(|e| panic!("{e}"));
    let from_toml = parse_str(toml[0], Format::Toml, "example.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(format!("{:?}", from_yaml.access_log), format!("{:?}", from_toml.access_log));
    assert_eq!(from_yaml.routes.len(), from_toml.routes.len());
}
