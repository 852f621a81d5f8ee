//! The fault stage's cost per request: a route with no fault (every route pays this), a route
//! with a 1% abort and a header condition, and a route while an experiment aims at another route.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http::request::Parts;
use weir_config::fault::FaultInjection;
use weir_config::{Format, parse_str};
use weir_proxy::stages::fault::{Deciding, Dice, Experiments, RouteFaults};
use weir_telemetry::Metrics;

fn route(fields: &str, metrics: &std::sync::Arc<Metrics>) -> RouteFaults {
    let text = format!(
        "listeners: [{{ name: l, address: \"127.0.0.1:0\" }}]\nroutes:\n  - name: r\n    direct_response: {{ status: 200 }}\n{fields}"
    );
    let config = parse_str(&text, Format::Yaml, "bench.yaml").expect("bench config");
    RouteFaults::build(&config.routes[0], "r", metrics)
}

fn client(_: &Parts) -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

fn decide(c: &mut Criterion) {
    let metrics = Metrics::new();
    let dice = Dice::new(Some(1));
    let experiments = Experiments::new(&FaultInjection::default(), metrics.clone());
    let none = route("", &metrics);
    let one = route(
        "    faults: [{ abort: { status: 503 }, percent: 1, when: { headers: [{ name: x-canary, exact: \"1\" }] } }]\n",
        &metrics,
    );
    let (mut parts, ()) = Request::get("/users/42").header("x-canary", "1").body(()).unwrap().into_parts();
    let at = Deciding { dice: &dice, experiments: &experiments, route: "r", client: &client, grpc: false };
    c.bench_function("fault_decide/no_fault", |b| b.iter(|| black_box(none.decide(&mut parts, &at))));
    c.bench_function("fault_decide/one_percent_abort", |b| b.iter(|| black_box(one.decide(&mut parts, &at))));
    let elsewhere = br#"{"route": "other", "ttl": "1h", "delay": "1ms"}"#;
    experiments.start(elsewhere, |_| true).expect("an experiment");
    c.bench_function("fault_decide/experiment_elsewhere", |b| b.iter(|| black_box(none.decide(&mut parts, &at))));
}

criterion_group!(benches, decide);
criterion_main!(benches);
