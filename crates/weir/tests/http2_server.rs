//! weir's HTTP/2 server in the gateway, with frames written by hand: what a well-behaved client never
//! sends is answered as the listener's limits and RFC 9113 say, and counted.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_test::{MockUpstream, TestGateway};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const END_STREAM_AND_HEADERS: u8 = 0x5;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with a 7-bit prefix (the length of a string that is not Huffman-coded).
fn length(out: &mut Vec<u8>, len: usize) {
    if len < 127 {
        out.push(len as u8);
        return;
    }
    out.push(127);
    let mut rest = len - 127;
    while rest >= 128 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// A header block for `GET path` on `authority`, then `fields`, every field a literal.
fn block(authority: &str, path: &str, fields: &[(&str, String)]) -> Vec<u8> {
    let mut out = vec![0x82, 0x86]; // :method GET, :scheme http
    let literal = |out: &mut Vec<u8>, name: &str, value: &str| {
        out.push(0x00);
        length(out, name.len());
        out.extend_from_slice(name.as_bytes());
        length(out, value.len());
        out.extend_from_slice(value.as_bytes());
    };
    literal(&mut out, ":authority", authority);
    literal(&mut out, ":path", path);
    for (name, value) in fields {
        literal(&mut out, name, value);
    }
    out
}

struct Client {
    stream: TcpStream,
    read: Vec<u8>,
}

impl Client {
    async fn connect(address: SocketAddr) -> Client {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(0x4, 0, 0, &[]));
        stream.write_all(&hello).await.unwrap();
        Client { stream, read: Vec::new() }
    }

    async fn request(&mut self, stream: u32, block: &[u8]) {
        self.stream.write_all(&frame(HEADERS, END_STREAM_AND_HEADERS, stream, block)).await.unwrap();
    }

    /// The next frame of `kind` on `stream`: its flags and payload.
    async fn expect(&mut self, kind: u8, stream: u32) -> (u8, Vec<u8>) {
        loop {
            if self.read.len() >= 9 {
                let len = u32::from_be_bytes([0, self.read[0], self.read[1], self.read[2]]) as usize;
                if self.read.len() >= 9 + len {
                    let head: Vec<u8> = self.read.drain(..9).collect();
                    let payload: Vec<u8> = self.read.drain(..len).collect();
                    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
                    if head[3] == kind && id == stream {
                        return (head[4], payload);
                    }
                    continue;
                }
            }
            let mut buf = [0u8; 16384];
            let n = self.stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the connection closed");
            self.read.extend_from_slice(&buf[..n]);
        }
    }

    /// The status of the response on `stream`, from a block of weir's (literal or indexed `:status`).
    async fn status(&mut self, stream: u32) -> u16 {
        let (_, block) = self.expect(HEADERS, stream).await;
        match block[0] {
            0x88 => 200,
            0x8d => 404,
            // Literal, name index 8 (`:status`), three digits.
            0x08 => std::str::from_utf8(&block[2..5]).unwrap().parse().unwrap(),
            other => panic!("unexpected start of a response block: {other:#x}"),
        }
    }
}

async fn gateway() -> (TestGateway, MockUpstream) {
    let mock = MockUpstream::start("a").await;
    let yaml = format!(
        "listeners:\n  - name: main\n    address: 127.0.0.1:0\n    protocols: [http1, h2c]\n    max_head_size: 2KiB\n    max_uri_length: 1KiB\n\
         upstreams:\n  a:\n    endpoints:\n      - address: \"{}\"\nroutes:\n  - upstream: a\n",
        mock.addr()
    );
    (TestGateway::start(&yaml).await, mock)
}

#[tokio::test]
async fn a_header_list_over_the_head_limit_is_refused_431_and_the_connection_goes_on() {
    let (gateway, mock) = gateway().await;
    let mut client = Client::connect(gateway.addr()).await;
    let big = vec![("x-big", "v".repeat(1500)), ("x-bigger", "w".repeat(1500))];
    client.request(1, &block("a.test", "/big", &big)).await;
    assert_eq!(client.status(1).await, 431);
    client.request(3, &block("a.test", "/fine", &[])).await;
    assert_eq!(client.status(3).await, 200);
    assert_eq!(mock.count_path("/big"), 0, "the refused request reached the upstream");
    let metrics = gateway.gateway().metrics().encode();
    assert!(metrics.contains("reason=\"head_too_large\"} 1"), "{metrics}");
}

#[tokio::test]
async fn a_malformed_request_resets_its_stream_and_is_counted() {
    let (gateway, mock) = gateway().await;
    let mut client = Client::connect(gateway.addr()).await;
    client.request(1, &block("a.test", "/bad", &[("connection", "keep-alive".into())])).await;
    let (_, code) = client.expect(RST_STREAM, 1).await;
    assert_eq!(code, 1u32.to_be_bytes(), "PROTOCOL_ERROR");
    client.request(3, &block("a.test", "/fine", &[])).await;
    assert_eq!(client.status(3).await, 200);
    assert_eq!(mock.count_path("/bad"), 0);
    let metrics = gateway.gateway().metrics().encode();
    let series = "weir_http2_errors_total{listener=\"main\",scope=\"stream\",code=\"PROTOCOL_ERROR\"} 1";
    assert!(metrics.contains(series), "{metrics}");
}
