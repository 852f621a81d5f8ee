//! What a connection's task shares with its streams' request bodies and responses: the streams'
//! states, the frames queued for writing, the flow-control windows, and the queue of streams to
//! run again. One lock per connection; the connection's task holds it briefly, and a request body
//! read from another task takes it for the read alone.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use super::frame::{self, Reason};

/// What a client may send on one stream before weir reads it: SETTINGS_INITIAL_WINDOW_SIZE.
pub(super) const STREAM_WINDOW: u32 = 1 << 20;
/// What a client may send on a connection before weir reads it: every stream's together.
pub(super) const CONNECTION_WINDOW: u32 = 1 << 20;
/// Frames queued beyond this wait for the connection to write; nor does it read meanwhile.
pub(super) const OUT_LIMIT: usize = 128 * 1024;
/// DATA payloads smaller than this are copied out of the read buffer (and run together), so small
/// frames waiting to be read cannot each hold a whole read buffer; larger ones are kept as slices
/// of it, holding at most a few times their size.
const COPY_BELOW: usize = 8 * 1024;

/// Stream ids are the keys of maps hashed on every frame: a multiplication is hash enough.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8 | u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(super) type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

/// Wakes what waits on `waker`, if anything does.
pub(super) fn wake(waker: &mut Option<Waker>) {
    if let Some(waker) = waker.take() {
        waker.wake();
    }
}

/// How much of a request body there is still to come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recv {
    Open,
    Ended,
    /// The stream was reset, or broke a rule, before its body ended.
    Failed(Reason),
}

/// One open stream.
pub(super) struct StreamState {
    inbox: VecDeque<Bytes>,
    /// Small payloads run together, after everything in `inbox`.
    tail: BytesMut,
    pub(super) trailers: Option<HeaderMap>,
    pub(super) recv: Recv,
    pub(super) body_waker: Option<Waker>,
    /// What the client may still send before a WINDOW_UPDATE.
    pub(super) recv_window: i64,
    /// Read but not yet given back in a WINDOW_UPDATE.
    recv_consumed: u32,
    pub(super) content_length: Option<u64>,
    pub(super) received: u64,
    /// Nobody reads the body any more: what arrives is thrown away.
    pub(super) discard: bool,
    /// The client waits for `100 Continue` before it sends the body.
    pub(super) expect_continue: bool,
    pub(super) send_window: i64,
    pub(super) send_waker: Option<Waker>,
    /// The response waits for this stream's window.
    window_blocked: bool,
}

impl StreamState {
    pub(super) fn new(recv: Recv, send_window: i64, content_length: Option<u64>, expect_continue: bool) -> Self {
        StreamState {
            inbox: VecDeque::new(),
            tail: BytesMut::new(),
            trailers: None,
            recv,
            body_waker: None,
            recv_window: i64::from(STREAM_WINDOW),
            recv_consumed: 0,
            content_length,
            received: 0,
            discard: false,
            expect_continue,
            send_window,
            send_waker: None,
            window_blocked: false,
        }
    }

    /// Queues a DATA payload for the body's reader.
    pub(super) fn push_data(&mut self, data: Bytes) {
        if data.len() < COPY_BELOW {
            self.tail.extend_from_slice(&data);
            if self.tail.len() >= COPY_BELOW {
                self.inbox.push_back(self.tail.split().freeze());
            }
            return;
        }
        if !self.tail.is_empty() {
            self.inbox.push_back(self.tail.split().freeze());
        }
        self.inbox.push_back(data);
    }

    /// The next piece of body to hand out, in arrival order.
    fn pop_data(&mut self) -> Option<Bytes> {
        self.inbox.pop_front().or_else(|| (!self.tail.is_empty()).then(|| self.tail.split().freeze()))
    }

    /// Drops what the body's reader has not taken; how many bytes that was.
    fn clear_unread(&mut self) -> usize {
        let unread = self.inbox.drain(..).map(|data| data.len()).sum::<usize>() + self.tail.len();
        self.tail = BytesMut::new();
        unread
    }

    /// Ends the request body with `reason`, waking its reader.
    pub(super) fn fail(&mut self, reason: Reason) {
        if self.recv == Recv::Open {
            self.recv = Recv::Failed(reason);
        }
        if let Some(waker) = self.body_waker.take() {
            waker.wake();
        }
    }

    fn wake_all(&mut self) {
        wake(&mut self.body_waker);
        wake(&mut self.send_waker);
    }
}

/// Everything behind the connection's lock.
pub(super) struct Inner {
    pub(super) streams: IdMap<StreamState>,
    /// Frames waiting for the connection to write them.
    pub(super) out: BytesMut,
    pub(super) conn_send_window: i64,
    /// The client's SETTINGS_INITIAL_WINDOW_SIZE: each new stream's send window.
    pub(super) initial_send_window: i64,
    /// The client's SETTINGS_MAX_FRAME_SIZE.
    pub(super) max_send_frame: usize,
    /// What the client may still send on the connection before a WINDOW_UPDATE.
    pub(super) conn_recv_window: i64,
    /// Request body bytes read on the connection and not yet given back.
    conn_recv_consumed: u32,
    /// Responses waiting for room in `out` or in the connection's window.
    space_waiters: Vec<Waker>,
    /// Streams whose responses wait for their own window.
    windows_blocked: usize,
    /// A response waits for the connection's window.
    conn_window_blocked: bool,
    /// The connection is closing: responses stop sending.
    pub(super) closed: bool,
}

impl Inner {
    /// Gives `len` bytes back to the connection's window, in a WINDOW_UPDATE once half of it is used.
    pub(super) fn credit_connection(&mut self, len: usize) -> bool {
        self.conn_recv_consumed += len as u32;
        if self.conn_recv_consumed < CONNECTION_WINDOW / 2 {
            return false;
        }
        frame::put_window_update(&mut self.out, 0, self.conn_recv_consumed);
        self.conn_recv_window += i64::from(self.conn_recv_consumed);
        self.conn_recv_consumed = 0;
        true
    }

    /// Gives `len` bytes read from stream `id`'s body back to both windows; true when a
    /// WINDOW_UPDATE was queued.
    fn credit(&mut self, id: u32, len: usize) -> bool {
        let mut queued = self.credit_connection(len);
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.recv_consumed += len as u32;
            if stream.recv == Recv::Open && stream.recv_consumed >= STREAM_WINDOW / 2 {
                stream.recv_window += i64::from(stream.recv_consumed);
                frame::put_window_update(&mut self.out, id, stream.recv_consumed);
                stream.recv_consumed = 0;
                queued = true;
            }
        }
        queued
    }

    /// Wakes the responses waiting for room to send.
    pub(super) fn wake_space_waiters(&mut self) {
        for waker in self.space_waiters.drain(..) {
            waker.wake();
        }
    }

    /// Applies a new SETTINGS_INITIAL_WINDOW_SIZE to every open stream (RFC 9113 section 6.9.2);
    /// false when that takes a window past the largest allowed.
    pub(super) fn set_initial_send_window(&mut self, window: i64) -> bool {
        let delta = window - self.initial_send_window;
        self.initial_send_window = window;
        let mut valid = true;
        for id in self.streams.keys().copied().collect::<Vec<_>>() {
            valid &= self.add_send_window(id, delta);
        }
        valid
    }

    /// Adds to stream `id`'s send window, waking its response; false past the largest window.
    pub(super) fn add_send_window(&mut self, id: u32, delta: i64) -> bool {
        let Some(stream) = self.streams.get_mut(&id) else { return true };
        stream.send_window += delta;
        if stream.send_window > 0 && std::mem::take(&mut stream.window_blocked) {
            self.windows_blocked -= 1;
        }
        wake(&mut stream.send_waker);
        stream.send_window <= frame::MAX_WINDOW
    }

    /// Adds to the connection's send window, waking the responses waiting for it.
    pub(super) fn add_conn_send_window(&mut self, increment: i64) -> bool {
        self.conn_send_window += increment;
        self.conn_window_blocked = false;
        self.wake_space_waiters();
        self.conn_send_window <= frame::MAX_WINDOW
    }

    /// Some response waits for a window the client has not opened.
    pub(super) fn blocked_on_windows(&self) -> bool {
        self.windows_blocked > 0 || self.conn_window_blocked
    }

    /// Takes a stream out, giving what its body never read back to the connection's window.
    pub(super) fn remove(&mut self, id: u32) -> Option<StreamState> {
        let mut stream = self.streams.remove(&id)?;
        if stream.window_blocked {
            self.windows_blocked -= 1;
        }
        let unread = stream.clear_unread();
        self.credit_connection(unread);
        stream.wake_all();
        Some(stream)
    }

    /// Closes the connection: every stream's body and response learn it.
    pub(super) fn close(&mut self) {
        self.closed = true;
        for stream in self.streams.values_mut() {
            stream.fail(Reason::Cancel);
            stream.wake_all();
        }
        self.wake_space_waiters();
    }

    /// Data arrived for a stream nobody reads any more, or padding: counted and given back.
    pub(super) fn discard(&mut self, id: u32, len: usize) {
        self.credit(id, len);
    }
}

/// The state a connection shares with its streams.
pub(super) struct Shared {
    inner: Mutex<Inner>,
    ready: Mutex<Ready>,
}

/// Streams woken since the connection last ran them, and the connection's own waker.
#[derive(Default)]
struct Ready {
    ids: Vec<u32>,
    waker: Option<Waker>,
    /// Frames were queued from outside the connection's task.
    queued: bool,
}

impl Shared {
    pub(super) fn new() -> Arc<Shared> {
        let inner = Inner {
            streams: IdMap::default(),
            out: BytesMut::new(),
            conn_send_window: frame::DEFAULT_WINDOW,
            initial_send_window: frame::DEFAULT_WINDOW,
            max_send_frame: frame::MAX_FRAME_SIZE,
            conn_recv_window: i64::from(CONNECTION_WINDOW),
            conn_recv_consumed: 0,
            space_waiters: Vec::new(),
            windows_blocked: 0,
            conn_window_blocked: false,
            closed: false,
        };
        Arc::new(Shared { inner: Mutex::new(inner), ready: Mutex::new(Ready::default()) })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn ready(&self) -> MutexGuard<'_, Ready> {
        self.ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stream `id` is to be run again.
    pub(super) fn wake_stream(&self, id: u32) {
        let waker = {
            let mut ready = self.ready();
            ready.ids.push(id);
            ready.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Frames were queued by a body read in another task: the connection is to write them.
    fn wake_connection(&self) {
        let waker = {
            let mut ready = self.ready();
            ready.queued = true;
            ready.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Moves the woken streams into `ids`; when there are none and nothing was queued, registers
    /// the connection's waker and returns false.
    pub(super) fn take_ready(&self, ids: &mut Vec<u32>, cx: &mut Context<'_>) -> bool {
        let mut ready = self.ready();
        if ready.ids.is_empty() && !ready.queued {
            if !ready.waker.as_ref().is_some_and(|waker| waker.will_wake(cx.waker())) {
                ready.waker = Some(cx.waker().clone());
            }
            return false;
        }
        ready.queued = false;
        std::mem::swap(&mut ready.ids, ids);
        true
    }

    /// Room to send `want` bytes of stream `id`: at most its window, the connection's and a frame.
    /// `Err` when the stream or the connection is gone.
    pub(super) fn poll_send_room(&self, id: u32, want: usize, cx: &mut Context<'_>) -> Poll<Result<usize, ()>> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if inner.closed {
            return Poll::Ready(Err(()));
        }
        if inner.out.len() >= OUT_LIMIT || inner.conn_send_window <= 0 {
            inner.conn_window_blocked |= inner.conn_send_window <= 0;
            inner.space_waiters.push(cx.waker().clone());
            return Poll::Pending;
        }
        let Some(stream) = inner.streams.get_mut(&id) else { return Poll::Ready(Err(())) };
        if stream.send_window <= 0 {
            stream.send_waker = Some(cx.waker().clone());
            if !std::mem::replace(&mut stream.window_blocked, true) {
                inner.windows_blocked += 1;
            }
            return Poll::Pending;
        }
        let room = want.min(stream.send_window as usize).min(inner.conn_send_window as usize).min(inner.max_send_frame);
        stream.send_window -= room as i64;
        inner.conn_send_window -= room as i64;
        Poll::Ready(Ok(room))
    }
}

/// A request body as the client sends it in DATA frames, with its trailers.
pub struct Http2Body {
    shared: Arc<Shared>,
    id: u32,
    /// What is still to come, when the request said (`content-length`).
    remaining: Option<u64>,
    ended: bool,
}

/// Why a request body could not be read to its end.
#[derive(Debug, thiserror::Error)]
#[error("HTTP/2 stream {id}: the request body was cut short ({reason})")]
pub struct Http2BodyError {
    id: u32,
    reason: Reason,
}

impl Http2Body {
    pub(super) fn new(shared: Arc<Shared>, id: u32, content_length: Option<u64>) -> Http2Body {
        Http2Body { shared, id, remaining: content_length, ended: false }
    }
}

impl http_body::Body for Http2Body {
    type Data = Bytes;
    type Error = Http2BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Http2BodyError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let id = self.id;
        let shared = self.shared.clone();
        let mut inner = shared.lock();
        let inner = &mut *inner;
        let Some(stream) = inner.streams.get_mut(&id) else {
            return Poll::Ready(Some(Err(Http2BodyError { id, reason: Reason::Cancel })));
        };
        let mut queued = false;
        if stream.expect_continue {
            stream.expect_continue = false;
            super::send::put_continue(&mut inner.out, id);
            queued = true;
        }
        let polled = if let Some(data) = stream.pop_data() {
            queued |= inner.credit(id, data.len());
            self.remaining = self.remaining.map(|left| left.saturating_sub(data.len() as u64));
            Poll::Ready(Some(Ok(http_body::Frame::data(data))))
        } else {
            match stream.recv {
                Recv::Ended => {
                    self.ended = true;
                    Poll::Ready(stream.trailers.take().map(|trailers| Ok(http_body::Frame::trailers(trailers))))
                }
                Recv::Failed(reason) => Poll::Ready(Some(Err(Http2BodyError { id, reason }))),
                Recv::Open => {
                    stream.body_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        };
        if queued {
            shared.wake_connection();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.remaining {
            Some(left) => http_body::SizeHint::with_exact(left),
            None => http_body::SizeHint::default(),
        }
    }
}

impl Drop for Http2Body {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        let Some(stream) = inner.streams.get_mut(&self.id) else { return };
        stream.discard = true;
        stream.body_waker = None;
        let unread = stream.clear_unread();
        if inner.credit(self.id, unread) {
            drop(inner);
            self.shared.wake_connection();
        }
    }
}
