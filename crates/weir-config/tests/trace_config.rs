//! The `tracing` section: defaults, and bad values named by field with what would be valid.

use weir_config::{Format, Problem, parse_str};

const BASE: &str = "listeners:\n  - name: public\n    address: 127.0.0.1:8080\n";

fn with_tracing(section: &str) -> String {
    format!("tracing:\n{section}{BASE}")
}

fn problems(text: &str) -> Vec<Problem> {
    match parse_str(text, Format::Yaml, "trace.yaml") {
        Ok(_) => panic!("expected an error for\n{text}"),
        Err(e) => e.problems().to_vec(),
    }
}

#[test]
fn tracing_is_off_unless_configured_and_has_defaults() {
    assert!(parse_str(BASE, Format::Yaml, "t.yaml").unwrap().tracing.is_none());
    let config = parse_str(&with_tracing("  otlp_endpoint: http://collector:4317\n"), Format::Yaml, "t.yaml").unwrap();
    let tracing = config.tracing.as_ref().unwrap();
    assert_eq!(tracing.sampling_ratio, 1.0);
    assert_eq!(tracing.service_name, "weir");
    assert_eq!((tracing.batch_size, tracing.queue_size), (512, 2048));
    assert_eq!(tracing.batch_delay.0, std::time::Duration::from_secs(1));
    assert_eq!(tracing.export_timeout.0, std::time::Duration::from_secs(10));
    assert!(tracing.resource.is_empty());
    assert_eq!(tracing.otlp_protocol, weir_config::OtlpProtocol::Grpc);
    let http = with_tracing("  otlp_endpoint: http://collector:4318\n  otlp_protocol: http_protobuf\n");
    let config = parse_str(&http, Format::Yaml, "t.yaml").unwrap();
    assert_eq!(config.tracing.as_ref().unwrap().otlp_protocol, weir_config::OtlpProtocol::HttpProtobuf);
}

#[test]
fn bad_tracing_values_name_their_field() {
    let cases = [
        ("  otlp_endpoint: collector:4317\n", "tracing.otlp_endpoint", "http://"),
        ("  otlp_endpoint: https://collector:4317\n", "tracing.otlp_endpoint", "TLS"),
        ("  otlp_endpoint: http://c:4317/v1/traces\n", "tracing.otlp_endpoint", "path"),
        ("  otlp_endpoint: http://c:4317\n  sampling_ratio: 1.5\n", "tracing.sampling_ratio", "between 0 and 1"),
        ("  otlp_endpoint: http://c:4317\n  queue_size: 0\n", "tracing.queue_size", "between"),
        ("  otlp_endpoint: http://c:4317\n  queue_size: 10\n  batch_size: 11\n", "tracing.batch_size", "queue_size"),
        ("  otlp_endpoint: http://c:4317\n  batch_delay: 0s\n", "tracing.batch_delay", "longer than zero"),
        ("  otlp_endpoint: http://c:4317\n  export_timeout: 0s\n", "tracing.export_timeout", "longer than zero"),
        ("  otlp_endpoint: http://c:4317\n  service_name: \"\"\n", "tracing.service_name", "empty"),
    ];
    for (section, field, hint) in cases {
        let found = problems(&with_tracing(section));
        assert!(found.iter().any(|p| p.field == field && p.message.contains(hint)), "{section}: {found:?}");
    }
    let typo = problems(&with_tracing("  otlp_endpoint: http://c:4317\n  sample_ratio: 0.5\n"));
    assert!(typo.iter().any(|p| p.message.contains("sampling_ratio")), "{typo:?}");
    let protocol = problems(&with_tracing("  otlp_endpoint: http://c:4317\n  otlp_protocol: http\n"));
    assert!(protocol.iter().any(|p| p.message.contains("http_protobuf")), "{protocol:?}");
}

#[test]
fn complete_examples_in_the_tracing_guide_are_valid() {
    let guide = include_str!("../../../docs/tracing.md");
    let blocks: Vec<_> = guide.split("```yaml\n").skip(1).filter_map(|rest| rest.split_once("```")).collect();
    let complete: Vec<_> = blocks.iter().map(|(block, _)| *block).filter(|b| b.contains("listeners:")).collect();
    assert!(!complete.is_empty(), "the guide has a complete example");
    for block in complete {
        let config = parse_str(block, Format::Yaml, "tracing.md").unwrap_or_else(|e| panic!("{e}\n{block}"));
        assert!(config.tracing.is_some());
    }
}
