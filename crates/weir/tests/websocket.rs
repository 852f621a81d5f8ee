//! WebSocket tunnels over real sockets: a raw upgrade spliced both ways, idle tunnels closed, a
//! refused upgrade closing the connection, and a real WebSocket client and server (Python's
//! `websockets`) echoing a thousand messages through weir.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use weir_test::{MockUpstream, TEST_TIMEOUT, TestGateway, UPGRADE_REQUEST, read_head, switching_echo};

fn config(upstream: std::net::SocketAddr, route_extra: &str) -> String {
    format!(
        "admin: {{ address: \"127.0.0.1:0\" }}\nlisteners:\n  - name: public\n    address: 127.0.0.1:0\nupstreams:\n  chat:\n    endpoints: [\"{upstream}\"]\nroutes:\n  - name: chat\n    upstream: chat\n{route_extra}"
    )
}

#[tokio::test]
async fn an_upgrade_is_tunneled_both_ways_and_counted() {
    let (upstream, mut heads) = switching_echo().await;
    let gateway = TestGateway::start(&config(upstream, "")).await;
    let mut client = BufReader::new(TcpStream::connect(gateway.addr()).await.unwrap());
    client.get_mut().write_all(UPGRADE_REQUEST).await.unwrap();
    let head = read_head(&mut client).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket") && head.contains("connection: upgrade"), "{head}");
    let upstream_head = heads.recv().await.unwrap().to_ascii_lowercase();
    assert!(upstream_head.contains("upgrade: websocket") && upstream_head.contains("sec-websocket-key"));
    // Bytes the HTTP/1.1 server would refuse as a request pass untouched once the tunnel is up.
    for message in [&b"\x81\x05hello"[..], b"bare\nline", &[0u8; 3000]] {
        client.get_mut().write_all(message).await.unwrap();
        let mut echoed = vec![0; message.len()];
        client.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, message);
    }
    drop(client);
    let metrics = weir_test::http1_request(
        gateway.admin(),
        http::Request::get("/metrics").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap(),
    );
    let text = metrics.await.unwrap().text();
    assert!(text.contains("weir_websocket_tunnels_total{route=\"chat\"} 1"), "{text}");
    assert!(text.contains("weir_websocket_bytes_total{route=\"chat\",direction=\"upstream\"} 3016"), "{text}");
}

#[tokio::test]
async fn a_silent_tunnel_is_closed_at_the_idle_timeout() {
    let (upstream, _heads) = switching_echo().await;
    let gateway = TestGateway::start(&config(upstream, "    websocket: { idle_timeout: 300ms }\n")).await;
    let mut client = BufReader::new(TcpStream::connect(gateway.addr()).await.unwrap());
    client.get_mut().write_all(UPGRADE_REQUEST).await.unwrap();
    assert!(read_head(&mut client).await.starts_with("HTTP/1.1 101"));
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(TEST_TIMEOUT, client.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the tunnel was closed");
    assert!(started.elapsed() >= Duration::from_millis(300), "not before the idle timeout");
}

#[tokio::test]
async fn a_refused_upgrade_closes_the_connection_after_the_answer() {
    let mock = MockUpstream::start("plain").await;
    let gateway = TestGateway::start(&config(mock.addr(), "")).await;
    let mut client = BufReader::new(TcpStream::connect(gateway.addr()).await.unwrap());
    // A second request pipelined behind the upgrade is never read: it may be the tunnel's bytes.
    client.get_mut().write_all(&[UPGRADE_REQUEST, b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"].concat()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(TEST_TIMEOUT, client.read_to_string(&mut answer)).await.unwrap().unwrap();
    let lower = answer.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200") && lower.contains("connection: close"), "{answer}");
    assert_eq!(lower.matches("http/1.1 ").count(), 1, "one answer only: {answer}");
    assert_eq!(mock.count(), 1);
}

#[tokio::test]
async fn a_route_without_tunnels_proxies_the_upgrade_as_a_plain_request() {
    let (upstream, mut heads) = switching_echo().await;
    let gateway = TestGateway::start(&config(upstream, "    websocket: { enabled: false }\n")).await;
    let mut client = BufReader::new(TcpStream::connect(gateway.addr()).await.unwrap());
    client.get_mut().write_all(UPGRADE_REQUEST).await.unwrap();
    let upstream_head = heads.recv().await.unwrap().to_ascii_lowercase();
    assert!(!upstream_head.contains("upgrade: websocket"), "{upstream_head}");
    let mut answer = String::new();
    let _ = tokio::time::timeout(TEST_TIMEOUT, client.read_to_string(&mut answer)).await;
    // This upstream switches protocols whatever it is asked: a switch weir did not ask for is refused.
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(answer.contains("upstream_protocol_error"), "{answer}");
}

/// Python's `websockets`, when installed (scripts/test installs it and sets WEIR_REQUIRE_WEBSOCKETS).
fn python_websockets() -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(std::env::var_os("WEIR_REQUIRE_WEBSOCKETS").is_none(), "python3 with websockets is required");
        eprintln!("skipped: python3 with the websockets package is not installed");
    }
    found
}

const ECHO_SERVER: &str = r#"
import asyncio, websockets
async def echo(ws):
    async for message in ws:
        await ws.send(message)
async def main():
    async with websockets.serve(echo, "127.0.0.1", 0) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
"#;

const ECHO_CLIENT: &str = r#"
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1]) as ws:
        for i in range(1000):
            message = f"message {i} " + "x" * (i % 200)
            await ws.send(message)
            assert await ws.recv() == message
    print("echoed 1000")
asyncio.run(main())
"#;

#[tokio::test]
async fn a_websocket_client_echoes_a_thousand_messages_through_weir() {
    if !python_websockets() {
        return;
    }
    let mut server = tokio::process::Command::new("python3")
        .args(["-c", ECHO_SERVER])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let port: u16 = lines.next_line().await.unwrap().expect("the server's port").trim().parse().unwrap();
    let gateway = TestGateway::start(&config(([127, 0, 0, 1], port).into(), "")).await;
    let url = format!("ws://{}/echo", gateway.addr());
    let client = tokio::process::Command::new("python3").args(["-c", ECHO_CLIENT, &url]).output();
    let output = tokio::time::timeout(TEST_TIMEOUT * 3, client).await.expect("the client finished").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout.trim(), "echoed 1000");
}

#[tokio::test]
async fn an_open_tunnel_survives_reloads() {
    let (upstream, _heads) = switching_echo().await;
    let text = config(upstream, "");
    let gateway = TestGateway::start(&text).await;
    let mut client = BufReader::new(TcpStream::connect(gateway.addr()).await.unwrap());
    client.get_mut().write_all(UPGRADE_REQUEST).await.unwrap();
    assert!(read_head(&mut client).await.starts_with("HTTP/1.1 101"));
    for reload in 0..20 {
        // Alternate between two configurations, one of which changes the tunnel's own route.
        let next =
            if reload % 2 == 0 { text.replace("name: chat", "name: chat\n    timeout: 3s") } else { text.clone() };
        gateway.reload(&next).expect("reload");
        let message = format!("after reload {reload}");
        client.get_mut().write_all(message.as_bytes()).await.unwrap();
        let mut echoed = vec![0; message.len()];
        client.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, message.as_bytes());
    }
}
