//! What the forwarding stages report about a request's upstream attempts: the endpoint tried, how
//! many tries, when the first began, and where the request body counts its bytes. The notes live in
//! a request-scoped slot ([`observe`] wraps the route's stages), so a stage reports with one call
//! and no parameter threads through every stage in between.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use weir_telemetry::Counter;

/// Where a request body reports the bytes it streams: the route's counter, and the request's own
/// tally (made only when a body is sent upstream) when the access log wants it.
#[derive(Clone, Default)]
pub struct BodyMeters {
    pub route: Option<Counter>,
    pub request: Option<Arc<AtomicU64>>,
}

/// The notes of one request.
struct Notes {
    endpoint: Cell<Option<SocketAddr>>,
    attempts: Cell<u32>,
    first_attempt: Cell<Option<Instant>>,
    /// The kinds of fault injected, as bits of their index in `weir_telemetry::FAULT_KINDS`.
    faults: Cell<u8>,
    route_bytes: Option<Counter>,
    /// `Some` when the request's own byte count is wanted; filled by the first body.
    tally: Option<RefCell<Option<Arc<AtomicU64>>>>,
}

/// What the notes said when the route's stages finished.
#[derive(Debug, Clone, Default)]
pub struct Attempts {
    /// The endpoint of the last attempt.
    pub endpoint: Option<SocketAddr>,
    pub count: u32,
    pub first_at: Option<Instant>,
    /// Request body bytes sent upstream, when a tally was wanted and a body was made.
    pub body_bytes: Option<Arc<AtomicU64>>,
    /// The kinds of fault injected, as bits of their index in `weir_telemetry::FAULT_KINDS`.
    pub faults: u8,
}

tokio::task_local! {
    static NOTES: Notes;
}

/// Runs `stages` with fresh notes and returns their output with what was noted. Request bodies
/// count into `route_bytes`, and into a tally of their own when `want_tally`.
pub async fn observe<F: Future>(route_bytes: Option<Counter>, want_tally: bool, stages: F) -> (F::Output, Attempts) {
    let notes = Notes {
        endpoint: Cell::new(None),
        attempts: Cell::new(0),
        first_attempt: Cell::new(None),
        faults: Cell::new(0),
        route_bytes,
        tally: want_tally.then(RefCell::default),
    };
    NOTES
        .scope(notes, async {
            let output = stages.await;
            let attempts = NOTES.with(|notes| Attempts {
                endpoint: notes.endpoint.get(),
                count: notes.attempts.get(),
                first_at: notes.first_attempt.get(),
                body_bytes: notes.tally.as_ref().and_then(|tally| tally.borrow().clone()),
                faults: notes.faults.get(),
            });
            (output, attempts)
        })
        .await
}

/// Notes an attempt on `endpoint`, begun at `started`. Outside [`observe`] (in unit tests of a
/// stage) it does nothing.
pub fn attempt(endpoint: SocketAddr, started: Instant) {
    let _ = NOTES.try_with(|notes| {
        notes.endpoint.set(Some(endpoint));
        notes.attempts.set(notes.attempts.get() + 1);
        if notes.first_attempt.get().is_none() {
            notes.first_attempt.set(Some(started));
        }
    });
}

/// Notes a fault of the kind at `kind` in `weir_telemetry::FAULT_KINDS`.
pub fn fault(kind: usize) {
    let _ = NOTES.try_with(|notes| notes.faults.set(notes.faults.get() | (1 << kind)));
}

/// The meters a request body created now should count into.
pub fn body_meters() -> BodyMeters {
    let meters = |notes: &Notes| BodyMeters {
        route: notes.route_bytes.clone(),
        request: notes.tally.as_ref().map(|tally| tally.borrow_mut().get_or_insert_with(Arc::default).clone()),
    };
    NOTES.try_with(meters).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn attempts_are_counted_inside_the_scope_only() {
        let endpoint: SocketAddr = "127.0.0.1:9".parse().unwrap();
        attempt(endpoint, Instant::now());
        let (first, noted) = observe(None, true, async {
            let first = Instant::now();
            attempt("127.0.0.1:8".parse().unwrap(), first);
            tokio::task::yield_now().await;
            attempt(endpoint, Instant::now());
            let meters = body_meters();
            meters.request.unwrap().fetch_add(5, std::sync::atomic::Ordering::Relaxed);
            first
        })
        .await;
        assert_eq!(noted.body_bytes.unwrap().load(std::sync::atomic::Ordering::Relaxed), 5);
        assert_eq!(noted.count, 2);
        assert_eq!(noted.endpoint, Some(endpoint));
        // The first attempt's start, not a later one's.
        assert_eq!(noted.first_at, Some(first));
    }
}
