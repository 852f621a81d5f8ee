//! A grace for connections accepted just before a drain. hyper closes an HTTP/1 connection at once
//! when a graceful shutdown finds it before its first request, so a client whose connect landed in
//! the last moments before the listeners closed (or before a binary upgrade handed them over)
//! would lose the request it was sending. The drain waits until the newest connection has had
//! [`FIRST_REQUEST_GRACE`] to send its request, then closes the idle ones.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How long a new connection has to send its first request once a drain begins.
pub const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(500);

/// When the newest connection was accepted, across every listener of one server.
#[derive(Debug)]
pub(crate) struct LastAccept {
    base: Instant,
    /// Nanoseconds after `base`; 0 before the first accept.
    nanos: AtomicU64,
}

impl LastAccept {
    pub(crate) fn new() -> Self {
        LastAccept { base: Instant::now(), nanos: AtomicU64::new(0) }
    }

    /// Notes a connection accepted now.
    pub(crate) fn record(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1);
        self.nanos.store(nanos, Ordering::Relaxed);
    }

    /// Completes once the newest connection is `grace` old (at once when there was none).
    pub(crate) async fn grace_passed(&self, grace: Duration) {
        let nanos = self.nanos.load(Ordering::Relaxed);
        if nanos == 0 {
            return;
        }
        tokio::time::sleep_until(self.base + Duration::from_nanos(nanos) + grace).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_drain_waits_for_the_newest_connection_only() {
        let last = LastAccept::new();
        let start = Instant::now();
        last.grace_passed(FIRST_REQUEST_GRACE).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "no connection, no wait");

        tokio::time::advance(Duration::from_secs(1)).await;
        last.record();
        tokio::time::advance(Duration::from_millis(200)).await;
        let before = Instant::now();
        last.grace_passed(FIRST_REQUEST_GRACE).await;
        assert_eq!(before.elapsed(), FIRST_REQUEST_GRACE - Duration::from_millis(200));

        let later = Instant::now();
        last.grace_passed(FIRST_REQUEST_GRACE).await;
        assert_eq!(later.elapsed(), Duration::ZERO, "an old connection needs no grace");
    }
}
