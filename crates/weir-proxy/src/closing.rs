//! Closing connections at the end of a drain, for HTTP/1.1. hyper closes an HTTP/1 connection at
//! once when a graceful shutdown finds it between requests, including one just accepted whose
//! first request is on its way and a keep-alive connection whose client is sending its next
//! request: the client sees the connection close under its request. So while the gateway drains,
//! answers to HTTP/1 requests carry `connection: close` (the client opens a new connection, to
//! another instance or to the process that took the sockets over), and once the listeners are
//! closed the drain gives open connections up to [`CLOSE_GRACE`] to get such an answer before the
//! graceful shutdown closes what is still idle.

use std::time::Duration;

use http::header::{CONNECTION, HeaderValue};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::time::Instant;

/// How long connections still open when the listeners close have to send one more request.
pub const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// How often the grace checks whether every connection has closed already.
const CHECK_EVERY: Duration = Duration::from_millis(10);

/// Waits until no connection is open or `grace` has passed.
pub(crate) async fn close_grace(graceful: &GracefulShutdown, grace: Duration) {
    let deadline = Instant::now() + grace;
    while graceful.count() > 0 && Instant::now() < deadline {
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
        let graceful = GracefulShutdown::new();
        let start = Instant::now();
        close_grace(&graceful, CLOSE_GRACE).await;
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
