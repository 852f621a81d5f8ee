//! Distributed tracing over real sockets: the gateway's span reaches a mock OTLP collector as a
//! child of the caller's span, the upstream receives a `traceparent` naming it, unsampled callers
//! are followed, and a collector outage costs requests nothing.

use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use weir_test::{AttributeValue, ExportedSpan, MockCollector, MockUpstream, Received, TestGateway, http1_request};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn config(upstream: SocketAddr, collector: &str, ratio: f64) -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    format!(
        "tracing:\n  otlp_endpoint: \"{collector}\"\n  sampling_ratio: {ratio}\n  batch_delay: 5ms\n  service_name: edge\n  resource: {{ deployment.environment.name: test }}\nlisteners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n  live:\n    endpoints: [\"{upstream}\"]\n  dead:\n    endpoints: [\"{closed}\"]\nroutes:\n  - {{ name: users, match: {{ path_prefix: /users }}, upstream: live }}\n  - {{ name: broken, match: {{ path_prefix: /broken }}, upstream: dead }}\n"
    )
}

fn get(path: &str, traceparent: Option<&str>) -> Request<Empty<Bytes>> {
    let mut request = Request::get(path)
        .header("host", "api.example.com:8443")
        .header("user-agent", "trace-test/1.0")
        .header("tracestate", "vendor=opaque");
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    request.body(Empty::new()).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `traceparent` the upstream received, split into trace id, parent id and flags.
fn forwarded_traceparent(received: &Received) -> (String, String, String) {
    let value = received.headers.get("traceparent").expect("the upstream got a traceparent").to_str().unwrap();
    let parts: Vec<_> = value.split('-').collect();
    assert_eq!((parts.len(), parts[0]), (4, "00"), "{value}");
    (parts[1].to_string(), parts[2].to_string(), parts[3].to_string())
}

fn text<'a>(span: &'a ExportedSpan, key: &str) -> &'a str {
    span.attribute(key).and_then(AttributeValue::as_str).unwrap_or_else(|| panic!("{key} missing: {span:?}"))
}

fn int(span: &ExportedSpan, key: &str) -> i64 {
    span.attribute(key).and_then(AttributeValue::as_int).unwrap_or_else(|| panic!("{key} missing: {span:?}"))
}

#[tokio::test]
async fn a_traced_request_exports_a_child_span_that_the_upstream_is_told_about() {
    let (upstream, collector) = (MockUpstream::start("users").await, MockCollector::start().await);
    // A ratio of 0 samples no new trace: this span exists because the caller's is sampled.
    let gateway = TestGateway::start(&config(upstream.addr(), &collector.endpoint(), 0.0)).await;
    let caller = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let answer = http1_request(gateway.addr(), get("/users/7?q=1", Some(&caller))).await.unwrap();
    assert_eq!(answer.status, 200);

    let received = upstream.wait_for(1).await;
    let (trace_id, parent, flags) = forwarded_traceparent(&received[0]);
    assert_eq!((trace_id.as_str(), flags.as_str()), (TRACE_ID, "01"));
    assert_ne!(parent, CALLER_SPAN, "the upstream's parent is weir's span, not the caller's");
    assert_eq!(received[0].headers["tracestate"], "vendor=opaque");

    let spans = collector.wait_for_spans(1).await;
    let span = &spans[0];
    assert_eq!((hex(&span.trace_id), hex(&span.parent_span_id)), (TRACE_ID.into(), CALLER_SPAN.into()));
    assert_eq!(hex(&span.span_id), parent, "the exported span is the one named upstream");
    assert_eq!((span.name.as_str(), span.kind, span.status_code), ("GET users", 2, 0));
    assert_eq!(span.trace_state, "vendor=opaque");
    assert!(span.start_unix_nanos > 0 && span.end_unix_nanos >= span.start_unix_nanos);
    assert_eq!(span.flags & 0x301, 0x301, "sampled, with a remote parent");
    for (key, value) in [
        ("http.request.method", "GET"),
        ("url.path", "/users/7"),
        ("url.scheme", "http"),
        ("server.address", "api.example.com"),
        ("network.protocol.version", "1.1"),
        ("client.address", "127.0.0.1"),
        ("user_agent.original", "trace-test/1.0"),
        ("weir.route", "users"),
        ("weir.upstream", "live"),
    ] {
        assert_eq!(text(span, key), value, "{key}");
    }
    assert_eq!(text(span, "weir.endpoint"), upstream.addr().to_string());
    assert_eq!(int(span, "server.port"), 8443);
    assert_eq!((int(span, "http.response.status_code"), int(span, "weir.attempts")), (200, 1));
    assert!(span.attribute("weir.refusal_reason").is_none() && span.attribute("error.type").is_none());
    assert_eq!(span.resource["service.name"], AttributeValue::String("edge".into()));
    assert_eq!(span.resource["deployment.environment.name"], AttributeValue::String("test".into()));
    assert_eq!(span.scope_name, "weir");
}

#[tokio::test]
async fn a_refused_request_ends_its_span_in_error_with_the_reason() {
    let (upstream, collector) = (MockUpstream::start("users").await, MockCollector::start().await);
    let gateway = TestGateway::start(&config(upstream.addr(), &collector.endpoint(), 1.0)).await;
    let answer = http1_request(gateway.addr(), get("/broken", None)).await.unwrap();
    assert_eq!(answer.status, 502);
    let span = collector.wait_for_spans(1).await.remove(0);
    assert!(span.parent_span_id.is_empty(), "a request without traceparent starts a trace");
    assert_eq!((span.status_code, span.status_message.as_str()), (2, "connect_error"));
    assert_eq!(text(&span, "weir.refusal_reason"), "connect_error");
    assert_eq!(text(&span, "error.type"), "connect_error");
    assert_eq!(int(&span, "http.response.status_code"), 502);
    assert_eq!(span.flags & 0x301, 0x101, "sampled, a local root");
}

#[tokio::test]
async fn an_unsampled_caller_is_followed_and_nothing_is_exported_for_it() {
    let (upstream, collector) = (MockUpstream::start("users").await, MockCollector::start().await);
    let gateway = TestGateway::start(&config(upstream.addr(), &collector.endpoint(), 1.0)).await;
    let unsampled = format!("00-{TRACE_ID}-{CALLER_SPAN}-00");
    assert_eq!(http1_request(gateway.addr(), get("/users/1", Some(&unsampled))).await.unwrap().status, 200);
    // A malformed traceparent starts a new trace (sampled at ratio 1), and its tracestate is dropped.
    let malformed = format!("00-{}-{CALLER_SPAN}-01", TRACE_ID.to_uppercase());
    assert_eq!(http1_request(gateway.addr(), get("/users/2", Some(&malformed))).await.unwrap().status, 200);

    let received = upstream.wait_for(2).await;
    let (trace_id, parent, flags) = forwarded_traceparent(&received[0]);
    assert_eq!((trace_id.as_str(), flags.as_str()), (TRACE_ID, "00"), "the caller's decision travels on");
    assert_ne!(parent, CALLER_SPAN);
    assert_eq!(received[0].headers["tracestate"], "vendor=opaque");
    let (new_trace, new_parent, new_flags) = forwarded_traceparent(&received[1]);
    assert_ne!(new_trace.to_uppercase(), TRACE_ID.to_uppercase());
    assert_eq!(new_flags, "01");
    assert!(!received[1].headers.contains_key("tracestate"));

    // The unsampled request ended first: had it been recorded, its span would come first.
    let spans = collector.wait_for_spans(1).await;
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!((hex(&spans[0].trace_id), hex(&spans[0].span_id)), (new_trace, new_parent));
}

#[tokio::test]
async fn without_tracing_the_callers_traceparent_passes_through() {
    let upstream = MockUpstream::start("users").await;
    let yaml = format!(
        "listeners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n  live:\n    endpoints: [\"{}\"]\nroutes:\n  - {{ match: {{ path_prefix: / }}, upstream: live }}\n",
        upstream.addr()
    );
    let gateway = TestGateway::start(&yaml).await;
    let caller = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    http1_request(gateway.addr(), get("/", Some(&caller))).await.unwrap();
    assert_eq!(upstream.wait_for(1).await[0].headers["traceparent"], caller.as_str());
}

#[tokio::test]
async fn a_collector_outage_costs_requests_nothing_and_a_returning_collector_gets_later_spans() {
    let upstream = MockUpstream::start("users").await;
    // The collector's address, held by a listener that accepts and hangs up: an export that fails.
    let broken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = broken.local_addr().unwrap();
    let gateway = TestGateway::start(&config(upstream.addr(), &format!("http://{addr}"), 1.0)).await;
    let lost = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    assert_eq!(http1_request(gateway.addr(), get("/users/1", Some(&lost))).await.unwrap().status, 200);
    let (connection, _) = tokio::time::timeout(weir_test::TEST_TIMEOUT, broken.accept()).await.unwrap().unwrap();
    drop((connection, broken));

    let collector = MockCollector::start_at(addr).await;
    assert_eq!(http1_request(gateway.addr(), get("/users/2", None)).await.unwrap().status, 200);
    let spans = collector.wait_for_spans(1).await;
    assert!(spans.iter().all(|span| hex(&span.trace_id) != TRACE_ID), "the failed batch is not sent again");
    assert_eq!(text(&spans[0], "url.path"), "/users/2");

    let shared = gateway.gateway().clone();
    gateway.stop().await;
    let metrics = shared.metrics().encode();
    for series in [
        "weir_trace_export_errors_total 1",
        "weir_trace_spans_dropped_total{reason=\"export_failed\"} 1",
        "weir_trace_spans_exported_total 1",
        "weir_trace_spans_dropped_total{reason=\"queue_full\"} 0",
    ] {
        assert!(metrics.contains(series), "{series} missing from\n{metrics}");
    }
}

#[tokio::test]
async fn a_trace_weir_starts_is_named_in_the_access_log_and_reads_http2_attributes() {
    let (upstream, collector) = (MockUpstream::start("users").await, MockCollector::start().await);
    let dir = std::env::temp_dir().join(format!("weir-traces-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let _ = std::fs::remove_file(&log);
    let yaml = format!(
        "access_log: {{ path: \"{}\" }}\n{}",
        log.display(),
        config(upstream.addr(), &collector.endpoint(), 1.0)
    );
    let gateway = TestGateway::start(&yaml).await;
    let request = Request::get("http://api.example.com:9000/users/3").body(Empty::<Bytes>::new()).unwrap();
    assert_eq!(weir_test::h2c_request(gateway.addr(), request).await.unwrap().status, 200);

    let span = collector.wait_for_spans(1).await.remove(0);
    assert!(span.parent_span_id.is_empty());
    assert_eq!(text(&span, "network.protocol.version"), "2");
    assert_eq!(text(&span, "server.address"), "api.example.com");
    assert_eq!(int(&span, "server.port"), 9000);
    let (trace_id, parent, _) = forwarded_traceparent(&upstream.wait_for(1).await[0]);
    assert_eq!((hex(&span.trace_id), hex(&span.span_id)), (trace_id.clone(), parent));

    assert!(gateway.gateway().access_log().unwrap().flush(weir_test::TEST_TIMEOUT));
    let line: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(line["trace_id"], trace_id.as_str());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn spans_can_go_over_otlp_http_instead() {
    let (upstream, collector) = (MockUpstream::start("users").await, MockCollector::start().await);
    let yaml = config(upstream.addr(), &collector.endpoint(), 1.0)
        .replace("  sampling_ratio:", "  otlp_protocol: http_protobuf\n  sampling_ratio:");
    let gateway = TestGateway::start(&yaml).await;
    for path in ["/users/1", "/users/2"] {
        assert_eq!(http1_request(gateway.addr(), get(path, None)).await.unwrap().status, 200);
    }
    let spans = collector.wait_for_spans(2).await;
    let paths: Vec<_> = spans.iter().map(|span| text(span, "url.path")).collect();
    assert_eq!(paths, ["/users/1", "/users/2"]);
    let shared = gateway.gateway().clone();
    gateway.stop().await;
    assert!(shared.metrics().encode().contains("weir_trace_spans_exported_total 2"));
}

#[tokio::test]
async fn every_try_of_a_retried_request_names_the_same_span_which_counts_the_tries() {
    let (upstream, collector) = (MockUpstream::start("users").await, MockCollector::start().await);
    upstream.set_status("", 503);
    let retry = "upstream: live, retry: { attempts: 2, on: [503], backoff: { base: 1ms, max: 1ms } }";
    let yaml = config(upstream.addr(), &collector.endpoint(), 1.0).replacen("upstream: live", retry, 1);
    let gateway = TestGateway::start(&yaml).await;
    assert_eq!(http1_request(gateway.addr(), get("/users/1", None)).await.unwrap().status, 503);

    let received = upstream.wait_for(2).await;
    let (first, second) = (forwarded_traceparent(&received[0]), forwarded_traceparent(&received[1]));
    assert_eq!(first, second);
    let span = collector.wait_for_spans(1).await.remove(0);
    assert_eq!(hex(&span.span_id), first.1);
    assert_eq!(int(&span, "weir.attempts"), 2);
    assert_eq!((span.status_code, text(&span, "error.type")), (2, "503"), "the upstream's 5xx is an error too");
    assert!(span.attribute("weir.refusal_reason").is_none());
}
