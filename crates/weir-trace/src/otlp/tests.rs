use std::time::Duration;

use super::*;

fn span(status: u16, parent: bool) -> SpanData {
    SpanData {
        trace_id: [1; 16],
        span_id: [2; 8],
        parent_span_id: parent.then_some([3; 8]),
        trace_state: None,
        start: UNIX_EPOCH + Duration::from_nanos(1_000),
        arrived: std::time::Instant::now(),
        duration: Duration::from_nanos(500),
        http: HttpFields {
            method: Some(http::Method::GET),
            route: Some("users".into()),
            status,
            scheme: "http",
            ..HttpFields::default()
        },
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_span_holds_ids_times_kind_and_attributes() {
    let encoded = Encoder::new("gw", &[]).request(&[span(200, true)]);
    assert!(contains(&encoded, &[0x0a, 16, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]), "trace id");
    assert!(contains(&encoded, &[0x12, 8, 2, 2, 2, 2, 2, 2, 2, 2]), "span id");
    assert!(contains(&encoded, &[0x22, 8, 3, 3, 3, 3, 3, 3, 3, 3]), "parent span id");
    assert!(contains(&encoded, &[0x30, 2]), "server kind");
    assert!(contains(&encoded, &[0x39, 0xe8, 0x03, 0, 0, 0, 0, 0, 0]), "start time 1000ns");
    assert!(contains(&encoded, &[0x41, 0xdc, 0x05, 0, 0, 0, 0, 0, 0]), "end time 1500ns");
    // KeyValue { key: "weir.route", value: AnyValue { string_value: "users" } }
    let mut route = vec![0x4a, 21, 0x0a, 10];
    route.extend_from_slice(b"weir.route");
    route.extend_from_slice(&[0x12, 7, 0x0a, 5]);
    route.extend_from_slice(b"users");
    assert!(contains(&encoded, &route), "weir.route attribute");
    assert!(contains(&encoded, b"GET users"), "span name");
    assert!(contains(&encoded, &[0x85, 0x01, 0x01, 0x03, 0, 0]), "flags: sampled, remote parent");
    assert!(!contains(&encoded, &[0x7a]), "no status below 500");
}

#[test]
fn server_errors_set_an_error_status() {
    let encoded = Encoder::new("gw", &[]).request(&[span(503, false)]);
    assert!(contains(&encoded, &[0x7a, 2, 0x18, 2]), "status ERROR");
    assert!(contains(&encoded, b"error.type"));
    assert!(contains(&encoded, b"503"), "the status code as error.type");
    assert!(contains(&encoded, &[0x85, 0x01, 0x01, 0x01, 0, 0]), "flags: sampled, local root");
}

#[test]
fn the_resource_names_the_service_first() {
    let encoded = Encoder::new("gw", &[("service.name".into(), "ignored".into()), ("env".into(), "prod".into())])
        .request(&[span(200, false)]);
    assert!(contains(&encoded, b"service.name"));
    assert!(!contains(&encoded, b"ignored"));
    assert!(contains(&encoded, b"prod"));
}

#[test]
fn hosts_split_into_address_and_port() {
    assert_eq!(split_port("a.com:8080"), ("a.com", Some(8080)));
    assert_eq!(split_port("a.com"), ("a.com", None));
    assert_eq!(split_port("[::1]:80"), ("::1", Some(80)));
    assert_eq!(split_port("[::1]"), ("::1", None));
}
