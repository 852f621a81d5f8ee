//! Concurrency limits over real sockets: a burst beyond a limit is shed at once while admitted
//! requests are served as usual, queued requests are served when a slot frees, and a queue timeout
//! sheds.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use tokio::task::JoinHandle;
use weir_test::{Exchange, MockUpstream, TestGateway, http1_request};

fn config(mock: &MockUpstream, route_extra: &str, upstream_extra: &str) -> String {
    format!(
        "admin: {{ address: 127.0.0.1:0 }}\nlisteners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n  backend:\n    endpoints: [\"{}\"]\n{upstream_extra}routes:\n  - name: slow\n    match: {{ path_prefix: /slow }}\n    upstream: backend\n{route_extra}  - name: other\n    match: {{ path_prefix: /other }}\n    upstream: backend\n",
        mock.addr()
    )
}

/// Sends a request in the background; `delay_ms` is how long the mock upstream holds it.
fn send(gateway: &TestGateway, path: &str, delay_ms: u64) -> JoinHandle<(Exchange, Duration)> {
    let addr = gateway.addr();
    let request = Request::get(path).header("x-mock-delay-ms", delay_ms).body(Empty::<Bytes>::new()).unwrap();
    tokio::spawn(async move {
        let started = Instant::now();
        let exchange = http1_request(addr, request).await.unwrap();
        (exchange, started.elapsed())
    })
}

async fn metrics(gateway: &TestGateway) -> String {
    let request = Request::get("/metrics").body(Empty::<Bytes>::new()).unwrap();
    http1_request(gateway.admin(), request).await.unwrap().text()
}

fn assert_shed(exchange: &Exchange) {
    assert_eq!(exchange.status, 503);
    let proxy_status = exchange.header("proxy-status").unwrap();
    assert!(proxy_status.contains("details=\"shed\""), "{proxy_status}");
}

#[tokio::test]
async fn a_burst_beyond_the_limit_is_shed_while_admitted_requests_are_served() {
    let mock = MockUpstream::start("backend").await;
    let gateway = TestGateway::start(&config(&mock, "    concurrency: { max_in_flight: 4 }\n", "")).await;
    let admitted: Vec<_> = (0..4).map(|_| send(&gateway, "/slow", 3000)).collect();
    mock.wait_for(4).await;
    let burst: Vec<_> = (0..20).map(|_| send(&gateway, "/slow", 0)).collect();
    for request in burst {
        let (exchange, _) = request.await.unwrap();
        assert_shed(&exchange);
    }
    // The burst was answered while every admitted request was still with the upstream.
    assert!(admitted.iter().all(|a| !a.is_finished()), "the burst was shed before the admitted ones ended");
    assert_eq!(mock.count(), 4, "no shed request reached the upstream");
    for request in admitted {
        let (exchange, took) = request.await.unwrap();
        assert_eq!(exchange.status, 200);
        assert!(took < Duration::from_secs(8), "an admitted request took about its usual 3 s: {took:?}");
    }
    // Another route is not limited by this one's limit.
    assert_eq!(send(&gateway, "/other", 0).await.unwrap().0.status, 200);
    let metrics = metrics(&gateway).await;
    assert!(metrics.contains("weir_refusals_total{route=\"slow\",reason=\"shed\"} 20"), "{metrics}");
    let shed = "weir_concurrency_shed_total{scope=\"route\",name=\"slow\",cause=\"queue_full\"} 20";
    assert!(metrics.contains(shed), "{metrics}");
    assert!(metrics.contains("weir_concurrency_in_flight{scope=\"route\",name=\"slow\"} 0"), "{metrics}");
}

#[tokio::test]
async fn queued_requests_are_served_when_a_slot_frees() {
    let mock = MockUpstream::start("backend").await;
    let limit = "    concurrency: { max_in_flight: 1, max_queue: 2, queue_timeout: 10s }\n";
    let gateway = TestGateway::start(&config(&mock, limit, "")).await;
    let first = send(&gateway, "/slow", 3000);
    mock.wait_for(1).await;
    let queued: Vec<_> = (0..2).map(|_| send(&gateway, "/slow", 0)).collect();
    wait_for_metric(&gateway, "weir_concurrency_queued{scope=\"route\",name=\"slow\"} 2").await;
    // A third waiter finds the queue full.
    assert_shed(&send(&gateway, "/slow", 0).await.unwrap().0);
    assert_eq!(first.await.unwrap().0.status, 200);
    for request in queued {
        assert_eq!(request.await.unwrap().0.status, 200);
    }
    assert_eq!(mock.count(), 3);
}

/// Polls `/metrics` until it shows `series` (bounded by the test's own timeout).
async fn wait_for_metric(gateway: &TestGateway, series: &str) {
    let wait = async {
        while !metrics(gateway).await.contains(series) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await.expect("the series appeared");
}

#[tokio::test]
async fn time_spent_queued_counts_against_the_deadline() {
    let mock = MockUpstream::start("backend").await;
    let limit = "    timeout: 1s\n    concurrency: { max_in_flight: 1, max_queue: 1, queue_timeout: 10s }\n";
    let yaml = format!("server:\n  deadline_header: x-deadline-ms\n{}", config(&mock, limit, ""));
    let gateway = TestGateway::start(&yaml).await;
    let first = send(&gateway, "/slow", 800);
    mock.wait_for(1).await;
    // Alone, 800 ms upstream would fit the 1 s timeout; after most of 800 ms in the queue it does not.
    let (queued, _) = send(&gateway, "/slow", 800).await.unwrap();
    assert_eq!(first.await.unwrap().0.status, 200);
    assert_eq!(queued.status, 504);
    let received = mock.received();
    let left: u64 = received[1].headers["x-deadline-ms"].to_str().unwrap().parse().unwrap();
    assert!(left < 800, "the upstream was told only what the queue left of the second's 1 s: {left} ms");
}

#[tokio::test]
async fn a_request_that_waits_out_the_queue_timeout_is_shed() {
    let mock = MockUpstream::start("backend").await;
    let limit = "    concurrency: { max_in_flight: 1, max_queue: 1, queue_timeout: 100ms }\n";
    let gateway = TestGateway::start(&config(&mock, limit, "")).await;
    let held = send(&gateway, "/slow", 3000);
    mock.wait_for(1).await;
    let (exchange, took) = send(&gateway, "/slow", 0).await.unwrap();
    assert_shed(&exchange);
    assert!(took >= Duration::from_millis(100), "it waited the queue timeout first: {took:?}");
    assert!(!held.is_finished());
    let metrics = metrics(&gateway).await;
    let timeouts = "weir_concurrency_shed_total{scope=\"route\",name=\"slow\",cause=\"queue_timeout\"} 1";
    assert!(metrics.contains(timeouts), "{metrics}");
    assert_eq!(held.await.unwrap().0.status, 200);
}

#[tokio::test]
async fn an_upstream_limit_is_shared_by_its_routes() {
    let mock = MockUpstream::start("backend").await;
    let gateway = TestGateway::start(&config(&mock, "", "    concurrency: { max_in_flight: 1 }\n")).await;
    let held = send(&gateway, "/slow", 3000);
    mock.wait_for(1).await;
    let (exchange, _) = send(&gateway, "/other", 0).await.unwrap();
    assert_shed(&exchange);
    assert!(!held.is_finished());
    assert_eq!(held.await.unwrap().0.status, 200);
    assert_eq!(send(&gateway, "/other", 0).await.unwrap().0.status, 200);
    let metrics = metrics(&gateway).await;
    assert!(
        metrics.contains("weir_concurrency_shed_total{scope=\"upstream\",name=\"backend\",cause=\"queue_full\"} 1")
    );
}

#[tokio::test]
async fn an_upstream_limit_keeps_its_slots_across_a_reload_of_other_routes() {
    let mock = MockUpstream::start("backend").await;
    let yaml = config(&mock, "", "    concurrency: { max_in_flight: 1 }\n");
    let gateway = TestGateway::start(&yaml).await;
    let held = send(&gateway, "/slow", 3000);
    mock.wait_for(1).await;
    let more = format!(
        "{yaml}  - name: extra\n    match: {{ path_prefix: /extra }}\n    direct_response: {{ status: 204 }}\n"
    );
    gateway.reload(&more).unwrap();
    assert_eq!(send(&gateway, "/extra", 0).await.unwrap().0.status, 204, "the new snapshot serves");
    assert_shed(&send(&gateway, "/other", 0).await.unwrap().0);
    assert!(!held.is_finished());
    assert_eq!(held.await.unwrap().0.status, 200);
    assert_eq!(send(&gateway, "/other", 0).await.unwrap().0.status, 200);
}
