//! The HTTP/2 connections of one endpoint, shared by the requests that have a stream on them.
//!
//! A request takes a stream on the oldest open connection with fewer than `max_concurrent_streams`
//! streams (packing onto few connections); a connection with no stream for the pool's idle timeout
//! is closed when the list is next scanned. While an HTTP/2 connection is being made, requests that
//! find no stream free wait for it, as many as it will have streams for; more than that make a
//! connection of their own.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::client::conn::http2::SendRequest;
use tokio::time::Instant;

use super::{OpenCount, Slot};

/// The shared connections of one endpoint.
pub(super) struct SharedConnections<B> {
    list: Mutex<Vec<Arc<SharedConnection<B>>>>,
    /// HTTP/2 connections being made, and requests waiting for them.
    connecting: AtomicUsize,
    waiting: AtomicUsize,
    /// The endpoint speaks HTTP/2: set from the start when configured, or when ALPN picked it.
    speaks_http2: AtomicBool,
    epoch: Instant,
}

/// One HTTP/2 connection and how many streams are open on it.
pub(super) struct SharedConnection<B> {
    sender: SendRequest<B>,
    streams: AtomicUsize,
    /// Milliseconds since the pool's epoch when its last stream ended.
    idle_since: AtomicU64,
    epoch: Instant,
    _slot: Slot,
}

/// A stream taken on a shared connection: given back when dropped.
pub(crate) struct Stream<B> {
    connection: Arc<SharedConnection<B>>,
    open: Arc<OpenCount>,
}

/// Counts a request as waiting for a connection being made, until dropped.
pub(super) struct Waiting<'a>(&'a AtomicUsize);

/// Marks an HTTP/2 connection as being made, until dropped: then wakes the requests waiting for it.
pub(super) struct Connecting<'a> {
    connecting: Option<&'a AtomicUsize>,
    open: &'a OpenCount,
}

impl<B> SharedConnections<B> {
    pub(super) fn new(speaks_http2: bool) -> Self {
        SharedConnections {
            list: Mutex::new(Vec::new()),
            connecting: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            speaks_http2: AtomicBool::new(speaks_http2),
            epoch: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<SharedConnection<B>>>> {
        // The list holds no invariant a panic could break: take it anyway.
        self.list.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Connections open with no stream on them.
    pub(super) fn idle_count(&self) -> usize {
        self.lock().iter().filter(|c| c.streams.load(Ordering::Relaxed) == 0).count()
    }

    /// A stream on the oldest connection with one to spare. Closed connections, and ones idle for
    /// `idle_timeout`, leave the list on the way.
    pub(super) fn take_stream(&self, open: &Arc<OpenCount>, max: usize, idle_timeout: Duration) -> Option<Stream<B>> {
        if !self.speaks_http2.load(Ordering::Relaxed) {
            return None;
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        let idle_limit = idle_timeout.as_millis() as u64;
        let mut list = self.lock();
        list.retain(|c| {
            let idle = c.streams.load(Ordering::Acquire) == 0
                && now.saturating_sub(c.idle_since.load(Ordering::Relaxed)) >= idle_limit;
            !c.sender.is_closed() && !idle
        });
        // Streams are only added under the lock, so one seen below `max` stays below it.
        let connection = list.iter().find(|c| c.streams.load(Ordering::Relaxed) < max)?;
        connection.streams.fetch_add(1, Ordering::Relaxed);
        Some(Stream { connection: connection.clone(), open: open.clone() })
    }

    /// Adds a new connection with one stream taken on it.
    pub(super) fn add(&self, sender: SendRequest<B>, slot: Slot, open: &Arc<OpenCount>) -> Stream<B> {
        self.speaks_http2.store(true, Ordering::Relaxed);
        let connection = Arc::new(SharedConnection {
            sender,
            streams: AtomicUsize::new(1),
            idle_since: AtomicU64::new(0),
            epoch: self.epoch,
            _slot: slot,
        });
        self.lock().push(connection.clone());
        Stream { connection, open: open.clone() }
    }

    /// Whether a request that found no stream free should wait for a connection being made: one
    /// is, and it will have a stream for this request. The request counts as waiting until the
    /// returned guard is dropped.
    pub(super) fn wait_for_connect(&self, max_streams: usize) -> Option<Waiting<'_>> {
        let connecting = self.connecting.load(Ordering::Relaxed);
        if connecting == 0 {
            return None;
        }
        let ahead = self.waiting.fetch_add(1, Ordering::Relaxed);
        let waiting = Waiting(&self.waiting);
        (ahead < connecting.saturating_mul(max_streams)).then_some(waiting)
    }

    /// Marks a connection as being made, when it is known to become an HTTP/2 one.
    pub(super) fn connecting<'a>(&'a self, open: &'a OpenCount) -> Connecting<'a> {
        let http2 = self.speaks_http2.load(Ordering::Relaxed);
        let connecting = http2.then(|| {
            self.connecting.fetch_add(1, Ordering::Relaxed);
            &self.connecting
        });
        Connecting { connecting, open }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        if let Some(connecting) = self.connecting {
            connecting.fetch_sub(1, Ordering::Relaxed);
            // Made or failed: the waiting requests look again (and one may make the next).
            self.open.freed.notify_waiters();
        }
    }
}

impl<B> Stream<B> {
    /// A handle to send the stream's request on.
    pub(super) fn sender(&self) -> SendRequest<B> {
        self.connection.sender.clone()
    }
}

impl<B> Drop for Stream<B> {
    fn drop(&mut self) {
        let connection = &self.connection;
        // Stamped before the count drops, so a scan never sees it idle with an old stamp.
        let now = connection.epoch.elapsed().as_millis() as u64;
        connection.idle_since.store(now, Ordering::Relaxed);
        connection.streams.fetch_sub(1, Ordering::Release);
        self.open.freed.notify_one();
    }
}
