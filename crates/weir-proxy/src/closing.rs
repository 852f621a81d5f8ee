//! Closing connections at the end of a drain. `Drain` counts the open connections and tells them
//! when to stop: an HTTP/1.1 connection closes at once if it is between requests (a request under
//! way is answered first), an HTTP/2 one sends GOAWAY and finishes its streams. A connection just
//! accepted whose first request is on its way, or a keep-alive one whose client is sending its next
//! request, would see the connection close under its request. So while the gateway drains,
//! answers to HTTP/1 requests carry `connection: close` (the client opens a new connection, to
//! another instance or to the process that took the sockets over), and once the listeners are
//! closed the drain gives open connections up to [`CLOSE_GRACE`] to get such an answer before the
//! graceful shutdown closes what is still idle.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::header::{CONNECTION, HeaderValue};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long connections still open when the listeners close have to send one more request.
pub const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// How often the grace checks whether every connection has closed already.
const CHECK_EVERY: Duration = Duration::from_millis(10);

/// The open connections of a server, and the signal that ends them.
#[derive(Clone, Default)]
pub(crate) struct Drain {
    inner: Arc<DrainInner>,
}

#[derive(Default)]
struct DrainInner {
    stop: CancellationToken,
    open: AtomicUsize,
    all_closed: Notify,
}

/// Held by a connection while it is open.
pub(crate) struct Watch {
    inner: Arc<DrainInner>,
}

impl Drain {
    /// Counts a connection in until the returned watch is dropped.
    pub(crate) fn watch(&self) -> Watch {
        self.inner.open.fetch_add(1, Ordering::Relaxed);
        Watch { inner: self.inner.clone() }
    }

    /// Cancelled when connections should finish.
    pub(crate) fn stopping(&self) -> &CancellationToken {
        &self.inner.stop
    }

    /// Connections open now.
    pub(crate) fn count(&self) -> usize {
        self.inner.open.load(Ordering::Acquire)
    }

    /// Tells every connection to finish, and waits until all have closed.
    pub(crate) async fn shutdown(&self) {
        self.inner.stop.cancel();
        loop {
            let closed = self.inner.all_closed.notified();
            if self.count() == 0 {
                return;
            }
            closed.await;
        }
    }
}

impl Watch {
    /// Cancelled when the connection should finish.
    pub(crate) fn stopping(&self) -> &CancellationToken {
        &self.inner.stop
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.inner.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.all_closed.notify_waiters();
        }
    }
}

/// Waits until no connection is open or `grace` has passed.
pub(crate) async fn close_grace(drain: &Drain, grace: Duration) {
    let deadline = Instant::now() + grace;
    while drain.count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(CHECK_EVERY.min(deadline - Instant::now())).await;
    }
}

/// Marks an HTTP/1 answer as the connection's last while the gateway drains. A protocol switch
/// (WebSocket) keeps its `connection: upgrade`: the connection is the tunnel's from then on.
pub(crate) fn close_when_draining<B>(draining: bool, http1: bool, response: &mut http::Response<B>) {
    if draining && http1 && response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn no_open_connection_means_no_wait() {
        let drain = Drain::default();
        let start = Instant::now();
        close_grace(&drain, CLOSE_GRACE).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[test]
    fn only_http1_answers_while_draining_say_close() {
        for (draining, http1, close) in [(true, true, true), (true, false, false), (false, true, false)] {
            let mut response = http::Response::new(());
            close_when_draining(draining, http1, &mut response);
            assert_eq!(response.headers().contains_key(CONNECTION), close, "{draining} {http1}");
        }
        let mut switching = http::Response::builder().status(101).header(CONNECTION, "upgrade").body(()).unwrap();
        close_when_draining(true, true, &mut switching);
        assert_eq!(switching.headers()[CONNECTION], "upgrade");
    }
}
