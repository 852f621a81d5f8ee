//! Raw bytes over TCP, for requests no well-behaved client would send.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What came back on a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub bytes: Vec<u8>,
}

impl RawResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The status code of the first response, if one arrived.
    pub fn status(&self) -> Option<u16> {
        let text = self.text();
        let line = text.lines().next()?;
        line.split(' ').nth(1)?.parse().ok()
    }

    /// How many responses the bytes hold.
    pub fn response_count(&self) -> usize {
        self.text().matches("HTTP/1.1 ").count()
    }
}

/// Writes `request` and reads until the server closes the connection (bounded by the test timeout).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write raw request");
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(crate::TEST_TIMEOUT, stream.read_to_end(&mut bytes)).await;
    match read {
        Ok(_) => RawResponse { bytes },
        Err(_) => panic!("server kept the connection open; got so far: {:?}", String::from_utf8_lossy(&bytes)),
    }
}
