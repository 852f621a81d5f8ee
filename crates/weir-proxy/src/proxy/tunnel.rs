//! WebSocket tunnels. The HTTP/1.1 server marks a WebSocket upgrade request with
//! [`TunnelRequested`] and reads no other request after it. On a route that allows
//! tunnels the proxy keeps the upgrade headers for the upstream, and when the upstream answers 101
//! the two connections are spliced in a task of their own: bytes are copied both ways, counted, and
//! the tunnel is closed after `idle_timeout` of silence. Any other answer closes the client
//! connection after the response.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::header::{CONNECTION, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::Instant;
use weir_telemetry::{Counter, TunnelMetrics};
use weir_upstream::{PendingUpgrade, Upgraded};

use crate::http1::{ClientSwitch, Switched};

/// Marks a WebSocket upgrade request (a bodiless HTTP/1.1 `GET` asking for `websocket`).
#[derive(Debug, Clone, Copy)]
pub struct TunnelRequested;

/// How long the two sides of a tunnel may take to finish switching protocols.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(30);

/// A route's tunnel settings, compiled at load.
pub struct TunnelRoute {
    /// Silence after which a tunnel is closed; `None` never closes it for silence.
    pub idle_timeout: Option<Duration>,
    pub metrics: TunnelMetrics,
}

/// A client's upgrade, taken from its request before the head is rebuilt for the upstream.
pub struct ClientUpgrade {
    switched: oneshot::Receiver<Switched>,
    protocol: HeaderValue,
}

impl ClientUpgrade {
    /// The upgrade of a WebSocket upgrade request, when the route tunnels.
    pub fn take(parts: &mut Parts, route: Option<&TunnelRoute>) -> Option<ClientUpgrade> {
        parts.extensions.remove::<TunnelRequested>()?;
        route?;
        let protocol = parts.headers.get(UPGRADE)?.clone();
        Some(ClientUpgrade { switched: parts.extensions.remove::<ClientSwitch>()?.take()?, protocol })
    }

    /// Puts the upgrade headers (hop-by-hop, so the upstream head dropped them) back for the upstream.
    pub fn ask_upstream(&self, headers: &mut HeaderMap) {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, self.protocol.clone());
    }

    /// When the upstream switched protocols, restores the upgrade headers on the response and
    /// splices the connections. `protocol` is the upstream's `Upgrade` value, read before the
    /// hop-by-hop headers were removed.
    pub fn splice<B>(self, response: &mut Response<B>, protocol: Option<HeaderValue>, route: &TunnelRoute) {
        let Some(protocol) = protocol.filter(|_| response.status() == StatusCode::SWITCHING_PROTOCOLS) else {
            return;
        };
        let Some(upstream) = response.extensions_mut().remove::<PendingUpgrade>().and_then(|p| p.take()) else {
            // Only an HTTP/1.1 upstream hands its connection over; none other answers 101.
            tracing::debug!("websocket: a 101 without the upstream's connection, not tunneled");
            return;
        };
        response.headers_mut().insert(CONNECTION, HeaderValue::from_static("upgrade"));
        response.headers_mut().insert(UPGRADE, protocol);
        let (idle, metrics) = (route.idle_timeout, route.metrics.clone());
        tokio::spawn(run(self.switched, upstream, idle, metrics));
    }
}

/// Carries bytes both ways until either side closes, an error, or `idle` of silence.
async fn run(client: oneshot::Receiver<Switched>, upstream: Upgraded, idle: Option<Duration>, metrics: TunnelMetrics) {
    let switched = tokio::time::timeout(SWITCH_TIMEOUT, client).await;
    let client = match switched {
        Ok(Ok(client)) => client,
        Ok(Err(_)) => return tracing::debug!("websocket: the client connection closed before the switch"),
        Err(_) => return tracing::debug!("websocket: the switch took too long"),
    };
    metrics.opened.inc();
    metrics.open.inc();
    let activity = Arc::new(Activity::new());
    let mut client = Metered::new(client, metrics.upstream_bytes.clone(), activity.clone());
    let mut upstream = Metered::new(upstream, metrics.downstream_bytes.clone(), activity.clone());
    let copied = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    match idle {
        None => drop(copied.await),
        Some(idle) => tokio::select! {
            result = copied => drop(result),
            () = activity.silent_for(idle) => {
                metrics.idle_closed.inc();
                tracing::debug!(?idle, "websocket: tunnel idle, closed");
            }
        },
    }
    metrics.open.dec();
}

/// When a tunnel last carried a byte, in milliseconds from its start.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity { start: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Completes once nothing has moved for `idle`.
    async fn silent_for(&self, idle: Duration) {
        loop {
            let due = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// One side of a tunnel: counts the bytes read from it and notes activity both ways.
struct Metered<T> {
    io: T,
    read_bytes: Counter,
    activity: Arc<Activity>,
}

impl<T> Metered<T> {
    fn new(io: T, read_bytes: Counter, activity: Arc<Activity>) -> Self {
        Metered { io, read_bytes, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let read = buf.filled().len() - before;
        if read > 0 {
            this.read_bytes.inc_by(read as u64);
            this.activity.touch();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.io).poll_write(cx, buf))?;
        this.activity.touch();
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
