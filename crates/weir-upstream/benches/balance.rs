//! The balancing work every proxied request does: pick an endpoint from the rotation, then finish
//! the attempt (latency estimate and outlier counters). Round robin against least request, which
//! reads two endpoints' latency estimates and in-flight counts per pick.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::StatusCode;
use http_body_util::Empty;
use weir_upstream::{BalancePolicy, Cluster, ClusterSettings, EndpointSpec, Outcome, OutlierSettings, PoolSettings};

fn cluster(balance: BalancePolicy, endpoints: u8) -> Cluster<Empty<Bytes>> {
    let specs: Vec<_> =
        (1..=endpoints).map(|i| EndpointSpec { addr: SocketAddr::from(([10, 0, 0, i], 80)), weight: 1 }).collect();
    let settings = ClusterSettings {
        pool: PoolSettings {
            connect_timeout: Duration::from_secs(1),
            max_idle: 1,
            idle_timeout: Duration::from_secs(1),
            max_connections: 1,
            acquire_timeout: Duration::from_secs(1),
            tcp_keepalive: None,
            tls: None,
            protocol: Default::default(),
            http2: Default::default(),
        },
        balance,
        hash_key: None,
        outlier: OutlierSettings { consecutive_5xx: 5, consecutive_gateway_errors: 5, ..OutlierSettings::OFF },
        health_check: None,
        discovery: None,
        breaker: None,
        concurrency: None,
    };
    Cluster::new("bench", &specs, settings)
}

fn pick_and_finish(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let _entered = runtime.enter();
    let mut group = c.benchmark_group("pick_and_finish");
    for (name, balance) in [
        ("round_robin", BalancePolicy::RoundRobin),
        ("least_request", BalancePolicy::LeastRequest),
        ("consistent_hash", BalancePolicy::ConsistentHash),
    ] {
        let cluster = cluster(balance, 8);
        let mut key = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let attempt = cluster.pick(black_box(Some(key))).expect("endpoints");
                attempt.finish(Outcome::Response(StatusCode::OK));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pick_and_finish);
criterion_main!(benches);
