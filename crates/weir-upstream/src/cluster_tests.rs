//! The cluster's rotation under ejections, health verdicts, membership changes and latency, with
//! paused time and a seeded random source.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Empty;

use super::*;

type TestCluster = Cluster<Empty<Bytes>>;

fn spec(i: u8) -> EndpointSpec {
    EndpointSpec { addr: SocketAddr::from(([10, 0, 0, i], 80)), weight: 1 }
}

fn settings(balance: BalancePolicy, outlier: OutlierSettings) -> ClusterSettings {
    ClusterSettings {
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
        outlier,
        health_check: None,
        discovery: None,
        breaker: None,
        concurrency: None,
    }
}

const EJECT_ON_3: OutlierSettings = OutlierSettings {
    consecutive_gateway_errors: 3,
    max_ejection_percent: 50,
    base_ejection_time: Duration::from_secs(30),
    max_ejection_time: Duration::from_secs(300),
    ..OutlierSettings::OFF
};

fn cluster(n: u8, balance: BalancePolicy, outlier: OutlierSettings) -> TestCluster {
    let specs: Vec<_> = (1..=n).map(spec).collect();
    Cluster::with_rng("test", &specs, settings(balance, outlier), BalanceRng::seeded(11))
}

fn picked(cluster: &TestCluster, picks: usize) -> Vec<u8> {
    (0..picks)
        .map(|_| {
            let attempt = cluster.pick(None).expect("an endpoint");
            let SocketAddr::V4(addr) = attempt.endpoint().addr else { unreachable!() };
            attempt.finish(Outcome::Response(StatusCode::OK));
            addr.ip().octets()[3]
        })
        .collect()
}

fn fail_on(cluster: &TestCluster, target: u8, times: usize) {
    let mut failed = 0;
    while failed < times {
        let attempt = cluster.pick(None).unwrap();
        if attempt.endpoint().addr == spec(target).addr {
            attempt.finish(Outcome::ConnectFailure);
            failed += 1;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_ejected_endpoint_leaves_the_rotation_and_returns_after_its_time() {
    let cluster = cluster(3, BalancePolicy::RoundRobin, EJECT_ON_3);
    fail_on(&cluster, 2, 3);
    assert!(!picked(&cluster, 30).contains(&2));
    let status = cluster.status();
    assert_eq!(status.endpoints[1].ejections_total, 1);
    assert_eq!(status.endpoints[1].ejected_for, Some(Duration::from_secs(30)));
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(picked(&cluster, 30).contains(&2));
}

#[tokio::test(start_paused = true)]
async fn repeated_ejections_last_longer() {
    let cluster = cluster(3, BalancePolicy::RoundRobin, EJECT_ON_3);
    fail_on(&cluster, 1, 3);
    tokio::time::advance(Duration::from_secs(30)).await;
    picked(&cluster, 3);
    fail_on(&cluster, 1, 3);
    assert_eq!(cluster.status().endpoints[0].ejected_for, Some(Duration::from_secs(60)));
}

#[tokio::test(start_paused = true)]
async fn no_more_than_the_max_ejection_percent_is_ejected() {
    let cluster = cluster(4, BalancePolicy::RoundRobin, EJECT_ON_3);
    for target in 1..=4 {
        fail_on(&cluster, target, 3);
    }
    let ejected = cluster.status().endpoints.iter().filter(|e| e.ejected_for.is_some()).count();
    assert_eq!(ejected, 2);
}

#[tokio::test(start_paused = true)]
async fn with_every_endpoint_unhealthy_traffic_spreads_over_all_of_them() {
    let cluster = cluster(3, BalancePolicy::RoundRobin, OutlierSettings::OFF);
    for endpoint in cluster.members() {
        endpoint.set_healthy(false);
    }
    cluster.refresh();
    assert!(cluster.status().panic);
    let mut seen = picked(&cluster, 30);
    seen.sort();
    seen.dedup();
    assert_eq!(seen, vec![1, 2, 3]);
    cluster.members()[0].set_healthy(true);
    cluster.refresh();
    assert!(!cluster.status().panic);
    assert!(picked(&cluster, 10).iter().all(|e| *e == 1));
}

#[tokio::test(start_paused = true)]
async fn least_request_steers_away_from_a_slow_endpoint() {
    let cluster = cluster(3, BalancePolicy::LeastRequest, OutlierSettings::OFF);
    let mut counts = [0usize; 3];
    for _ in 0..3000 {
        let attempt = cluster.pick(None).unwrap();
        let index = cluster.members().iter().position(|e| Arc::ptr_eq(e, attempt.endpoint())).unwrap();
        counts[index] += 1;
        // Endpoint 3 answers in 100 ms, the others in 1 ms.
        let latency = if index == 2 { 100 } else { 1 };
        tokio::time::advance(Duration::from_millis(latency)).await;
        attempt.finish(Outcome::Response(StatusCode::OK));
    }
    assert!(counts[2] < 3000 / 20, "{counts:?}");
}

#[tokio::test(start_paused = true)]
async fn least_request_steers_away_from_a_fast_failing_endpoint() {
    let cluster = cluster(3, BalancePolicy::LeastRequest, OutlierSettings::OFF);
    let mut counts = [0usize; 3];
    for _ in 0..3000 {
        let attempt = cluster.pick(None).unwrap();
        let index = cluster.members().iter().position(|e| Arc::ptr_eq(e, attempt.endpoint())).unwrap();
        counts[index] += 1;
        // Endpoint 1 fails at once; the others succeed in 5 ms.
        let (latency, status) = if index == 0 { (0, 503) } else { (5, 200) };
        tokio::time::advance(Duration::from_millis(latency)).await;
        attempt.finish(Outcome::Response(StatusCode::from_u16(status).unwrap()));
    }
    assert!(counts[0] < 3000 / 20, "{counts:?}");
}

#[tokio::test(start_paused = true)]
async fn in_flight_requests_are_counted_until_their_attempt_ends() {
    let cluster = cluster(1, BalancePolicy::LeastRequest, OutlierSettings::OFF);
    let first = cluster.pick(None).unwrap();
    let second = cluster.pick(None).unwrap();
    assert_eq!(cluster.status().endpoints[0].in_flight, 2);
    first.finish(Outcome::Local);
    drop(second);
    assert_eq!(cluster.status().endpoints[0].in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn membership_changes_keep_the_state_of_endpoints_that_stay() {
    let cluster = cluster(3, BalancePolicy::RoundRobin, EJECT_ON_3);
    fail_on(&cluster, 2, 3);
    cluster.set_members(&[spec(2), spec(3), spec(4)]);
    let status = cluster.status();
    let addrs: Vec<_> = status.endpoints.iter().map(|e| e.addr).collect();
    assert_eq!(addrs, vec![spec(2).addr, spec(3).addr, spec(4).addr]);
    assert!(status.endpoints[0].ejected_for.is_some(), "endpoint 2 is still ejected");
    let mut seen = picked(&cluster, 20);
    seen.sort();
    seen.dedup();
    assert_eq!(seen, vec![3, 4]);
}

#[tokio::test(start_paused = true)]
async fn a_cluster_without_endpoints_picks_none() {
    let cluster = cluster(2, BalancePolicy::RoundRobin, OutlierSettings::OFF);
    cluster.set_members(&[]);
    assert!(matches!(cluster.pick(None), Err(Unavailable::NoEndpoint)));
}

#[tokio::test(start_paused = true)]
async fn consistent_hashing_keeps_a_key_on_one_endpoint() {
    let cluster = cluster(5, BalancePolicy::ConsistentHash, OutlierSettings::OFF);
    for key in 0..50u64 {
        let first = cluster.pick(Some(key)).unwrap().endpoint().addr;
        assert!((0..5).all(|_| cluster.pick(Some(key)).unwrap().endpoint().addr == first));
    }
}

#[tokio::test(start_paused = true)]
async fn endpoints_to_avoid_are_passed_over_while_others_remain() {
    for balance in [BalancePolicy::RoundRobin, BalancePolicy::LeastRequest, BalancePolicy::ConsistentHash] {
        let cluster = cluster(3, balance, OutlierSettings::OFF);
        let avoid = [spec(1).addr, spec(2).addr];
        for key in 0..30 {
            assert_eq!(cluster.pick_avoiding(Some(key), &avoid).unwrap().endpoint().addr, spec(3).addr);
        }
        let all = [spec(1).addr, spec(2).addr, spec(3).addr];
        assert!(cluster.pick_avoiding(None, &all).is_ok(), "with nothing else left, an avoided one is used");
    }
}
