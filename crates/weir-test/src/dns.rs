//! A DNS server for tests: answers A and AAAA queries over UDP from records the test sets and
//! changes at will, so discovery can be tested against answers that change. Unknown names get
//! NXDOMAIN.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

#[derive(Default)]
struct Records {
    /// `None`: answer SERVFAIL, as a resolver in trouble does.
    by_name: Mutex<HashMap<String, Option<Vec<IpAddr>>>>,
    queries: AtomicUsize,
}

/// A DNS server on 127.0.0.1 with an ephemeral port.
pub struct DnsServer {
    addr: SocketAddr,
    records: Arc<Records>,
    task: tokio::task::JoinHandle<()>,
}

impl DnsServer {
    pub async fn start() -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind test DNS server");
        let addr = socket.local_addr().expect("DNS server address");
        let records = Arc::new(Records::default());
        let task = tokio::spawn(serve(socket, records.clone()));
        DnsServer { addr, records, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the addresses `name` resolves to (lower-case, without a trailing dot).
    pub fn set(&self, name: &str, addrs: &[IpAddr]) {
        self.records.by_name.lock().unwrap().insert(name.to_string(), Some(addrs.to_vec()));
    }

    /// Makes queries for `name` fail with SERVFAIL.
    pub fn fail(&self, name: &str) {
        self.records.by_name.lock().unwrap().insert(name.to_string(), None);
    }

    /// Queries answered so far.
    pub fn queries(&self) -> usize {
        self.records.queries.load(Ordering::SeqCst)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: UdpSocket, records: Arc<Records>) {
    let mut buf = vec![0; 1500];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else { continue };
        if let Some(reply) = answer(&buf[..len], &records) {
            records.queries.fetch_add(1, Ordering::SeqCst);
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

/// The reply to one query, or `None` for anything that is not a simple query.
fn answer(query: &[u8], records: &Records) -> Option<Vec<u8>> {
    let (name, question_end) = question_name(query)?;
    let kind = u16::from_be_bytes([*query.get(question_end)?, *query.get(question_end + 1)?]);
    let question = query.get(..question_end + 4)?;
    let found = records.by_name.lock().unwrap().get(&name).cloned();
    let matching: Vec<IpAddr> = found
        .iter()
        .flatten()
        .flatten()
        .copied()
        .filter(|ip| matches!((kind, ip), (1, IpAddr::V4(_)) | (28, IpAddr::V6(_))))
        .collect();
    let mut reply = question.to_vec();
    reply[2] = 0x81; // a response, recursion desired echoed
    // Recursion available; NXDOMAIN for an unknown name, SERVFAIL for a failing one.
    reply[3] = match found {
        Some(Some(_)) => 0x80,
        Some(None) => 0x82,
        None => 0x83,
    };
    reply[6..8].copy_from_slice(&(matching.len() as u16).to_be_bytes());
    reply[8..12].fill(0);
    for ip in matching {
        reply.extend_from_slice(&[0xc0, 12]);
        reply.extend_from_slice(&kind.to_be_bytes());
        reply.extend_from_slice(&[0, 1, 0, 0, 0, 5]);
        let data: Vec<u8> = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        reply.extend_from_slice(&(data.len() as u16).to_be_bytes());
        reply.extend_from_slice(&data);
    }
    Some(reply)
}

/// The question's name, lower-case, and where its type field starts.
fn question_name(query: &[u8]) -> Option<(String, usize)> {
    if query.len() < 12 || query[4..6] != [0, 1] {
        return None;
    }
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        if len == 0 {
            return Some((labels.join(".").to_ascii_lowercase(), at + 1));
        }
        labels.push(String::from_utf8_lossy(query.get(at + 1..at + 1 + len)?).into_owned());
        at += 1 + len;
    }
}
