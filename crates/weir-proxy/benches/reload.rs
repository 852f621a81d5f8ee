//! Reload latency: from configuration text to the new snapshot serving (parse, validate, reuse the
//! unchanged clusters, compile routes, swap), for 10 and 10,000 routes. The two configurations
//! alternate so every iteration changes something, as a real reload does.

use criterion::{Criterion, criterion_group, criterion_main};
use weir_config::{Format, parse_str};
use weir_proxy::Server;

/// `routes` named routes over five upstreams; `variant` changes every route's timeout and adds one.
fn config_text(routes: usize, variant: bool) -> String {
    let mut text = String::from("listeners:\n  - { name: public, address: \"127.0.0.1:0\" }\nupstreams:\n");
    for u in 0..5 {
        text.push_str(&format!("  u{u}: {{ endpoints: [\"127.0.0.1:{}\"] }}\n", 9000 + u));
    }
    text.push_str("routes:\n");
    let timeout = if variant { "20s" } else { "15s" };
    for i in 0..routes {
        text.push_str(&format!(
            "  - {{ name: r{i}, match: {{ path_prefix: /svc{i} }}, upstream: u{}, timeout: {timeout} }}\n",
            i % 5
        ));
    }
    if variant {
        text.push_str("  - { name: extra, match: { path: /extra }, direct_response: { status: 204 } }\n");
    }
    text
}

fn reload(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _entered = runtime.enter();
    for routes in [10, 10_000] {
        let texts = [config_text(routes, false), config_text(routes, true)];
        let first = parse_str(&texts[0], Format::Yaml, "bench.yaml").expect("bench config");
        let gateway = Server::bind(&first).expect("bench gateway").gateway();
        c.bench_function(&format!("reload/{routes}_routes/parse_only"), |b| {
            b.iter(|| parse_str(&texts[1], Format::Yaml, "bench.yaml").expect("bench config"))
        });
        let mut round = 0usize;
        c.bench_function(&format!("reload/{routes}_routes"), |b| {
            b.iter(|| {
                round += 1;
                let config = parse_str(&texts[round % 2], Format::Yaml, "bench.yaml").expect("bench config");
                gateway.apply(config).expect("reload")
            })
        });
    }
}

criterion_group!(benches, reload);
criterion_main!(benches);
