//! Global rate limits through a real redis-server: several gateways share one budget, the script
//! survives a flushed script cache, and a Redis crash leaves traffic flowing under local limits
//! until Redis is back, when global limiting resumes by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use tokio::sync::Mutex;
use weir_test::{MockUpstream, RedisCluster, RedisServer, TEST_TIMEOUT, TestGateway, http1_request};

fn config(mock: &MockUpstream, redis: &RedisServer, rule: &str) -> String {
    config_with(mock, &format!("{{ address: \"{}\", timeout: 200ms }}", redis.addr()), rule)
}

fn config_with(mock: &MockUpstream, redis: &str, rule: &str) -> String {
    format!(
        "admin: {{ address: \"127.0.0.1:0\" }}\nlisteners:\n  - {{ name: public, address: \"127.0.0.1:0\" }}\nupstreams:\n  app:\n    endpoints: [\"{}\"]\nrate_limit:\n  redis: {redis}\nroutes:\n  - name: api\n    upstream: app\n    rate_limit: [{rule}]\n",
        mock.addr(),
    )
}

async fn status(gateway: &TestGateway) -> u16 {
    status_as(gateway, "").await
}

async fn status_as(gateway: &TestGateway, tenant: &str) -> u16 {
    let request = Request::get("/").header("x-tenant", tenant).body(Empty::<Bytes>::new()).unwrap();
    http1_request(gateway.addr(), request).await.map(|r| r.status.as_u16()).unwrap_or(0)
}

async fn metrics(gateway: &TestGateway) -> String {
    let request = Request::get("/metrics").body(Empty::<Bytes>::new()).unwrap();
    http1_request(gateway.admin(), request).await.unwrap().text()
}

/// Statuses seen by load clients, with when each arrived.
type Seen = Arc<Mutex<Vec<(Instant, u16)>>>;

/// Drives each gateway with `clients` sequential clients until `stop` is set; client `i` sends
/// `x-tenant: t<i>`.
fn drive(
    gateways: &[Arc<TestGateway>],
    clients: usize,
    stop: &Arc<AtomicBool>,
    seen: &Seen,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for gateway in gateways {
        for client in 0..clients {
            let (gateway, stop, seen) = (gateway.clone(), stop.clone(), seen.clone());
            tasks.push(tokio::spawn(async move {
                let tenant = format!("t{client}");
                while !stop.load(Ordering::Relaxed) {
                    let status = status_as(&gateway, &tenant).await;
                    seen.lock().await.push((Instant::now(), status));
                }
            }));
        }
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_share_one_global_budget_within_five_percent() {
    let redis = RedisServer::start().await;
    let mock = MockUpstream::start("app").await;
    let (rate, burst) = (100.0, 10.0);
    let text = config(&mock, &redis, "{ name: shared, key: route, rate: 100/s, burst: 10, mode: global }");
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(Arc::new(TestGateway::start(&text).await));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Seen = Arc::default();
    let started = Instant::now();
    let tasks = drive(&gateways, 4, &stop, &seen);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let seen = seen.lock().await;
    let expected = burst + rate * elapsed;
    let passed = mock.count() as f64;
    eprintln!("{} requests, {passed} passed, {expected:.1} expected over {elapsed:.3}s", seen.len());
    assert!(seen.len() as f64 > 2.0 * expected, "the load ({} requests) was not above the limit", seen.len());
    assert!((passed - expected).abs() <= 0.05 * expected, "{passed} passed, {expected:.0} expected over {elapsed:.2}s");
    assert!(seen.iter().all(|(_, s)| *s == 200 || *s == 429), "only 200 and 429 expected");
    for gateway in &gateways {
        assert!(metrics(gateway).await.contains("weir_ratelimit_redis_errors_total{scope=\"api\",rule=\"shared\"} 0"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_share_budgets_through_a_redis_cluster_within_five_percent() {
    let cluster = RedisCluster::start().await;
    let mock = MockUpstream::start("app").await;
    let tenants = 6;
    let (rate, burst) = (30.0, 5.0);
    let redis = format!("{{ address: \"{}\", cluster: true, timeout: 200ms }}", cluster.nodes[0].addr());
    let text = config_with(&mock, &redis, "{ name: tenant, key: header:x-tenant, rate: 30/s, burst: 5, mode: global }");
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(Arc::new(TestGateway::start(&text).await));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Seen = Arc::default();
    let started = Instant::now();
    let tasks = drive(&gateways, tenants, &stop, &seen);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let expected = tenants as f64 * (burst + rate * elapsed);
    let passed = mock.count() as f64;
    let keys: Vec<String> = cluster.nodes.iter().map(|n| n.cli(&["dbsize"]).trim().to_string()).collect();
    eprintln!(
        "{} requests, {passed} passed, {expected:.1} expected over {elapsed:.3}s; keys per node {keys:?}",
        seen.lock().await.len()
    );
    assert!((passed - expected).abs() <= 0.05 * expected, "{passed} passed, {expected:.0} expected");
    assert!(keys.iter().filter(|k| *k != "0").count() >= 2, "keys did not spread over the nodes: {keys:?}");
    for gateway in &gateways {
        assert!(metrics(gateway).await.contains("weir_ratelimit_redis_errors_total{scope=\"api\",rule=\"tenant\"} 0"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resharded_cluster_is_followed_through_moved_answers() {
    let cluster = RedisCluster::start().await;
    let mock = MockUpstream::start("app").await;
    let redis = format!("{{ address: \"{}\", cluster: true, timeout: 500ms }}", cluster.nodes[0].addr());
    let rule = "{ name: tenant, key: header:x-tenant, rate: 1/min, burst: 2, mode: global, on_redis_error: refuse }";
    let gateway = TestGateway::start(&config_with(&mock, &redis, rule)).await;
    let tenants: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    for tenant in &tenants {
        assert_eq!(status_as(&gateway, tenant).await, 200);
    }
    assert_ne!(cluster.nodes[0].cli(&["dbsize"]).trim(), "0", "no key on the node to be emptied");
    cluster.move_all_slots(0, 1);
    assert_eq!(cluster.nodes[0].cli(&["dbsize"]).trim(), "0");
    // Every tenant has one request left, then none: the buckets moved with their slots, and the
    // gateway follows MOVED to their new node (a failure would refuse: the rule fails closed).
    for tenant in &tenants {
        assert_eq!(status_as(&gateway, tenant).await, 200, "{tenant}");
        assert_eq!(status_as(&gateway, tenant).await, 429, "{tenant}");
    }
    assert!(metrics(&gateway).await.contains("weir_ratelimit_redis_errors_total{scope=\"api\",rule=\"tenant\"} 0"));
}

#[tokio::test]
async fn buckets_live_in_redis_and_survive_a_flushed_script_cache() {
    let redis = RedisServer::start().await;
    let mock = MockUpstream::start("app").await;
    let text = config(&mock, &redis, "{ name: shared, key: client_ip, rate: 1/min, burst: 3, mode: global }");
    let (first, second) = (TestGateway::start(&text).await, TestGateway::start(&text).await);
    assert_eq!([status(&first).await, status(&second).await, status(&first).await], [200, 200, 200]);
    assert_eq!(status(&second).await, 429);
    assert_eq!(redis.command("SCRIPT FLUSH").await, "+OK");
    assert_eq!(status(&first).await, 429);
    assert_eq!(redis.command("DBSIZE").await, ":1");
    assert!(metrics(&first).await.contains("weir_ratelimit_redis_errors_total{scope=\"api\",rule=\"shared\"} 0"));
}

/// Concurrent requests for one key are decided together on Redis (one call for those sent at
/// once) and exactly as one after another: the burst, and not one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_for_one_key_admit_exactly_the_burst() {
    let redis = RedisServer::start().await;
    let mock = MockUpstream::start("app").await;
    let text = config(&mock, &redis, "{ name: shared, key: route, rate: 1/h, burst: 10, mode: global }");
    let gateway = Arc::new(TestGateway::start(&text).await);
    for round in 0..2 {
        let requests: Vec<_> = (0..40)
            .map(|_| {
                let gateway = gateway.clone();
                tokio::spawn(async move { status(&gateway).await })
            })
            .collect();
        let mut statuses = Vec::new();
        for request in requests {
            statuses.push(request.await.unwrap());
        }
        let allowed = statuses.iter().filter(|&&status| status == 200).count();
        assert!(statuses.iter().all(|&status| status == 200 || status == 429), "{statuses:?}");
        assert_eq!(allowed, if round == 0 { 10 } else { 0 }, "round {round}: {statuses:?}");
    }
    let text = metrics(&gateway).await;
    assert!(text.contains("weir_ratelimit_redis_errors_total{scope=\"api\",rule=\"shared\"} 0"), "{text}");
}

/// Round trips a gateway made to Redis for the rule `shared` on the route `api`.
async fn round_trips(gateway: &TestGateway) -> u64 {
    let text = metrics(gateway).await;
    let prefix = "weir_ratelimit_redis_duration_seconds_count{scope=\"api\",rule=\"shared\"} ";
    let line = text.lines().find_map(|line| line.strip_prefix(prefix)).expect("the rule's round trips are counted");
    line.trim().parse().expect("a count")
}

#[tokio::test]
async fn leases_take_several_requests_per_round_trip_and_never_admit_more_than_the_budget() {
    let redis = RedisServer::start().await;
    let mock = MockUpstream::start("app").await;
    // One request per three minutes refills the bucket: nothing comes back during the test.
    let text = config(&mock, &redis, "{ name: shared, key: route, rate: 20/h, burst: 20, mode: global, lease: 5 }");
    let gateways = [TestGateway::start(&text).await, TestGateway::start(&text).await];
    let mut allowed = 0;
    for i in 0..30 {
        match status(&gateways[i % 2]).await {
            200 => allowed += 1,
            429 => {}
            other => panic!("request {i} answered {other}"),
        }
    }
    assert_eq!(allowed, 20, "the two gateways together admit the burst exactly");
    let trips = round_trips(&gateways[0]).await + round_trips(&gateways[1]).await;
    // Each gateway: a lease of five, a refill of five when one is left, and a refill Redis refuses;
    // its refusal (wait three minutes) then answers the gateway's last five requests from memory.
    assert_eq!(trips, 2 * 3, "instead of one round trip per request (30)");
    let rules = http1_request(gateways[0].admin(), Request::get("/ratelimits").body(Empty::<Bytes>::new()).unwrap());
    let rules = rules.await.unwrap().text();
    assert!(rules.contains("\"lease\": 5"), "{rules}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_crash_falls_back_to_local_limits_and_recovery_is_automatic() {
    let mut redis = RedisServer::start().await;
    let mock = MockUpstream::start("app").await;
    let text = config(&mock, &redis, "{ name: shared, key: route, rate: 50/s, burst: 5, mode: global }");
    let gateway = Arc::new(TestGateway::start(&text).await);
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Seen = Arc::default();
    let tasks = drive(std::slice::from_ref(&gateway), 4, &stop, &seen);
    // Wait until Redis holds the bucket: global decisions are being made.
    wait_for(|| async { redis.command("DBSIZE").await == ":1" }).await;
    redis.kill();
    let killed = Instant::now();
    wait_for(|| async {
        seen.lock().await.iter().any(|(at, s)| *at > killed + Duration::from_millis(100) && *s == 200)
    })
    .await;
    let flowing_after = killed.elapsed();
    let local_window = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let local_passed = seen.lock().await.iter().filter(|(at, s)| *at > local_window && *s == 200).count();
    redis.restart().await;
    wait_for(|| async { redis.command("DBSIZE").await == ":1" }).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    eprintln!("flowing {flowing_after:?} after the crash; {local_passed} passed in a second of local limiting");
    assert!(flowing_after < Duration::from_secs(1), "requests flowed again only after {flowing_after:?}");
    // One second under the local limiter: its rate plus at most its burst.
    assert!((30..=60).contains(&local_passed), "{local_passed} passed in a second of local limiting");
    let seen = seen.lock().await;
    assert!(
        seen.iter().all(|(_, s)| *s == 200 || *s == 429),
        "a request failed: {:?}",
        seen.iter().find(|(_, s)| *s != 200 && *s != 429)
    );
    assert!(!metrics(&gateway).await.contains("weir_ratelimit_redis_errors_total{scope=\"api\",rule=\"shared\"} 0"));
}

#[tokio::test]
async fn a_fail_closed_rule_refuses_while_redis_is_unreachable() {
    let mock = MockUpstream::start("app").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let redis = format!("{{ address: \"{closed}\", timeout: 100ms }}");
    // The first rule falls back to its local limiter and passes; the second fails closed.
    let rules = "{ name: lenient, key: route, rate: 100/s, mode: global }, \
                 { name: strict, key: client_ip, rate: 100/s, mode: global, on_redis_error: refuse }";
    let text = config_with(&mock, &redis, rules);
    let gateway = TestGateway::start(&text).await;
    let request = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
    let refused = http1_request(gateway.addr(), request).await.unwrap();
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.text(), "429 rate_limited by rule strict\n");
    assert_eq!(mock.count(), 0);
    assert!(metrics(&gateway).await.contains("weir_ratelimit_redis_errors_total{scope=\"api\",rule=\"strict\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_is_given_up_and_picked_up_again_when_it_answers() {
    let redis = RedisServer::start().await;
    let mock = MockUpstream::start("app").await;
    let text = config(&mock, &redis, "{ name: shared, key: route, rate: 50/s, burst: 5, mode: global }");
    let gateway = Arc::new(TestGateway::start(&text).await);
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Seen = Arc::default();
    let tasks = drive(std::slice::from_ref(&gateway), 4, &stop, &seen);
    wait_for(|| async { redis.command("DBSIZE").await == ":1" }).await;
    redis.pause();
    let paused = Instant::now();
    // Decisions wait out the 200 ms timeout, then pass on the local limiter; after the connection's
    // stall time it is given up and decisions fall back at once.
    let flowing = |after: Instant| {
        let seen = seen.clone();
        async move { seen.lock().await.iter().any(|(at, s)| *at > after && *s == 200) }
    };
    wait_for(|| flowing(paused + Duration::from_millis(300))).await;
    wait_for(|| flowing(paused + Duration::from_secs(3))).await;
    // Four clients waiting 200 ms per decision would get about ten answers in half a second; with the
    // stalled connection given up, decisions are immediate again.
    let window = (paused + Duration::from_millis(2500))..(paused + Duration::from_secs(3));
    let answered = seen.lock().await.iter().filter(|(at, _)| window.contains(at)).count();
    assert!(answered > 40, "{answered} answers in half a second after the stall");
    let round_trips = |text: &str| {
        let line = text.lines().find(|l| l.starts_with("weir_ratelimit_redis_duration_seconds_count{"));
        line.and_then(|l| l.rsplit(' ').next()).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0)
    };
    let before = round_trips(&metrics(&gateway).await);
    redis.resume();
    wait_for(|| async { round_trips(&metrics(&gateway).await) > before }).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let seen = seen.lock().await;
    let failed = seen.iter().find(|(_, s)| *s != 200 && *s != 429);
    assert!(failed.is_none(), "a request failed: {failed:?}");
}

/// Polls `condition` until it holds, failing the test after [`TEST_TIMEOUT`].
async fn wait_for<F, Fut>(condition: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + TEST_TIMEOUT;
    while !condition().await {
        assert!(Instant::now() < deadline, "condition not reached in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
