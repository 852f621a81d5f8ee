//! Idle keep-alive connections parked in their listener's shared poller: a parked connection is
//! served again when its client sends the next request, closed at its idle timeout, and closed at
//! once by a drain.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use weir_proxy::Drained;
use weir_test::{TEST_TIMEOUT, TestGateway};

const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: weir.test\r\n\r\n";
const ANSWER: &str = "HTTP/1.1 200 OK";

fn config(listener: &str) -> String {
    format!(
        "server: {{ drain_delay: 0s, drain_timeout: 60s }}\nlisteners: [{{ name: public, address: \"127.0.0.1:0\", {listener} }}]\nroutes:\n  - {{ direct_response: {{ status: 200, body: up }} }}\n"
    )
}

/// The listener's `weir_connections_parked` and `weir_connections_open`.
fn gauges(gateway: &TestGateway) -> (i64, i64) {
    let text = gateway.gateway().metrics().encode();
    let read = |name: &str| {
        let prefix = format!("{name}{{listener=\"public\"}} ");
        let line = text.lines().find_map(|line| line.strip_prefix(prefix.as_str()));
        line.map_or(0, |value| value.parse().unwrap())
    };
    (read("weir_connections_parked"), read("weir_connections_open"))
}

async fn until_parked(gateway: &TestGateway, count: i64) {
    until(gateway, &format!("{count} parked"), |(parked, _)| parked == count).await;
}

/// Waits until the gauges (parked, open) satisfy `done`.
async fn until(gateway: &TestGateway, what: &str, done: impl Fn((i64, i64)) -> bool) {
    let wait = async {
        while !done(gauges(gateway)) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(TEST_TIMEOUT, wait).await.unwrap_or_else(|_| panic!("never {what}: {:?}", gauges(gateway)));
}

/// Sends a GET and reads its whole answer (`up`, length-framed).
async fn exchange(stream: &mut TcpStream) -> String {
    exchange_rest(stream, GET).await
}

/// A gateway on `listener` settings and a connection to it that has had one answer and is parked
/// now; and when the answer was read.
async fn parked_connection(listener: &str) -> (TestGateway, TcpStream, Instant) {
    let gateway = TestGateway::start(&config(listener)).await;
    let mut stream = TcpStream::connect(gateway.addr()).await.unwrap();
    assert!(exchange(&mut stream).await.starts_with(ANSWER));
    let answered = Instant::now();
    until_parked(&gateway, 1).await;
    (gateway, stream, answered)
}

#[tokio::test]
async fn a_parked_connection_is_served_again_and_parked_again() {
    let (gateway, mut stream, _) = parked_connection("idle_timeout: 1h, idle_park_after: 50ms").await;
    assert_eq!(gauges(&gateway), (1, 1), "parked and still open");
    for _ in 0..3 {
        assert!(exchange(&mut stream).await.starts_with(ANSWER));
        until_parked(&gateway, 1).await;
    }
    // Its client's close is seen while it is parked.
    drop(stream);
    until(&gateway, "closed by its client", |gauges| gauges == (0, 0)).await;
}

#[tokio::test]
async fn a_pipelined_request_in_pieces_across_the_parking_is_served_whole() {
    let (gateway, mut stream, _) = parked_connection("idle_timeout: 1h, idle_park_after: 50ms").await;
    // The first piece wakes it; the rest comes later into its new task.
    stream.write_all(&GET[..5]).await.unwrap();
    until_parked(&gateway, 0).await;
    let answer = exchange_rest(&mut stream, &GET[5..]).await;
    assert!(answer.starts_with(ANSWER), "{answer}");
}

/// Sends `rest` of a GET and reads its whole answer.
async fn exchange_rest(stream: &mut TcpStream, rest: &[u8]) -> String {
    stream.write_all(rest).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"\r\n\r\nup") {
        let n = tokio::time::timeout(TEST_TIMEOUT, stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed after {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(answer).unwrap()
}

#[tokio::test]
async fn a_parked_connection_is_closed_at_its_idle_timeout() {
    let (gateway, mut stream, answered) = parked_connection("idle_timeout: 1s, idle_park_after: 50ms").await;
    let mut rest = Vec::new();
    tokio::time::timeout(TEST_TIMEOUT, stream.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert!(rest.is_empty());
    assert!(answered.elapsed() >= Duration::from_secs(1), "closed after {:?}", answered.elapsed());
    assert_eq!(gauges(&gateway), (0, 0));
}

#[tokio::test]
async fn a_drain_closes_parked_connections_at_once() {
    let gateway = TestGateway::start(&config("idle_timeout: 1h, idle_park_after: 50ms")).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(gateway.addr()).await.unwrap();
        assert!(exchange(&mut stream).await.starts_with(ANSWER));
        streams.push(stream);
    }
    until_parked(&gateway, 3).await;
    assert_eq!(gateway.stop().await, Drained::Clean);
    for stream in &mut streams {
        let mut rest = Vec::new();
        tokio::time::timeout(TEST_TIMEOUT, stream.read_to_end(&mut rest)).await.unwrap().unwrap();
        assert!(rest.is_empty());
    }
}
