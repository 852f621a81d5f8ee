//! The fault stage's decisions: shares within statistical tolerance under a seeded source, delays
//! within their range, header faults honoured only when enabled and authorized, and experiments
//! that end by themselves.

use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http::request::Parts;
use weir_config::fault::FaultInjection;
use weir_config::parse_str;
use weir_telemetry::Metrics;

use super::*;

fn parts(request: Request<()>) -> Parts {
    request.into_parts().0
}

fn loopback(_: &Parts) -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

/// Route `r` with the given YAML for its fault fields.
fn route_faults(fields: &str, metrics: &Arc<Metrics>) -> RouteFaults {
    let text = format!(
        "listeners: [{{ name: l, address: \"127.0.0.1:0\" }}]\nroutes:\n  - name: r\n    direct_response: {{ status: 200 }}\n{fields}"
    );
    let config = parse_str(&text, weir_config::Format::Yaml, "test.yaml").expect("valid config");
    RouteFaults::build(&config.routes[0], "r", metrics)
}

fn decide(
    faults: &RouteFaults,
    dice: &Dice,
    experiments: &Experiments,
    request: Request<()>,
) -> Result<Injected, &'static str> {
    let mut parts = parts(request);
    let at = Deciding { dice, experiments, route: "r", client: &loopback, grpc: false };
    faults.decide(&mut parts, &at)
}

#[test]
fn shares_hold_within_tolerance_over_ten_thousand_requests() {
    let metrics = Metrics::new();
    let experiments = Experiments::new(&FaultInjection::default(), metrics.clone());
    let faults = route_faults(
        "    faults:\n      - { abort: { status: 503 }, percent: 30 }\n      - { delay: 1ms, percent: 0.5 }\n",
        &metrics,
    );
    let dice = Dice::new(Some(42));
    let (mut aborted, mut delayed) = (0u32, 0u32);
    for _ in 0..10_000 {
        let injected = decide(&faults, &dice, &experiments, Request::new(())).unwrap();
        aborted += u32::from(injected.abort.is_some());
        delayed += u32::from(injected.delay.is_some());
    }
    // Binomial: 30% of 10,000 has a standard deviation of about 46; 0.5% one of about 7. Four
    // deviations either way.
    assert!((2_816..=3_184).contains(&aborted), "aborted {aborted}");
    assert!((22..=78).contains(&delayed), "delayed {delayed}");
    let text = metrics.encode();
    let series = format!(
        "weir_faults_injected_total{{target_type=\"route\",target=\"r\",kind=\"abort\",source=\"config\"}} {aborted}"
    );
    assert!(text.contains(&series), "{text}");
}

#[test]
fn the_same_seed_makes_the_same_decisions() {
    let metrics = Metrics::new();
    let experiments = Experiments::new(&FaultInjection::default(), metrics.clone());
    let faults = route_faults("    faults:\n      - { abort: { status: 503 }, percent: 50 }\n", &metrics);
    let run = |seed| {
        let dice = Dice::new(Some(seed));
        (0..200)
            .map(|_| decide(&faults, &dice, &experiments, Request::new(())).unwrap().abort.is_some())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn delays_land_within_their_range() {
    let dice = Dice::new(Some(1));
    let range = Delay::Uniform { min: Duration::from_millis(100), max: Duration::from_millis(300) };
    let drawn: Vec<Duration> = (0..10_000).map(|_| dice.duration(range)).collect();
    assert!(drawn.iter().all(|d| (Duration::from_millis(100)..=Duration::from_millis(300)).contains(d)));
    let below_middle = drawn.iter().filter(|d| **d < Duration::from_millis(200)).count();
    assert!((4_800..=5_200).contains(&below_middle), "{below_middle}");
    assert_eq!(dice.duration(Delay::Fixed(Duration::from_millis(5))), Duration::from_millis(5));
}

#[test]
fn conditions_choose_the_requests_that_get_a_fault() {
    let metrics = Metrics::new();
    let experiments = Experiments::new(&FaultInjection::default(), metrics.clone());
    let faults = route_faults(
        "    faults:\n      - abort: { status: 500 }\n        when: { method: POST, path_prefix: /pay, headers: [{ name: x-canary, exact: \"1\" }] }\n",
        &metrics,
    );
    let dice = Dice::new(Some(3));
    let request = |method: &str, path: &str, canary: bool| {
        let builder = Request::builder().method(method).uri(path);
        let builder = if canary { builder.header("x-canary", "1") } else { builder };
        builder.body(()).unwrap()
    };
    let aborted = |r| decide(&faults, &dice, &experiments, r).unwrap().abort.is_some();
    assert!(aborted(request("POST", "/pay/now", true)));
    assert!(!aborted(request("GET", "/pay/now", true)));
    assert!(!aborted(request("POST", "/other", true)));
    assert!(!aborted(request("POST", "/pay/now", false)));
}

#[test]
fn header_faults_need_the_route_to_enable_them_and_the_secret() {
    let metrics = Metrics::new();
    let experiments = Experiments::new(&FaultInjection::default(), metrics.clone());
    let dice = Dice::new(Some(5));
    let asking = || {
        Request::builder()
            .header("x-weir-fault-abort", "418")
            .header("x-weir-fault-delay", "20ms")
            .header("x-weir-fault-secret", "correct-horse-battery")
            .body(())
            .unwrap()
    };
    let off = route_faults("", &metrics);
    assert!(decide(&off, &dice, &experiments, asking()).unwrap().is_empty());
    let on = route_faults("    header_faults: { secret: correct-horse-battery, max_delay: 1s }\n", &metrics);
    let injected = decide(&on, &dice, &experiments, asking()).unwrap();
    assert_eq!(injected.delay, Some(Duration::from_millis(20)));
    assert_eq!(injected.abort, Some(Abort::Status { http: Some(http::StatusCode::IM_A_TEAPOT), grpc: None }));
    let mut wrong = asking();
    wrong.headers_mut().insert("x-weir-fault-secret", "wrong".parse().unwrap());
    assert!(decide(&on, &dice, &experiments, wrong).unwrap().is_empty());
    let mut too_long = asking();
    too_long.headers_mut().insert("x-weir-fault-delay", "5s".parse().unwrap());
    assert_eq!(decide(&on, &dice, &experiments, too_long), Err(header::BAD_DELAY));
}

#[test]
fn fault_headers_do_not_go_upstream_on_enabled_routes() {
    let metrics = Metrics::new();
    let experiments = Experiments::new(&FaultInjection::default(), metrics.clone());
    let on = route_faults("    header_faults: {}\n", &metrics);
    let mut parts =
        parts(Request::builder().header("x-weir-fault-throttle", "1KiB").header("x-keep", "1").body(()).unwrap());
    let dice = Dice::new(Some(5));
    let at = Deciding { dice: &dice, experiments: &experiments, route: "r", client: &loopback, grpc: false };
    assert_eq!(on.decide(&mut parts, &at).unwrap().throttle, Some(1024));
    assert!(parts.headers.get("x-weir-fault-throttle").is_none());
    assert!(parts.headers.get("x-keep").is_some());
}

#[tokio::test(start_paused = true)]
async fn experiments_end_by_themselves() {
    let metrics = Metrics::new();
    let experiments = Experiments::new(&FaultInjection::default(), metrics.clone());
    let reaper = tokio::spawn(experiments.clone().reap_forever());
    let faults = route_faults("", &metrics);
    let dice = Dice::new(Some(9));
    let posted = br#"{"route": "r", "ttl": "10s", "abort": {"status": 503}}"#;
    let started = experiments.start(posted, |_| true).unwrap();
    assert!(decide(&faults, &dice, &experiments, Request::new(())).unwrap().abort.is_some());
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(decide(&faults, &dice, &experiments, Request::new(())).unwrap().abort.is_some());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(decide(&faults, &dice, &experiments, Request::new(())).unwrap().is_empty());
    // The reaper runs once the clock moves past the expiry; yield until it has.
    while !experiments.list().is_empty() {
        tokio::task::yield_now().await;
    }
    assert!(experiments.running().is_none());
    assert!(metrics.encode().contains("weir_fault_experiments_total{event=\"expired\"} 1"));
    assert!(matches!(experiments.delete(&started.id), Err(ExperimentError::NotFound(_))));
    reaper.abort();
}

#[test]
fn experiments_are_checked_before_they_start() {
    let metrics = Metrics::new();
    let settings = FaultInjection { max_experiments: 1, ..FaultInjection::default() };
    let experiments = Experiments::new(&settings, metrics);
    let invalid = |doc: &str| matches!(experiments.start(doc.as_bytes(), |_| true), Err(ExperimentError::Invalid(_)));
    assert!(matches!(experiments.start(b"{not json", |_| true), Err(ExperimentError::Malformed(_))));
    assert!(matches!(
        experiments.start(br#"{"route": "r", "abort": {"status": 503}}"#, |_| true),
        Err(ExperimentError::Malformed(_))
    ));
    assert!(invalid(r#"{"route": "r", "upstream": "u", "ttl": "1m", "abort": {"status": 503}}"#));
    assert!(invalid(r#"{"route": "r", "ttl": "48h", "abort": {"status": 503}}"#));
    assert!(invalid(r#"{"route": "r", "ttl": "1m", "persist": true, "abort": {"status": 503}}"#));
    assert!(invalid(r#"{"upstream": "u", "ttl": "1m", "throttle": {"bytes_per_second": 10}}"#));
    assert!(matches!(
        experiments.start(br#"{"route": "gone", "ttl": "1m", "abort": {"status": 503}}"#, |_| false),
        Err(ExperimentError::Invalid(message)) if message.contains("gone")
    ));
    experiments.start(br#"{"route": "r", "ttl": "1m", "delay": "1ms"}"#, |_| true).unwrap();
    assert!(matches!(
        experiments.start(br#"{"route": "r", "ttl": "1m", "delay": "1ms"}"#, |_| true),
        Err(ExperimentError::TooMany(1))
    ));
}
