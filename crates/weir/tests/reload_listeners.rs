//! Listeners changed by a reload, over real sockets: a listener added serves, a listener removed
//! refuses new connections while those it accepted (keep-alive HTTP/1.1, HTTP/2, a WebSocket
//! tunnel, a long response) go on, a listener moved to another address, a reload that cannot bind
//! changing nothing, and listeners coming and going under load without a lost request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use weir_proxy::Reloaded;
use weir_test::{MockUpstream, TEST_TIMEOUT, TestGateway, http1_request, open_tunnel, switching_echo};

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-reload-listeners-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A configuration with these listeners (`name: address` pairs, or any listener fields) whose
/// catch-all route answers `body`.
fn direct(listeners: &[&str], body: &str) -> String {
    format!(
        "admin: {{ address: \"127.0.0.1:0\" }}\nlisteners:\n{}routes:\n  - {{ name: main, direct_response: {{ status: 200, body: {body} }} }}\n",
        listener_list(listeners)
    )
}

fn listener_list(listeners: &[&str]) -> String {
    listeners.iter().map(|fields| format!("  - {{ {fields} }}\n")).collect()
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path).header("host", "weir.test").body(Empty::new()).unwrap()
}

async fn text(addr: SocketAddr, path: &str) -> String {
    http1_request(addr, get(path)).await.expect("a response").text()
}

async fn reload(gateway: &TestGateway, path: &PathBuf, text: &str) -> weir_proxy::ConfigDiff {
    std::fs::write(path, text).unwrap();
    match gateway.reload_file().await.expect("reload") {
        Reloaded::Applied(diff) => *diff,
        Reloaded::Unchanged => panic!("the reload changed nothing"),
    }
}

async fn admin(gateway: &TestGateway, method: &str, path: &str) -> (u16, String) {
    let request = Request::builder().method(method).uri(path).body(Empty::<Bytes>::new()).unwrap();
    let response = http1_request(gateway.admin(), request).await.unwrap();
    (response.status.as_u16(), response.text())
}

fn refused(addr: SocketAddr) -> bool {
    let connected = std::net::TcpStream::connect(addr);
    connected.is_err_and(|error| error.kind() == std::io::ErrorKind::ConnectionRefused)
}

/// The kernel socket a listener listens on (its inode), to tell whether a reload kept it.
fn socket_of(gateway: &TestGateway, name: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let sockets = gateway.gateway().listeners().listening_sockets().unwrap();
    let (_, fd) = sockets.into_iter().find(|(n, _)| n == name).expect("no such listener");
    std::fs::File::from(fd).metadata().unwrap().ino()
}

/// A kept-open HTTP/1.1 connection.
async fn keep_alive(addr: SocketAddr) -> http1::SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    sender
}

async fn send_h1(sender: &mut http1::SendRequest<Empty<Bytes>>, path: &str) -> String {
    sender.ready().await.expect("the connection was closed");
    let response = sender.send_request(get(path)).await.expect("no answer");
    String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

async fn echo(tunnel: &mut BufReader<TcpStream>, message: &str) {
    tunnel.get_mut().write_all(message.as_bytes()).await.expect("the tunnel was closed");
    let mut echoed = vec![0; message.len()];
    tunnel.read_exact(&mut echoed).await.expect("the tunnel was closed");
    assert_eq!(echoed, message.as_bytes());
}

#[tokio::test]
async fn a_listener_added_by_a_reload_serves() {
    let path = temp_file("added.yaml", &direct(&["name: public, address: \"127.0.0.1:0\""], "one"));
    let gateway = TestGateway::start_file(path.clone()).await;
    let two = direct(&["name: public, address: \"127.0.0.1:0\"", "name: more, address: \"127.0.0.1:0\""], "two");
    let diff = reload(&gateway, &path, &two).await;
    assert_eq!(diff.listeners.added, ["more"]);
    assert!(diff.needs_restart().is_none());

    let more = gateway.listener("more");
    assert_ne!(more, gateway.addr());
    assert_eq!(text(more, "/").await, "two");
    // The listener that stayed kept its socket.
    assert_eq!(gateway.listener("public"), gateway.addr());
    assert_eq!(text(gateway.addr(), "/").await, "two");
    let (_, metrics) = admin(&gateway, "GET", "/metrics").await;
    assert!(metrics.contains("weir_connections_total{listener=\"more\"} 1"), "{metrics}");
    assert!(metrics.contains("weir_config_reloads_total{result=\"success\"} 1"), "{metrics}");
}

/// `public` and (when `side`) `side`; `/chat` tunnels, `/stream` streams from `mock`, and `side`
/// has a route of its own.
fn with_side(mock: SocketAddr, chat: SocketAddr, side: bool) -> String {
    let mut text = format!(
        "admin: {{ address: \"127.0.0.1:0\" }}\nlisteners:\n  - {{ name: public, address: \"127.0.0.1:0\" }}\n{}upstreams:\n  chat: {{ endpoints: [\"{chat}\"] }}\n  app: {{ endpoints: [\"{mock}\"] }}\nroutes:\n  - {{ name: chat, match: {{ path_prefix: /chat }}, upstream: chat }}\n  - {{ name: stream, match: {{ path_prefix: /stream }}, upstream: app, timeout: 60s }}\n",
        if side { "  - { name: side, address: \"127.0.0.1:0\" }\n" } else { "" }
    );
    match side {
        true => text.push_str(
            "  - { name: side-only, listeners: [side], direct_response: { status: 200, body: side-one } }\n  - { name: main, direct_response: { status: 200, body: main-one } }\n",
        ),
        false => text.push_str("  - { name: main, direct_response: { status: 200, body: main-two } }\n"),
    }
    text
}

/// Starts a streamed response of 40 chunks of 100 bytes; returns once its head has arrived.
async fn long_response(addr: SocketAddr) -> tokio::task::JoinHandle<usize> {
    let mut sender = keep_alive(addr).await;
    let request = Request::get("/stream")
        .header("host", "weir.test")
        .header("x-mock-chunks", "40")
        .header("x-mock-chunk-size", "100")
        .header("x-mock-chunk-delay-ms", "10")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.expect("a response head");
    tokio::spawn(async move { response.into_body().collect().await.expect("the response was cut").to_bytes().len() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_listener_refuses_new_connections_and_its_open_ones_go_on() {
    let mock = MockUpstream::start("backend").await;
    let (chat, _heads) = switching_echo().await;
    let path = temp_file("removed.yaml", &with_side(mock.addr(), chat, true));
    let gateway = TestGateway::start_file(path.clone()).await;
    let side = gateway.listener("side");

    let mut http1 = keep_alive(side).await;
    assert_eq!(send_h1(&mut http1, "/").await, "side-one");
    let stream = TcpStream::connect(side).await.unwrap();
    let (mut http2, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let answer = http2.send_request(get("/")).await.unwrap();
    assert_eq!(answer.into_body().collect().await.unwrap().to_bytes(), "side-one");
    let (mut tunnel, head) = open_tunnel(side).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    echo(&mut tunnel, "before").await;
    let streaming = long_response(side).await;

    let diff = reload(&gateway, &path, &with_side(mock.addr(), chat, false)).await;
    assert_eq!(diff.listeners.removed, ["side"]);
    // The reload answers once the socket is closed.
    assert!(refused(side), "the removed listener still accepts");
    assert!(gateway.gateway().listeners().local_addrs().iter().all(|(name, _)| name != "side"));
    assert_eq!(text(gateway.addr(), "/").await, "main-two");

    // What the removed listener accepted goes on, with the routes it had (side-only is gone from
    // the configuration now serving).
    assert_eq!(send_h1(&mut http1, "/").await, "side-one");
    let answer = http2.send_request(get("/")).await.expect("the HTTP/2 connection was closed");
    assert_eq!(answer.into_body().collect().await.unwrap().to_bytes(), "side-one");
    echo(&mut tunnel, "after").await;
    assert_eq!(streaming.await.unwrap(), 40 * 100);
}

#[tokio::test]
async fn a_changed_address_moves_the_listener_and_other_changes_keep_its_socket() {
    let public = "name: public, address: \"127.0.0.1:0\"";
    let path = temp_file("moved.yaml", &direct(&[public, "name: side, address: \"127.0.0.1:0\""], "one"));
    let gateway = TestGateway::start_file(path.clone()).await;
    let before = gateway.listener("side");
    let mut open = keep_alive(before).await;
    assert_eq!(send_h1(&mut open, "/").await, "one");

    let moved = direct(&[public, "name: side, address: \"127.0.0.2:0\""], "two");
    let diff = reload(&gateway, &path, &moved).await;
    assert_eq!(diff.listeners.changed, ["side"]);
    let after = gateway.listener("side");
    assert_eq!(after.ip().to_string(), "127.0.0.2");
    assert_eq!(text(after, "/").await, "two");
    assert!(refused(before), "the old address still accepts");
    assert_eq!(send_h1(&mut open, "/").await, "two");

    // Same address, other settings: the same socket serves with the new limits.
    let socket = socket_of(&gateway, "side");
    let limited = direct(&[public, "name: side, address: \"127.0.0.2:0\", max_uri_length: 64"], "two");
    let diff = reload(&gateway, &path, &limited).await;
    assert_eq!(diff.listeners.changed, ["side"]);
    assert_eq!(gateway.listener("side"), after);
    assert_eq!(socket_of(&gateway, "side"), socket);
    let long = format!("/{}", "a".repeat(100));
    assert_eq!(http1_request(after, get(&long)).await.unwrap().status, 414);
    assert_eq!(http1_request(gateway.addr(), get(&long)).await.unwrap().status, 200);
}

#[tokio::test]
async fn a_listener_renamed_on_its_address_takes_over_the_socket() {
    let path = temp_file("renamed.yaml", &direct(&["name: old, address: \"127.0.0.1:0\""], "one"));
    let gateway = TestGateway::start_file(path.clone()).await;
    let (address, socket) = (gateway.listener("old"), socket_of(&gateway, "old"));
    let mut open = keep_alive(address).await;
    assert_eq!(send_h1(&mut open, "/").await, "one");

    let renamed = direct(&[&format!("name: new, address: \"{address}\"")], "two");
    let diff = reload(&gateway, &path, &renamed).await;
    assert_eq!((diff.listeners.added, diff.listeners.removed), (vec!["new".to_string()], vec!["old".to_string()]));
    // Not a second socket beside the first: the same one, so nothing queued on it was reset.
    assert_eq!(socket_of(&gateway, "new"), socket);
    assert_eq!(text(address, "/").await, "two");
    // The connection the old listener accepted keeps its routes.
    assert_eq!(send_h1(&mut open, "/").await, "one");
}

#[tokio::test]
async fn a_reload_that_cannot_bind_a_listener_changes_nothing() {
    let public = "name: public, address: \"127.0.0.1:0\"";
    let side = "name: side, address: \"127.0.0.1:0\"";
    let path = temp_file("taken.yaml", &direct(&[public, side], "one"));
    let gateway = TestGateway::start_file(path.clone()).await;
    let side_addr = gateway.listener("side");
    // Held without SO_REUSEPORT, so weir cannot bind beside it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let more = format!("name: more, address: \"{}\"", taken.local_addr().unwrap());

    // Removes side, adds more on the taken address and changes the route: none of it happens.
    std::fs::write(&path, direct(&[public, &more], "two")).unwrap();
    let (status, body) = admin(&gateway, "POST", "/reload").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("listener more: cannot listen on"), "{body}");
    let (_, reload_status) = admin(&gateway, "GET", "/reload").await;
    assert!(reload_status.contains("listener more"), "{reload_status}");
    let (_, metrics) = admin(&gateway, "GET", "/metrics").await;
    assert!(metrics.contains("weir_config_reloads_total{result=\"failure\"} 1"), "{metrics}");
    assert_eq!(text(side_addr, "/").await, "one");
    assert_eq!(text(gateway.addr(), "/").await, "one");
    let names: Vec<String> = gateway.gateway().listeners().local_addrs().into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["public", "side"]);

    // Once the address is free the same file applies.
    drop(taken);
    let (status, body) = admin(&gateway, "POST", "/reload").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(text(gateway.listener("more"), "/").await, "two");
    assert!(refused(side_addr));
}

#[derive(Default)]
struct Load {
    ok: AtomicUsize,
    failed: AtomicUsize,
    stop: AtomicBool,
}

impl Load {
    fn done(&self) -> usize {
        self.ok.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }

    fn count(&self, answered: bool) {
        let counter = if answered { &self.ok } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Requests one after another on one keep-alive connection until told to stop.
async fn keep_alive_load(addr: SocketAddr, load: Arc<Load>) {
    let mut sender = keep_alive(addr).await;
    while !load.stop.load(Ordering::Relaxed) {
        let answered = match sender.ready().await {
            Ok(()) => sender.send_request(get("/")).await.map(|r| r.status() == 200).unwrap_or(false),
            Err(_) => false,
        };
        load.count(answered);
    }
}

/// A new connection for every request until told to stop.
async fn new_connection_load(addr: SocketAddr, load: Arc<Load>) {
    while !load.stop.load(Ordering::Relaxed) {
        let answered = match TcpStream::connect(addr).await {
            Ok(stream) => match http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await {
                Ok((mut sender, connection)) => {
                    tokio::spawn(connection);
                    sender.send_request(get("/")).await.map(|r| r.status() == 200).unwrap_or(false)
                }
                Err(_) => false,
            },
            Err(_) => false,
        };
        load.count(answered);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_added_and_removed_under_load_lose_no_request_on_the_listeners_that_stay() {
    let public = "name: public, address: \"127.0.0.1:0\"";
    let configs = [
        direct(&[public, "name: even, address: \"127.0.0.1:0\""], "even"),
        direct(&[public, "name: odd, address: \"127.0.0.1:0\""], "odd"),
    ];
    let path = temp_file("alternating.yaml", &configs[0]);
    let gateway = TestGateway::start_file(path.clone()).await;
    let load = Arc::new(Load::default());
    let mut clients: Vec<_> = (0..3).map(|_| tokio::spawn(keep_alive_load(gateway.addr(), load.clone()))).collect();
    clients.push(tokio::spawn(new_connection_load(gateway.addr(), load.clone())));
    let mut previous = gateway.listener("even");
    for round in 1..=40 {
        let (added, config) = if round % 2 == 0 { ("even", &configs[0]) } else { ("odd", &configs[1]) };
        reload(&gateway, &path, config).await;
        assert!(refused(previous), "round {round}: the removed listener still accepts");
        previous = gateway.listener(added);
        assert_eq!(text(previous, "/").await, added);
        // Let the load run across the new listener set before the next reload.
        let seen = load.done();
        tokio::time::timeout(TEST_TIMEOUT, async {
            while load.done() < seen + 8 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the load stalled");
    }
    load.stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(load.failed.load(Ordering::Relaxed), 0, "requests failed on the listener that stayed");
    assert!(load.ok.load(Ordering::Relaxed) >= 320);
}
