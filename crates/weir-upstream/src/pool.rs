//! Keep-alive HTTP/1.1 connections to one endpoint. A request takes the most recently returned idle
//! connection (warm, least likely to have been closed by the peer) or opens a new one; its response
//! body gives the connection back when the body ends.
//!
//! The idle list sits behind a mutex held only for a push or a pop, never across an await. Open
//! connections are capped: a request that finds the endpoint at its cap waits, up to the pool's
//! acquire timeout, for a connection to come back or close, then fails with a reason of its own.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::UpstreamError;

/// How connections to an endpoint are made and kept.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub connect_timeout: Duration,
    pub max_idle: usize,
    pub idle_timeout: Duration,
    /// Connections open at once, idle or busy.
    pub max_connections: usize,
    /// How long a request waits for a connection when the endpoint is at `max_connections`.
    pub acquire_timeout: Duration,
    /// TCP keep-alive probes on upstream connections after this much silence (`None`: off).
    pub tcp_keepalive: Option<Duration>,
    /// Connect over TLS (`None`: cleartext).
    pub tls: Option<UpstreamTls>,
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
    idle: Mutex<VecDeque<IdleConnection<B>>>,
    open: Arc<OpenCount>,
}

struct IdleConnection<B> {
    sender: SendRequest<B>,
    slot: Slot,
    since: Instant,
}

/// Connections open to an endpoint, and a signal for requests waiting for one to come back or close.
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

/// A connection taken from the pool or newly made.
struct Checkout<B> {
    sender: SendRequest<B>,
    slot: Slot,
    reused: bool,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> EndpointPool<B> {
    pub fn new(addr: SocketAddr, settings: PoolSettings) -> Self {
        EndpointPool { addr, settings, idle: Mutex::new(VecDeque::new()), open: Arc::default() }
    }

    /// Connections waiting idle.
    pub fn idle_count(&self) -> usize {
        self.lock_idle().len()
    }

    /// Connections open, idle or busy.
    pub fn open_count(&self) -> usize {
        self.open.count.load(Ordering::Relaxed)
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, VecDeque<IdleConnection<B>>> {
        // A panic while holding this lock cannot leave the list inconsistent: take it anyway.
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<B> EndpointPool<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A connection ready for a request: pooled, or new. Getting it first, before the request is
    /// built, lets a caller whose endpoint cannot be reached try another with the request intact.
    pub async fn connection(self: &Arc<Self>) -> Result<Connection<B>, UpstreamError> {
        let deadline = Instant::now() + self.settings.acquire_timeout;
        loop {
            let Checkout { mut sender, slot, reused } = self.checkout(deadline).await?;
            match sender.ready().await {
                Ok(()) => return Ok(Connection { checkout: Checkout { sender, slot, reused }, pool: self.clone() }),
                // It closed while idle: take another.
                Err(_) if reused => continue,
                Err(source) => return Err(UpstreamError::Exchange { addr: self.addr, source }),
            }
        }
    }

    /// Sends a request on a pooled or new connection.
    pub async fn send(self: &Arc<Self>, request: Request<B>) -> Result<Response<PooledBody<B>>, UpstreamError> {
        self.connection().await?.send(request).await
    }

    /// An idle connection, else a new one if the endpoint is under its cap, else the first of those
    /// to turn up before `deadline`.
    async fn checkout(&self, deadline: Instant) -> Result<Checkout<B>, UpstreamError> {
        loop {
            let freed = self.open.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a connection freed in between still wakes this request.
            freed.as_mut().enable();
            if let Some((sender, slot)) = self.take_idle() {
                return Ok(Checkout { sender, slot, reused: true });
            }
            if let Some(slot) = self.reserve_slot() {
                return Ok(Checkout { sender: self.connect().await?, slot, reused: false });
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(UpstreamError::PoolExhausted { addr: self.addr, max: self.settings.max_connections });
            }
        }
    }

    fn reserve_slot(&self) -> Option<Slot> {
        let max = self.settings.max_connections;
        self.open.count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Slot(self.open.clone()))
    }

    async fn connect(&self) -> Result<SendRequest<B>, UpstreamError> {
        let addr = self.addr;
        let stream = tokio::time::timeout(self.settings.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout { addr })?
            .map_err(|source| UpstreamError::Connect { addr, source })?;
        let _ = stream.set_nodelay(true);
        if let Some(idle) = self.settings.tcp_keepalive {
            let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle));
        }
        let Some(tls) = &self.settings.tls else { return http1_handshake(addr, stream).await };
        let connecting = tls.connector.connect(tls.server_name.clone(), stream);
        let stream = tokio::time::timeout(self.settings.connect_timeout, connecting)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout { addr })?
            .map_err(|source| UpstreamError::Tls { addr, source })?;
        http1_handshake(addr, stream).await
    }

    fn take_idle(&self) -> Option<(SendRequest<B>, Slot)> {
        let now = Instant::now();
        let mut idle = self.lock_idle();
        while let Some(connection) = idle.pop_back() {
            if !connection.sender.is_closed() && now.duration_since(connection.since) < self.settings.idle_timeout {
                return Some((connection.sender, connection.slot));
            }
        }
        None
    }

    fn put_idle(&self, sender: SendRequest<B>, slot: Slot) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lock_idle();
        while idle.front().is_some_and(|c| now.duration_since(c.since) >= self.settings.idle_timeout) {
            idle.pop_front();
        }
        if idle.len() < self.settings.max_idle {
            idle.push_back(IdleConnection { sender, slot, since: now });
            drop(idle);
            self.open.freed.notify_one();
        }
    }
}

/// A connection taken for one request.
pub struct Connection<B> {
    checkout: Checkout<B>,
    pool: Arc<EndpointPool<B>>,
}

impl<B> Connection<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Returns the connection unused: it was ready and nothing was sent on it, so it goes back
    /// to the idle list for the next request.
    pub fn release(self) {
        let Connection { checkout, pool } = self;
        pool.put_idle(checkout.sender, checkout.slot);
    }

    /// Sends the request. One that a reused connection could not take (it closed just now) is sent
    /// again on another connection: it was never written.
    pub async fn send(self, mut request: Request<B>) -> Result<Response<PooledBody<B>>, UpstreamError> {
        let Connection { checkout, pool } = self;
        let Checkout { mut sender, mut slot, mut reused } = checkout;
        loop {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response.map(|body| PooledBody::new(body, sender, slot, pool))),
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(UpstreamError::Exchange { addr: pool.addr, source: failed.into_error() }),
                },
            }
            let next = pool.connection().await?;
            Checkout { sender, slot, reused } = next.checkout;
        }
    }
}

/// An upstream response body that returns its connection to the pool when it has been read to the
/// end. Dropped early, the connection is dropped with it (it may still hold unread bytes).
pub struct PooledBody<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    inner: Incoming,
    giveback: Option<(SendRequest<B>, Slot, Arc<EndpointPool<B>>)>,
}

impl<B> PooledBody<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn new(inner: Incoming, sender: SendRequest<B>, slot: Slot, pool: Arc<EndpointPool<B>>) -> Self {
        let mut body = PooledBody { inner, giveback: Some((sender, slot, pool)) };
        if body.inner.is_end_stream() {
            body.give_back();
        }
        body
    }

    fn give_back(&mut self) {
        if let Some((sender, slot, pool)) = self.giveback.take() {
            pool.put_idle(sender, slot);
        }
    }
}

impl<B> Body for PooledBody<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.giveback = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for PooledBody<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.give_back();
        }
    }
}

/// Starts HTTP/1.1 on a connected stream, cleartext or TLS, and drives the connection in a task.
async fn http1_handshake<B, S>(addr: SocketAddr, stream: S) -> Result<SendRequest<B>, UpstreamError>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| UpstreamError::Handshake { addr, source })?;
    tokio::spawn(async move {
        // With upgrades, a 101 hands the connection over to the caller (a WebSocket tunnel).
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(endpoint = %addr, %error, "upstream connection ended");
        }
    });
    Ok(sender)
}
