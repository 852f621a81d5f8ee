//! gRPC through weir with real peers: a Python grpcio client and server (tests/grpc/*.py) talk
//! through the gateway. Unary and streaming calls, statuses and trailers pass through; routes
//! pick by service and method; `grpc-timeout` bounds the call; an upstream that is down answers
//! UNAVAILABLE in gRPC form; gRPC health checks take an endpoint out and bring it back.

use std::process::Stdio;
use std::time::Duration;

use http::Request;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use weir_test::{TestGateway, http1_request};

const SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/server.py");
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/client.py");
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Python's `grpc`, when installed (scripts/test installs it and sets WEIR_REQUIRE_GRPCIO).
fn python_grpcio() -> bool {
    let found =
        std::process::Command::new("python3").args(["-c", "import grpc"]).status().is_ok_and(|status| status.success());
    if !found {
        assert!(std::env::var_os("WEIR_REQUIRE_GRPCIO").is_none(), "python3 with grpcio is required");
        eprintln!("skipped: python3 with the grpcio package is not installed");
    }
    found
}

/// A grpcio server started for the test; it stops with the test.
struct GrpcServer {
    port: u16,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    _child: Child,
}

impl GrpcServer {
    async fn start(name: &str) -> GrpcServer {
        let mut child = Command::new("python3")
            .args([SERVER, name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = stdout.next_line().await.unwrap().expect("the server's port").trim().parse().unwrap();
        GrpcServer { port, stdin, stdout, _child: child }
    }

    /// Sets what the server's health check answers (1: SERVING, 2: NOT_SERVING).
    async fn set_health(&mut self, status: u8) {
        self.stdin.write_all(format!("health {status}\n").as_bytes()).await.unwrap();
        assert_eq!(self.stdout.next_line().await.unwrap().as_deref(), Some("ok"));
    }
}

/// Makes one call with the Python client through `target` and returns what it printed.
async fn call(target: std::net::SocketAddr, name: &str, timeout_secs: &str) -> Value {
    let run = Command::new("python3").args([CLIENT, &target.to_string(), name, timeout_secs]).output();
    let output = tokio::time::timeout(TEST_TIMEOUT, run).await.expect("the client finished").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn config(echo: u16, unary: u16, down: u16, extra: &str) -> String {
    format!(
        r#"admin: {{ address: "127.0.0.1:0" }}
listeners: [{{ name: public, address: "127.0.0.1:0", protocols: [http1, h2c] }}]
upstreams:
  echo: {{ endpoints: ["127.0.0.1:{echo}"], protocol: http2 }}
  unary: {{ endpoints: ["127.0.0.1:{unary}"], protocol: http2 }}
  down: {{ endpoints: ["127.0.0.1:{down}"], protocol: http2 }}
{extra}routes:
  - {{ name: unary, match: {{ grpc: {{ service: weir.test.Echo, method: Unary }} }}, upstream: unary }}
  - {{ name: echo, match: {{ grpc: {{ service: weir.test.Echo }} }}, upstream: echo, timeout: 60s }}
  - {{ name: other, match: {{ grpc: {{ service: weir.test.Other }} }}, upstream: down }}
"#
    )
}

async fn closed_port() -> u16 {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn grpc_calls_of_every_kind_pass_through_weir() {
    if !python_grpcio() {
        return;
    }
    let (echo, unary) = (GrpcServer::start("echo").await, GrpcServer::start("unary").await);
    let gateway = TestGateway::start(&config(echo.port, unary.port, closed_port().await, "")).await;
    let target = gateway.addr();

    let answer = call(target, "unary", "10").await;
    assert_eq!(answer["code"], "OK", "{answer}");
    assert_eq!(answer["messages"][0], "hello");
    assert_eq!(answer["trailers"]["x-served-by"], "unary", "the method's own route took it");

    let answer = call(target, "server_stream", "10").await;
    assert_eq!(answer["code"], "OK", "{answer}");
    let messages = answer["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 100);
    assert_eq!(messages[99], "message 99");
    assert_eq!(answer["trailers"]["x-served-by"], "echo", "the service's route took the other methods");

    let answer = call(target, "client_stream", "10").await;
    assert_eq!(answer["code"], "OK", "{answer}");
    let joined: Vec<String> = (0..50).map(|i| format!("part {i}")).collect();
    assert_eq!(answer["messages"][0], joined.join("|"));

    let answer = call(target, "fail", "10").await;
    assert_eq!((&answer["code"], &answer["details"]), (&"NOT_FOUND".into(), &"no such thing: x".into()), "{answer}");
    assert_eq!(answer["trailers"]["x-served-by"], "echo", "trailers of a failed call pass too");
}

#[tokio::test]
async fn deadlines_reach_the_upstream_and_end_the_call() {
    if !python_grpcio() {
        return;
    }
    let echo = GrpcServer::start("echo").await;
    let gateway = TestGateway::start(&config(echo.port, echo.port, closed_port().await, "")).await;
    let answer = call(gateway.addr(), "unary", "5").await;
    let left: i64 = answer["trailers"]["x-time-left-ms"].as_str().unwrap().parse().unwrap();
    assert!((0..=5000).contains(&left), "the upstream saw the caller's deadline, less time spent: {answer}");
    let answer = call(gateway.addr(), "slow", "0.3").await;
    assert_eq!(answer["code"], "DEADLINE_EXCEEDED", "{answer}");

    // A route's own timeout, shorter than the caller's deadline, ends the call in weir's name.
    let short = config(echo.port, echo.port, closed_port().await, "").replace("timeout: 60s", "timeout: 300ms");
    let gateway = TestGateway::start(&short).await;
    let answer = call(gateway.addr(), "slow", "20").await;
    assert_eq!(answer["code"], "DEADLINE_EXCEEDED", "{answer}");
    assert!(answer["details"].as_str().unwrap().contains("timeout"), "weir's reason: {answer}");
    let answer = call(gateway.addr(), "unary", "20").await;
    let left: i64 = answer["trailers"]["x-time-left-ms"].as_str().unwrap().parse().unwrap();
    assert!((0..=15_000).contains(&left), "the route's timeout (15s default) reached the upstream: {answer}");
}

#[tokio::test]
async fn an_upstream_that_is_down_answers_unavailable_in_grpc_form() {
    if !python_grpcio() {
        return;
    }
    let echo = GrpcServer::start("echo").await;
    let gateway = TestGateway::start(&config(echo.port, echo.port, closed_port().await, "")).await;
    let answer = call(gateway.addr(), "other_service", "10").await;
    assert_eq!(answer["code"], "UNAVAILABLE", "{answer}");
    assert!(answer["details"].as_str().unwrap().contains("connect_error"), "{answer}");
}

#[tokio::test]
async fn grpc_health_checks_take_an_endpoint_out_and_bring_it_back() {
    if !python_grpcio() {
        return;
    }
    let (mut a, b) = (GrpcServer::start("a").await, GrpcServer::start("b").await);
    let check = "    health_check: { type: grpc, service: weir.test.Echo, interval: 50ms, jitter: 0s, healthy_threshold: 1, unhealthy_threshold: 1 }\n";
    let text = config(a.port, a.port, closed_port().await, "").replace(
        &format!("  echo: {{ endpoints: [\"127.0.0.1:{0}\"], protocol: http2 }}\n", a.port),
        &format!(
            "  echo:\n    endpoints: [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n    protocol: http2\n{check}",
            a.port, b.port
        ),
    );
    assert!(text.contains("type: grpc"), "{text}");
    let gateway = TestGateway::start(&text).await;
    a.set_health(2).await;
    wait_for_health(&gateway, a.port, false).await;
    for _ in 0..10 {
        let answer = call(gateway.addr(), "server_stream", "10").await;
        assert_eq!(answer["trailers"]["x-served-by"], "b", "a answers NOT_SERVING: {answer}");
    }
    a.set_health(1).await;
    wait_for_health(&gateway, a.port, true).await;
}

async fn admin_get(gateway: &TestGateway, path: &str) -> String {
    let request = Request::get(path).header("host", "admin").body(String::new()).unwrap();
    http1_request(gateway.admin(), request).await.unwrap().text()
}

/// Waits until the admin API reports the endpoint at `port` healthy (or not).
async fn wait_for_health(gateway: &TestGateway, port: u16, healthy: bool) {
    let address = format!("127.0.0.1:{port}");
    tokio::time::timeout(TEST_TIMEOUT, async {
        loop {
            let view: Value = serde_json::from_str(&admin_get(gateway, "/upstreams").await).unwrap();
            let endpoints = view["upstreams"].as_array().into_iter().flatten().flat_map(|u| u["endpoints"].as_array());
            if endpoints.flatten().any(|e| e["address"] == address.as_str() && e["healthy"] == healthy) {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{address} never became healthy: {healthy}"));
}
