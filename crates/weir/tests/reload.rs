//! Reloads in process, over real sockets: under keep-alive load with long streams and WebSocket
//! tunnels open, a broken file that changes nothing, and endpoint state that carries across a
//! reload of other routes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use weir_test::{MockUpstream, TEST_TIMEOUT, TestGateway, http1_request, open_tunnel, switching_echo};

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Two configurations that differ in routes and upstreams but not in listeners; `/chat` tunnels
/// WebSockets to `chat`.
fn config(mock: SocketAddr, chat: SocketAddr, second: bool) -> String {
    let mut text = format!(
        "admin: {{ address: \"127.0.0.1:0\" }}\nlisteners: [{{ name: public, address: \"127.0.0.1:0\" }}]\nupstreams:\n  a: {{ endpoints: [\"{mock}\"] }}\n  chat: {{ endpoints: [\"{chat}\"] }}\n  other: {{ endpoints: [\"{mock}\"], connect_timeout: {}s }}\nroutes:\n  - {{ name: stream, match: {{ path_prefix: /stream }}, upstream: a, timeout: 60s }}\n  - {{ name: chat, match: {{ path_prefix: /chat }}, upstream: chat }}\n  - {{ name: load, upstream: a, timeout: {}s }}\n",
        if second { 2 } else { 1 },
        if second { 30 } else { 15 },
    );
    if second {
        text.push_str("  - { name: extra, match: { path_prefix: /extra }, upstream: other }\n");
    }
    text
}

#[derive(Default)]
struct Load {
    ok: AtomicUsize,
    failed: AtomicUsize,
    stop: AtomicBool,
}

/// Sends requests one after another on one keep-alive connection until told to stop; an error
/// means the connection was dropped.
async fn keep_alive_client(addr: SocketAddr, load: Arc<Load>) -> Result<(), hyper::Error> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    while !load.stop.load(Ordering::Relaxed) {
        sender.ready().await?;
        let response = sender
            .send_request(Request::get("/load").header("host", "weir.test").body(Empty::<Bytes>::new()).unwrap())
            .await?;
        let status = response.status();
        response.into_body().collect().await?;
        let counter = if status == 200 { &load.ok } else { &load.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// A long streamed response; `started` fires once its head has arrived. Returns the body's length.
async fn long_stream(addr: SocketAddr, started: oneshot::Sender<()>) -> Result<usize, hyper::Error> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = Request::get("/stream")
        .header("host", "weir.test")
        .header("x-mock-chunks", "300")
        .header("x-mock-chunk-size", "100")
        .header("x-mock-chunk-delay-ms", "20")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await?;
    let _ = started.send(());
    Ok(response.into_body().collect().await?.to_bytes().len())
}

async fn until(mut done: impl FnMut() -> bool) {
    tokio::time::timeout(TEST_TIMEOUT, async {
        while !done() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("condition not reached in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reloads_under_load_fail_no_request_and_drop_no_connection() {
    let mock = MockUpstream::start("backend").await;
    let (chat, _heads) = switching_echo().await;
    let (first, second) = (config(mock.addr(), chat, false), config(mock.addr(), chat, true));
    let path = temp_file("load.yaml", &first);
    let gateway = TestGateway::start_file(path.clone()).await;
    let addr = gateway.addr();
    let load = Arc::new(Load::default());
    let clients: Vec<_> = (0..4).map(|_| tokio::spawn(keep_alive_client(addr, load.clone()))).collect();
    let mut streams = Vec::new();
    for _ in 0..3 {
        let (started, head) = oneshot::channel();
        streams.push(tokio::spawn(long_stream(addr, started)));
        head.await.expect("a stream ended before its head");
    }
    let mut tunnels = Vec::new();
    for _ in 0..2 {
        let (tunnel, head) = open_tunnel(addr).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        tunnels.push(tunnel);
    }
    for round in 0..100 {
        std::fs::write(&path, if round % 2 == 0 { &second } else { &first }).unwrap();
        gateway.reload_file().await.expect("reload");
        for tunnel in &mut tunnels {
            let message = format!("round {round}");
            tunnel.get_mut().write_all(message.as_bytes()).await.expect("a tunnel was closed");
            let mut echoed = vec![0; message.len()];
            tunnel.read_exact(&mut echoed).await.expect("a tunnel was closed");
            assert_eq!(echoed, message.as_bytes());
        }
        // Let the load run across the new snapshot before the next swap.
        let seen = load.ok.load(Ordering::Relaxed) + load.failed.load(Ordering::Relaxed);
        until(|| load.ok.load(Ordering::Relaxed) + load.failed.load(Ordering::Relaxed) >= seen + 4).await;
    }
    load.stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap().expect("a keep-alive connection was dropped");
    }
    for stream in streams {
        assert_eq!(stream.await.unwrap().expect("a long stream was cut"), 300 * 100);
    }
    assert_eq!(load.failed.load(Ordering::Relaxed), 0, "requests failed during reloads");
    assert!(load.ok.load(Ordering::Relaxed) >= 400);
    let metrics = http1_request(gateway.admin(), Request::get("/metrics").body(Empty::<Bytes>::new()).unwrap());
    let metrics = metrics.await.unwrap().text();
    assert!(metrics.contains("weir_config_reloads_total{result=\"success\"} 100"), "{metrics}");
}

async fn admin(gateway: &TestGateway, method: &str, path: &str) -> (u16, String) {
    let request = Request::builder().method(method).uri(path).body(Empty::<Bytes>::new()).unwrap();
    let response = http1_request(gateway.admin(), request).await.unwrap();
    (response.status.as_u16(), response.text())
}

#[tokio::test]
async fn a_broken_file_changes_nothing_and_the_error_is_visible() {
    let mock = MockUpstream::start("backend").await;
    let good = config(mock.addr(), mock.addr(), false);
    let path = temp_file("broken.yaml", &good);
    let gateway = TestGateway::start_file(path.clone()).await;

    std::fs::write(&path, good.replace("routes:", "routes: [")).unwrap();
    let (status, body) = admin(&gateway, "POST", "/reload").await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("broken.yaml"), "{body}");

    std::fs::write(&path, good.replace("upstream: a, timeout: 15s", "upstream: missing")).unwrap();
    let (status, body) = admin(&gateway, "POST", "/reload").await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("missing"), "{body}");
    let (_, reload_status) = admin(&gateway, "GET", "/reload").await;
    assert!(reload_status.contains("\"last_error\":\"") && reload_status.contains("missing"), "{reload_status}");

    let token = "admin: { address: \"127.0.0.1:0\", token: a-long-enough-admin-token }";
    std::fs::write(&path, good.replace("admin: { address: \"127.0.0.1:0\" }", token)).unwrap();
    let (status, body) = admin(&gateway, "POST", "/reload").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("admin changed"), "{body}");

    let (_, metrics) = admin(&gateway, "GET", "/metrics").await;
    assert!(metrics.contains("weir_config_reloads_total{result=\"failure\"} 3"), "{metrics}");
    assert!(metrics.contains("weir_config_reloads_total{result=\"success\"} 0"), "{metrics}");
    let served = http1_request(gateway.addr(), Request::get("/load").body(Empty::<Bytes>::new()).unwrap());
    assert_eq!(served.await.unwrap().status, 200);

    std::fs::write(&path, config(mock.addr(), mock.addr(), true)).unwrap();
    let (_, diff) = admin(&gateway, "GET", "/reload/diff").await;
    assert!(diff.contains("\"routes\":{\"added\":[\"extra\"],\"removed\":[],\"changed\":[\"load\"]}"), "{diff}");
    let (status, body) = admin(&gateway, "POST", "/reload").await;
    assert_eq!(status, 200, "{body}");
    let (_, reload_status) = admin(&gateway, "GET", "/reload").await;
    assert!(reload_status.contains("\"last_error\":null"), "{reload_status}");
}

fn ejecting(bad: SocketAddr, good: SocketAddr, extra_route: &str, ejection: &str) -> String {
    format!(
        "admin: {{ address: \"127.0.0.1:0\" }}\nlisteners: [{{ name: public, address: \"127.0.0.1:0\" }}]\nupstreams:\n  pair:\n    endpoints: [\"{bad}\", \"{good}\"]\n    outlier_detection: {{ consecutive_5xx: 1, base_ejection_time: {ejection}, max_ejection_time: 3h }}\nroutes:\n  - {{ name: main, upstream: pair }}\n{extra_route}"
    )
}

async fn ejected(gateway: &TestGateway, endpoint: SocketAddr) -> bool {
    let (_, upstreams) = admin(gateway, "GET", "/upstreams").await;
    let at = upstreams.find(&format!("\"address\":\"{endpoint}\"")).expect("endpoint listed");
    !upstreams[at..].split('}').next().unwrap().contains("\"ejected_for_seconds\":null")
}

#[tokio::test]
async fn an_ejected_endpoint_stays_ejected_across_a_reload_of_other_routes() {
    let (bad, good) = (MockUpstream::start("bad").await, MockUpstream::start("good").await);
    bad.set_status("", 500);
    let gateway = TestGateway::start(&ejecting(bad.addr(), good.addr(), "", "1h")).await;
    while bad.count() == 0 {
        let request = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
        http1_request(gateway.addr(), request).await.unwrap();
    }
    assert!(ejected(&gateway, bad.addr()).await);

    let other_route = "  - { name: other, match: { path_prefix: /other }, direct_response: { status: 204 } }\n";
    let diff = gateway.reload(&ejecting(bad.addr(), good.addr(), other_route, "1h")).unwrap();
    assert_eq!(diff.routes.added, ["other"]);
    assert!(ejected(&gateway, bad.addr()).await, "the reload reset the ejection");
    for _ in 0..10 {
        let request = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
        assert_eq!(http1_request(gateway.addr(), request).await.unwrap().status, 200);
    }
    assert_eq!(bad.count(), 1, "the ejected endpoint was sent traffic after the reload");

    // Changing the upstream itself builds a new cluster, which starts without the ejection.
    gateway.reload(&ejecting(bad.addr(), good.addr(), other_route, "2h")).unwrap();
    assert!(!ejected(&gateway, bad.addr()).await);
}

#[tokio::test]
async fn an_upstream_added_by_a_reload_starts_its_health_checks() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let base = "admin: { address: \"127.0.0.1:0\" }\nlisteners: [{ name: public, address: \"127.0.0.1:0\" }]\n";
    let path = temp_file("health.yaml", &format!("{base}routes:\n  - {{ direct_response: {{ status: 200 }} }}\n"));
    let gateway = TestGateway::start_file(path.clone()).await;
    let added = format!(
        "{base}upstreams:\n  gone:\n    endpoints: [\"{closed}\"]\n    health_check: {{ type: tcp, interval: 50ms, jitter: 10ms, unhealthy_threshold: 1 }}\nroutes:\n  - {{ upstream: gone }}\n"
    );
    std::fs::write(&path, added).unwrap();
    gateway.reload_file().await.expect("reload");
    tokio::time::timeout(TEST_TIMEOUT, async {
        while !admin(&gateway, "GET", "/upstreams").await.1.contains("\"healthy\":false") {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the new upstream's health checks never ran");
}

async fn get(gateway: &TestGateway, path: &str, headers: &[(&str, &str)]) -> weir_test::Exchange {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    http1_request(gateway.addr(), request.body(Empty::<Bytes>::new()).unwrap()).await.unwrap()
}

/// A limited route and another one; `other_timeout` changes only the other route.
fn limited(mock: SocketAddr, burst: u32, other_timeout: u32) -> String {
    format!(
        "admin: {{ address: \"127.0.0.1:0\" }}\nlisteners: [{{ name: public, address: \"127.0.0.1:0\" }}]\nupstreams:\n  app: {{ endpoints: [\"{mock}\"] }}\nroutes:\n  - name: api\n    match: {{ path_prefix: /api }}\n    upstream: app\n    rate_limit: [{{ name: per-ip, key: client_ip, rate: 2/min, burst: {burst} }}]\n  - {{ name: other, upstream: app, timeout: {other_timeout}s }}\n"
    )
}

#[tokio::test]
async fn a_client_that_spent_its_budget_stays_limited_across_a_reload_of_other_routes() {
    let mock = MockUpstream::start("app").await;
    let gateway = TestGateway::start(&limited(mock.addr(), 3, 15)).await;
    for _ in 0..3 {
        assert_eq!(get(&gateway, "/api", &[]).await.status, 200);
    }
    assert_eq!(get(&gateway, "/api", &[]).await.status, 429);

    let diff = gateway.reload(&limited(mock.addr(), 3, 30)).unwrap();
    assert_eq!(diff.routes.changed, ["other"]);
    let refused = get(&gateway, "/api", &[]).await;
    assert_eq!(refused.status, 429, "the reload gave the client a fresh burst");
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "less than one request's cost (30 s) to wait: {retry}");
    assert_eq!(mock.count(), 3);

    // Changing the rule itself builds a new limiter, whose buckets start whole.
    gateway.reload(&limited(mock.addr(), 4, 30)).unwrap();
    assert_eq!(get(&gateway, "/api", &[]).await.status, 200);
}

/// An upstream with a breaker that stays open for an hour once tripped; `connect_timeout` changes
/// the upstream, `extra_route` only the routes.
fn breaking(mock: SocketAddr, connect_timeout: u32, extra_route: &str) -> String {
    format!(
        "admin: {{ address: \"127.0.0.1:0\" }}\nlisteners: [{{ name: public, address: \"127.0.0.1:0\" }}]\nupstreams:\n  backend:\n    endpoints: [\"{mock}\"]\n    connect_timeout: {connect_timeout}s\n    outlier_detection: {{ enabled: false }}\n    breaker: {{ failure_rate: 50%, min_calls: 10, window: 10s, open_for: 1h, max_open_for: 2h, half_open_probes: 1 }}\nroutes:\n  - {{ name: main, upstream: backend }}\n{extra_route}"
    )
}

fn breaker_open(response: &weir_test::Exchange) -> bool {
    response.status == 503
        && response.header("proxy-status") == Some("weir; error=destination_unavailable; details=\"breaker_open\"")
}

#[tokio::test]
async fn an_open_breaker_stays_open_across_a_reload_of_other_routes() {
    let mock = MockUpstream::start("backend").await;
    let gateway = TestGateway::start(&breaking(mock.addr(), 1, "")).await;
    let mut tripped = false;
    for i in 0..20 {
        let headers: &[(&str, &str)] = if i % 5 < 3 { &[("x-mock-status", "500")] } else { &[] };
        tripped |= breaker_open(&get(&gateway, "/", headers).await);
    }
    assert!(tripped, "failing 60% of calls opened the breaker");
    assert!(breaker_open(&get(&gateway, "/", &[]).await));

    let other_route = "  - { name: other, match: { path_prefix: /other }, direct_response: { status: 204 } }\n";
    let diff = gateway.reload(&breaking(mock.addr(), 1, other_route)).unwrap();
    assert_eq!(diff.routes.added, ["other"]);
    let calls = mock.count();
    assert!(breaker_open(&get(&gateway, "/", &[]).await), "the reload closed the breaker");
    assert_eq!(mock.count(), calls, "an open breaker calls nothing");

    // Changing the upstream itself builds a new cluster, whose breaker starts closed.
    gateway.reload(&breaking(mock.addr(), 2, other_route)).unwrap();
    assert_eq!(get(&gateway, "/", &[]).await.status, 200);
}
