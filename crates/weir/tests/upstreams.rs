//! Upstream clusters over real sockets: endpoints that die, fail or turn unhealthy leave the
//! rotation and come back; consistent hashing keeps keys in place; the pool's cap refuses clearly.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use weir_test::{MockUpstream, TEST_TIMEOUT, TestGateway, http1_request};

fn get(path: &str, headers: &[(&str, &str)]) -> Request<Empty<Bytes>> {
    let mut builder = Request::get(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Empty::new()).unwrap()
}

async fn gateway(mocks: &[&MockUpstream], upstream_extra: &str) -> TestGateway {
    let endpoints: Vec<String> = mocks.iter().map(|m| format!("\"{}\"", m.addr())).collect();
    let text = format!(
        "listeners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n  backend:\n    endpoints: [{}]\n{upstream_extra}routes:\n  - upstream: backend\n    timeout: 5s\n",
        endpoints.join(", ")
    );
    TestGateway::start(&text).await
}

/// Which mock answered, by its `x-upstream` header, and the status.
async fn send(gateway: &TestGateway, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let response = http1_request(gateway.addr(), get(path, headers)).await.unwrap();
    (response.status.as_u16(), response.header("x-upstream").unwrap_or("").to_string())
}

/// Sends requests until `done` says yes, bounded by the test timeout.
async fn send_until(gateway: &TestGateway, mut done: impl FnMut(u16, &str) -> bool) {
    let wait = async {
        loop {
            let (status, upstream) = send(gateway, "/", &[]).await;
            if done(status, &upstream) {
                return;
            }
        }
    };
    tokio::time::timeout(TEST_TIMEOUT, wait).await.expect("the condition was not reached in time");
}

#[tokio::test]
async fn an_upstream_answering_5xx_is_ejected_after_its_run_of_failures() {
    let (a, b) = (MockUpstream::start("a").await, MockUpstream::start("b").await);
    a.set_status("", 500);
    let gateway = gateway(&[&a, &b], "    outlier_detection: { consecutive_5xx: 3, base_ejection_time: 1m }\n").await;
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(send(&gateway, "/", &[]).await);
    }
    // Round robin alternates until a's third 500; from then on b takes everything.
    let errors: Vec<_> = statuses.iter().filter(|(status, _)| *status == 500).collect();
    assert_eq!(errors.len(), 3, "{statuses:?}");
    assert!(statuses[6..].iter().all(|(status, upstream)| *status == 200 && upstream == "b"), "{statuses:?}");
}

#[tokio::test]
async fn a_killed_endpoint_costs_no_request_beyond_those_in_flight_and_returns_when_back() {
    let (a, b) = (MockUpstream::start("a").await, MockUpstream::start("b").await);
    let extra = "    outlier_detection: { consecutive_gateway_errors: 3, base_ejection_time: 200ms }\n";
    let gateway = gateway(&[&a, &b], extra).await;
    for _ in 0..20 {
        assert_eq!(send(&gateway, "/", &[]).await.0, 200);
    }
    let a_addr = a.addr();
    a.stop();
    drop(a);
    // Requests after the kill: connect failures move on to b, so none fails.
    let mut answered = HashMap::<(u16, String), usize>::new();
    for _ in 0..50 {
        *answered.entry(send(&gateway, "/", &[]).await).or_default() += 1;
    }
    assert_eq!(answered.get(&(200, "b".to_string())), Some(&50), "{answered:?}");
    // a comes back on its address; once its ejection ends, it gets traffic again.
    let a = MockUpstream::start_at("a", a_addr).await;
    send_until(&gateway, |status, upstream| {
        assert_eq!(status, 200);
        upstream == "a"
    })
    .await;
    assert!(a.count() >= 1);
}

#[tokio::test]
async fn concurrent_load_survives_an_endpoint_dying() {
    let (a, b) = (MockUpstream::start("a").await, MockUpstream::start("b").await);
    let gateway = gateway(&[&a, &b], "").await;
    let addr = gateway.addr();
    const CLIENTS: usize = 8;
    let (kill_tx, kill_rx) = tokio::sync::watch::channel(false);
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let mut kill_rx = kill_rx.clone();
        clients.spawn(async move {
            let mut after_kill = Vec::new();
            // Keep going until well after the kill.
            loop {
                let killed = *kill_rx.borrow_and_update();
                let answered = http1_request(addr, get("/", &[("x-mock-delay-ms", "5")])).await;
                // The kill may land while a request sent before it is in flight: look again. Status
                // 0: the connection closed without a whole response, which only a request caught
                // by the kill may see.
                let killed = killed || *kill_rx.borrow();
                let seen = match answered {
                    Ok(response) => (response.status.as_u16(), response.header("proxy-status").map(str::to_string)),
                    Err(error) if killed => (0, Some(error.to_string())),
                    Err(error) => panic!("a request failed before any endpoint died: {error}"),
                };
                if killed {
                    after_kill.push(seen);
                    if after_kill.len() == 30 {
                        return after_kill;
                    }
                }
            }
        });
    }
    a.wait_for(20).await;
    a.stop();
    kill_tx.send(true).unwrap();
    let mut failures = Vec::new();
    while let Some(done) = clients.join_next().await {
        failures.extend(done.unwrap().into_iter().filter(|(status, _)| *status != 200));
    }
    // Only requests already sent to a when it died may fail, at most one per client: with a 502
    // naming the reset, or (rarely) with the connection closed, when a's answer was cut short.
    assert!(failures.len() <= CLIENTS, "{failures:?}");
    for (status, proxy_status) in &failures {
        let detail = proxy_status.as_deref().unwrap_or("");
        match status {
            502 => assert!(detail.contains("upstream_reset"), "{failures:?}"),
            0 => {}
            _ => panic!("{failures:?}"),
        }
    }
}

#[tokio::test]
async fn health_checks_take_an_endpoint_out_and_bring_it_back() {
    let (a, b) = (MockUpstream::start("a").await, MockUpstream::start("b").await);
    let extra = "    health_check: { path: /health, interval: 50ms, jitter: 0s, timeout: 1s, healthy_threshold: 2, unhealthy_threshold: 2 }\n";
    let gateway = gateway(&[&a, &b], extra).await;
    a.set_status("/health", 503);
    // Once a's checks have failed twice, a is out: wait for a long run of answers from b alone.
    let mut run = 0;
    send_until(&gateway, |_, upstream| {
        run = if upstream == "b" { run + 1 } else { 0 };
        run == 20
    })
    .await;
    let before = a.count_path("/");
    for _ in 0..20 {
        assert_eq!(send(&gateway, "/", &[]).await.1, "b");
    }
    assert_eq!(a.count_path("/"), before);
    a.set_status("/health", 200);
    send_until(&gateway, |_, upstream| upstream == "a").await;
    assert!(a.count_path("/health") >= 4);
}

#[tokio::test]
async fn consistent_hashing_keeps_each_key_on_one_endpoint() {
    let mocks = [MockUpstream::start("a").await, MockUpstream::start("b").await, MockUpstream::start("c").await];
    let gateway =
        gateway(&[&mocks[0], &mocks[1], &mocks[2]], "    balance: consistent_hash\n    hash_key: { header: x-user }\n")
            .await;
    let mut owners = HashMap::new();
    for round in 0..3 {
        for user in 0..30 {
            let user = format!("user-{user}");
            let (status, upstream) = send(&gateway, "/", &[("x-user", &user)]).await;
            assert_eq!(status, 200);
            let owner = owners.entry(user.clone()).or_insert_with(|| upstream.clone());
            assert_eq!(*owner, upstream, "round {round}: {user} moved");
        }
    }
    let mut used: Vec<_> = owners.values().collect();
    used.sort();
    used.dedup();
    assert_eq!(used.len(), 3, "30 keys spread over all three endpoints");
}

#[tokio::test]
async fn a_full_pool_refuses_with_its_own_reason() {
    let mock = MockUpstream::start("a").await;
    let gateway = gateway(&[&mock], "    pool: { max_connections: 1, acquire_timeout: 100ms }\n").await;
    let addr = gateway.addr();
    let slow = tokio::spawn(async move { http1_request(addr, get("/", &[("x-mock-delay-ms", "2000")])).await });
    mock.wait_for(1).await;
    let started = tokio::time::Instant::now();
    let response = http1_request(addr, get("/", &[])).await.unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(
        response.header("proxy-status"),
        Some("weir; error=connection_limit_reached; details=\"pool_exhausted\"")
    );
    assert!(started.elapsed() < Duration::from_secs(2), "refused before the busy connection came free");
    assert_eq!(slow.await.unwrap().unwrap().status, 200);
    // With the connection free again, requests flow.
    assert_eq!(http1_request(addr, get("/", &[])).await.unwrap().status, 200);
}

// Multi-threaded: the gateway resolves names as it loads, blocking its thread, while the test's
// DNS server answers on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_discovery_follows_changing_answers() {
    let a = MockUpstream::start("a").await;
    let port = a.addr().port();
    let b = MockUpstream::start_at("b", format!("127.0.0.2:{port}").parse().unwrap()).await;
    let dns = weir_test::DnsServer::start().await;
    let (ip_a, ip_b) = (a.addr().ip(), b.addr().ip());
    dns.set("svc.test", &[ip_a]);
    let text = format!(
        "listeners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n  backend:\n    endpoints: [\"svc.test:{port}\"]\n    dns: {{ refresh: 50ms, resolver: \"{}\" }}\nroutes:\n  - upstream: backend\n",
        dns.addr()
    );
    let gateway = TestGateway::start(&text).await;
    // Resolved at load: a serves from the first request.
    for _ in 0..5 {
        assert_eq!(send(&gateway, "/", &[]).await, (200, "a".to_string()));
    }
    dns.set("svc.test", &[ip_a, ip_b]);
    send_until(&gateway, |_, upstream| upstream == "b").await;
    dns.set("svc.test", &[ip_b]);
    let mut run = 0;
    send_until(&gateway, |status, upstream| {
        assert_eq!(status, 200);
        run = if upstream == "b" { run + 1 } else { 0 };
        run == 20
    })
    .await;
    // Lookups that fail keep the endpoints known.
    dns.fail("svc.test");
    let failed_from = dns.queries();
    let keep_serving = async {
        while dns.queries() < failed_from + 4 {
            assert_eq!(send(&gateway, "/", &[]).await, (200, "b".to_string()));
        }
    };
    tokio::time::timeout(TEST_TIMEOUT, keep_serving).await.expect("lookups went on");
    for _ in 0..10 {
        assert_eq!(send(&gateway, "/", &[]).await, (200, "b".to_string()));
    }
}

#[tokio::test]
async fn endpoint_state_shows_in_metrics_and_the_admin_api() {
    let (a, b) = (MockUpstream::start("a").await, MockUpstream::start("b").await);
    a.set_status("", 502);
    let text = format!(
        "admin: {{ address: \"127.0.0.1:0\" }}\nlisteners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n  backend:\n    endpoints: [\"{}\", \"{}\"]\n    outlier_detection: {{ consecutive_gateway_errors: 2, base_ejection_time: 1m }}\nroutes:\n  - upstream: backend\n",
        a.addr(),
        b.addr()
    );
    let gateway = TestGateway::start(&text).await;
    for _ in 0..10 {
        send(&gateway, "/", &[]).await;
    }
    let admin_addr = gateway.admin();
    let admin = |path: &'static str| async move {
        http1_request(admin_addr, Request::get(path).body(Empty::<Bytes>::new()).unwrap()).await.unwrap()
    };
    let metrics = admin("/metrics").await.text();
    let (a_labels, b_labels) = (
        format!("{{upstream=\"backend\",endpoint=\"{}\"}}", a.addr()),
        format!("{{upstream=\"backend\",endpoint=\"{}\"}}", b.addr()),
    );
    for expected in [
        format!("weir_upstream_endpoint_ejected{a_labels} 1"),
        format!("weir_upstream_endpoint_ejections_total{a_labels} 1"),
        format!("weir_upstream_endpoint_ejected{b_labels} 0"),
        format!("weir_upstream_endpoint_healthy{b_labels} 1"),
        format!("weir_upstream_endpoint_in_flight{b_labels} 0"),
        format!("weir_upstream_pool_idle_connections{b_labels} 1"),
        "weir_upstream_panic{upstream=\"backend\"} 0".to_string(),
    ] {
        assert!(metrics.contains(&expected), "{expected} not in:\n{metrics}");
    }
    let upstreams = admin("/upstreams").await;
    assert_eq!(upstreams.header("content-type"), Some("application/json"));
    let body = upstreams.text();
    assert!(
        body.starts_with("{\"upstreams\":[{\"name\":\"backend\",\"balance\":\"round_robin\",\"panic\":false"),
        "{body}"
    );
    let a_entry = body.split(&format!("\"address\":\"{}\"", a.addr())).nth(1).unwrap();
    assert!(a_entry.contains("\"ejections_total\":1"), "{body}");
    assert!(!a_entry.starts_with(",\"weight\":1,\"healthy\":true,\"ejected_for_seconds\":null"), "{body}");
}
