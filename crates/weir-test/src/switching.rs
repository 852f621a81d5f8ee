//! An upstream that switches protocols (101) on every request and then echoes bytes: the far end
//! of a WebSocket tunnel, without a WebSocket implementation. Also a client that opens a tunnel.

use std::net::SocketAddr;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// A WebSocket upgrade request head.
pub const UPGRADE_REQUEST: &[u8] =
    b"GET /chat HTTP/1.1\r\nHost: chat.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Starts the upstream; every request head it gets is sent on the returned channel.
pub async fn switching_echo() -> (SocketAddr, UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("an address");
    let (heads, received) = unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                let _ = heads.send(read_head(&mut stream).await);
                let answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
                if stream.get_mut().write_all(answer).await.is_ok() {
                    let (mut reader, mut writer) = stream.into_inner().into_split();
                    let _ = tokio::io::copy(&mut reader, &mut writer).await;
                }
            });
        }
    });
    (addr, received)
}

/// Reads an HTTP head up to its empty line (or the end of the stream).
pub async fn read_head<R: AsyncBufRead + Unpin>(reader: &mut R) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
            return head;
        }
        head.push_str(&line);
    }
}

/// Sends a WebSocket upgrade to `addr` and returns the connection with the answer's head read.
pub async fn open_tunnel(addr: SocketAddr) -> (BufReader<TcpStream>, String) {
    let mut client = BufReader::new(TcpStream::connect(addr).await.expect("connect"));
    client.get_mut().write_all(UPGRADE_REQUEST).await.expect("send the upgrade");
    let head = read_head(&mut client).await;
    (client, head)
}
