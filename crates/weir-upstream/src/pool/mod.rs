//! Connections to one endpoint, HTTP/1.1 or HTTP/2.
//!
//! An HTTP/1.1 connection carries one request at a time. Between requests it waits on an idle list:
//! a request takes the most recently returned one (warm, least likely to have been closed by the
//! peer) or opens a new one, and its response body gives the connection back when the body ends.
//!
//! An HTTP/2 connection is shared: a request takes a stream on the oldest connection with a stream
//! to spare (up to `http2.max_concurrent_streams`), so traffic packs onto few connections and spare
//! ones go idle and close. Requests that find every stream taken while a connection is being made
//! wait for it instead of each making their own.
//!
//! Locks are held only for a push, a pop or a scan, never across an await. Open connections are
//! capped: a request that finds the endpoint at its cap waits, up to the pool's acquire timeout,
//! for a connection or a stream to come back, then fails with a reason of its own.

mod connect;
mod http2;
mod pooled;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use tokio::sync::Notify;
use tokio::time::Instant;

pub use pooled::{Connection, PooledBody, UpstreamBodyError};

use crate::error::UpstreamError;
use crate::http1::Http1Connection;
use connect::Sender;
use http2::SharedConnections;
use pooled::Checkout;

/// How connections to an endpoint are made and kept.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub connect_timeout: Duration,
    /// Idle HTTP/1.1 connections kept.
    pub max_idle: usize,
    /// A connection unused for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once, idle or busy.
    pub max_connections: usize,
    /// How long a request waits for a connection when the endpoint is at `max_connections`.
    pub acquire_timeout: Duration,
    /// TCP keep-alive probes on upstream connections after this much silence (`None`: off).
    pub tcp_keepalive: Option<Duration>,
    /// Connect over TLS (`None`: cleartext).
    pub tls: Option<UpstreamTls>,
    /// The HTTP version spoken to the endpoints.
    pub protocol: UpstreamProtocol,
    pub http2: Http2Settings,
}

/// The HTTP version spoken to an upstream's endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    /// HTTP/2: negotiated by ALPN over TLS, with prior knowledge in cleartext.
    Http2,
    /// Whatever the endpoint picks by ALPN, HTTP/2 preferred (TLS only).
    Auto,
}

impl UpstreamProtocol {
    /// The ALPN protocols offered in the TLS handshake, most preferred first.
    pub fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
            UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
            UpstreamProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }
}

/// How HTTP/2 connections to an endpoint are used.
#[derive(Debug, Clone)]
pub struct Http2Settings {
    /// Streams weir opens at once on one connection (the endpoint may allow fewer).
    pub max_concurrent_streams: usize,
    /// A PING after this much silence on a connection (`None`: none).
    pub keepalive_interval: Option<Duration>,
    /// A connection whose PING goes unanswered this long is closed.
    pub keepalive_timeout: Duration,
}

impl Default for Http2Settings {
    fn default() -> Self {
        Http2Settings {
            max_concurrent_streams: 100,
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

/// TLS to an upstream: one client configuration for all its endpoints, so sessions resume across
/// connections, and the name sent in SNI and verified.
#[derive(Clone)]
pub struct UpstreamTls {
    pub connector: tokio_rustls::TlsConnector,
    pub server_name: rustls_pki_types::ServerName<'static>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

/// The connections to one endpoint.
pub struct EndpointPool<B> {
    addr: SocketAddr,
    settings: PoolSettings,
    idle: Mutex<VecDeque<IdleConnection>>,
    shared: SharedConnections<B>,
    open: Arc<OpenCount>,
}

struct IdleConnection {
    connection: Box<Http1Connection>,
    slot: Slot,
    since: Instant,
}

/// Connections open to an endpoint, and a signal for requests waiting for a connection or a stream
/// to come back, or for a connection being made.
#[derive(Default)]
struct OpenCount {
    count: AtomicUsize,
    freed: Notify,
}

/// One connection's place in the endpoint's cap, given back when the connection is dropped.
struct Slot(Arc<OpenCount>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Relaxed);
        self.0.freed.notify_one();
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> EndpointPool<B> {
    pub fn new(addr: SocketAddr, settings: PoolSettings) -> Self {
        let shared = SharedConnections::new(settings.protocol == UpstreamProtocol::Http2);
        EndpointPool { addr, settings, idle: Mutex::new(VecDeque::new()), shared, open: Arc::default() }
    }

    /// Connections waiting idle: HTTP/1.1 ones on the idle list, HTTP/2 ones with no stream open.
    pub fn idle_count(&self) -> usize {
        self.lock_idle().len() + self.shared.idle_count()
    }

    /// Connections open, idle or busy.
    pub fn open_count(&self) -> usize {
        self.open.count.load(Ordering::Relaxed)
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, VecDeque<IdleConnection>> {
        // A panic while holding this lock cannot leave the list inconsistent: take it anyway.
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The most recently used idle connection that is still open (looked at without waiting).
    fn take_idle(&self) -> Option<(Box<Http1Connection>, Slot)> {
        let now = Instant::now();
        loop {
            let mut idle = self.lock_idle().pop_back()?;
            if now.duration_since(idle.since) < self.settings.idle_timeout && idle.connection.is_usable() {
                return Some((idle.connection, idle.slot));
            }
        }
    }

    fn put_idle(&self, connection: Box<Http1Connection>, slot: Slot) {
        let now = Instant::now();
        let mut idle = self.lock_idle();
        while idle.front().is_some_and(|c| now.duration_since(c.since) >= self.settings.idle_timeout) {
            idle.pop_front();
        }
        if idle.len() < self.settings.max_idle {
            idle.push_back(IdleConnection { connection, slot, since: now });
            drop(idle);
            self.open.freed.notify_one();
        }
    }
}

impl<B> EndpointPool<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A connection ready for a request: pooled, or new. Getting it first, before the request is
    /// built, lets a caller whose endpoint cannot be reached try another with the request intact.
    pub async fn connection(self: &Arc<Self>) -> Result<Connection<B>, UpstreamError> {
        Ok(Connection::new(self.checkout().await?, self.clone()))
    }

    /// Sends a request on a pooled or new connection.
    pub async fn send(self: &Arc<Self>, request: Request<B>) -> Result<Response<PooledBody<B>>, UpstreamError> {
        self.connection().await?.send(request).await
    }

    /// A stream on a shared connection, an idle connection, else a new one if the endpoint is under
    /// its cap, else the first of those to turn up within the acquire timeout.
    async fn checkout(&self) -> Result<Checkout<B>, UpstreamError> {
        // The usual case on a warm pool, without registering to wait (or reading the clock).
        if let Some(reused) = self.take_open() {
            return Ok(reused);
        }
        let deadline = Instant::now() + self.settings.acquire_timeout;
        let max_streams = self.settings.http2.max_concurrent_streams;
        loop {
            let freed = self.open.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a connection freed in between still wakes this request.
            freed.as_mut().enable();
            if let Some(reused) = self.take_open() {
                return Ok(reused);
            }
            let waiting = self.shared.wait_for_connect(max_streams);
            if waiting.is_none()
                && let Some(slot) = self.reserve_slot()
            {
                // Boxed: connecting is rare on a warm pool, and its future (TCP, TLS, HTTP handshakes)
                // would otherwise make every checkout's future, moved on each request, kilobytes large.
                return Box::pin(self.connect_new(slot)).await;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(match waiting {
                    Some(_) => UpstreamError::ConnectTimeout { addr: self.addr },
                    None => UpstreamError::PoolExhausted { addr: self.addr, max: self.settings.max_connections },
                });
            }
        }
    }

    /// A new connection, taking the place `slot` reserved. Requests that wait meanwhile for an
    /// HTTP/2 connection are woken when it is made (or has failed).
    async fn connect_new(&self, slot: Slot) -> Result<Checkout<B>, UpstreamError> {
        let _connecting = self.shared.connecting(&self.open);
        match self.connect().await? {
            Sender::Http1(connection) => Ok(Checkout::Http1 { connection, slot, reused: false }),
            Sender::Http2(sender) => {
                Ok(Checkout::Http2 { stream: self.shared.add(sender, slot, &self.open), reused: false })
            }
        }
    }

    /// A stream on a shared connection, else an idle connection, if there is one.
    fn take_open(&self) -> Option<Checkout<B>> {
        let max_streams = self.settings.http2.max_concurrent_streams;
        if let Some(stream) = self.shared.take_stream(&self.open, max_streams, self.settings.idle_timeout) {
            return Some(Checkout::Http2 { stream, reused: true });
        }
        let (connection, slot) = self.take_idle()?;
        Some(Checkout::Http1 { connection, slot, reused: true })
    }

    fn reserve_slot(&self) -> Option<Slot> {
        let max = self.settings.max_connections;
        self.open.count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Slot(self.open.clone()))
    }
}

#[cfg(test)]
mod tests;
