//! One HTTP/2 connection: its task reads frames and acts on them, runs its streams (each a future
//! the task polls itself, woken one by one), and writes what they queued.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::Request;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::frame::{self, Head, Reason};
use super::hpack::Decoder;
use super::request::{Collect, Refused};
use super::send::{self, Sent};
use super::shared::{self, IdMap, Recv, Shared, StreamState};
use super::{ErrorScope, HeadLimit, Http2Settings, PREFACE, RefusedHead, Service};
use crate::client_body::ClientBody;

/// Streams a client may reset before their responses, net of the ones that complete, before the
/// connection is closed (against rapid-reset floods that make the gateway start work and drop it).
pub(super) const RESET_BUDGET: u32 = 200;
/// The header table size weir lets a client's encoder use (the protocol's default).
const HEADER_TABLE_SIZE: usize = 4096;

/// A connection error: GOAWAY with `reason`, then the connection closes.
#[derive(Debug)]
pub(super) struct ConnError {
    reason: Reason,
    what: &'static str,
}

fn fail<T>(reason: Reason, what: &'static str) -> Result<T, ConnError> {
    Err(ConnError { reason, what })
}

type StreamFuture = Pin<Box<dyn Future<Output = Sent> + Send>>;

/// A stream's response in the making, and the waker that queues it to run again.
struct Task {
    future: StreamFuture,
    waker: Waker,
}

/// Wakes one stream: queues its id on the connection.
struct StreamWaker {
    id: u32,
    shared: Arc<Shared>,
}

impl Wake for StreamWaker {
    fn wake(self: Arc<Self>) {
        self.shared.wake_stream(self.id);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.wake_stream(self.id);
    }
}

/// A header block arriving in CONTINUATION frames.
struct Partial {
    id: u32,
    end_stream: bool,
    block: BytesMut,
}

/// What the connection's timer is set for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Off,
    /// No stream is open: the idle timeout.
    Idle,
    /// The client takes no bytes while some wait to be written.
    WriteStall,
    /// Responses wait for flow-control windows the client does not open.
    WindowStall,
    /// The connection is closing and waits for its shutdown to go out.
    Closing,
}

/// How long a closing connection waits for its shutdown (TLS close_notify, FIN) to be written.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

pub(super) struct Connection<S, Svc> {
    io: S,
    read: BytesMut,
    /// What is being written, swapped with the queue of frames when it is all out.
    write: BytesMut,
    written: usize,
    shared: Arc<Shared>,
    tasks: IdMap<Task>,
    woken: Vec<u32>,
    decoder: Decoder,
    partial: Option<Partial>,
    preface_read: bool,
    settings_seen: bool,
    /// The highest stream id the client opened.
    last_stream: u32,
    /// The highest stream id acted on: what GOAWAY names (streams opened after it are ignored).
    last_served: u32,
    /// GOAWAY was sent: no new streams; the connection closes once the open ones end.
    going_away: bool,
    /// A connection error was sent, or the socket failed: close once what is queued is written.
    closing: bool,
    /// Shutting the socket down: the last step.
    ending: bool,
    /// Bytes were written since the last completed flush.
    unflushed: bool,
    read_closed: bool,
    /// The client sent GOAWAY: it opens no more streams.
    peer_went_away: bool,
    reset_budget: u32,
    settings: Http2Settings,
    service: Svc,
    stopping: Pin<Box<WaitForCancellationFutureOwned>>,
    timer: Pin<Box<Sleep>>,
    timer_for: Timer,
}

impl<S, Svc> Connection<S, Svc>
where
    S: AsyncRead + AsyncWrite + Unpin,
    Svc: Service,
{
    pub(super) fn new(io: S, settings: Http2Settings, stopping: WaitForCancellationFutureOwned, service: Svc) -> Self {
        let shared = Shared::new();
        {
            let mut inner = shared.lock();
            frame::put_settings(
                &mut inner.out,
                &[
                    (frame::SETTINGS_MAX_CONCURRENT_STREAMS, settings.max_concurrent_streams),
                    (frame::SETTINGS_INITIAL_WINDOW_SIZE, shared::STREAM_WINDOW),
                    (frame::SETTINGS_MAX_HEADER_LIST_SIZE, settings.limits.max_list_size as u32),
                ],
            );
            let increment = shared::CONNECTION_WINDOW - frame::DEFAULT_WINDOW as u32;
            frame::put_window_update(&mut inner.out, 0, increment);
        }
        Connection {
            io,
            read: BytesMut::new(),
            write: BytesMut::new(),
            written: 0,
            shared,
            tasks: IdMap::default(),
            woken: Vec::new(),
            decoder: Decoder::new(HEADER_TABLE_SIZE),
            partial: None,
            preface_read: false,
            settings_seen: false,
            last_stream: 0,
            last_served: 0,
            going_away: false,
            closing: false,
            ending: false,
            unflushed: false,
            read_closed: false,
            peer_went_away: false,
            reset_budget: RESET_BUDGET,
            service,
            stopping: Box::pin(stopping),
            timer: Box::pin(tokio::time::sleep_until(
                Instant::now() + settings.idle_timeout.min(settings.preface_timeout),
            )),
            timer_for: Timer::Idle,
            settings,
        }
    }

    /// Serves the connection until it closes.
    pub(super) fn poll_serve(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.ending {
            return self.poll_end(cx);
        }
        loop {
            if !self.going_away && self.stopping.as_mut().poll(cx).is_ready() {
                self.go_away(Reason::NoError);
            }
            let mut progressed = self.run_woken(cx);
            if self.can_read() {
                match self.poll_read(cx) {
                    Poll::Ready(Ok(())) => progressed = true,
                    Poll::Ready(Err(error)) => {
                        tracing::debug!(reason = %error.reason, what = error.what, "HTTP/2 connection error");
                        self.service.protocol_error(ErrorScope::Connection, error.reason);
                        self.go_away(error.reason);
                        self.close_streams();
                        progressed = true;
                    }
                    Poll::Pending => {}
                }
            }
            match self.poll_write(cx) {
                Poll::Ready(Ok(wrote)) => progressed |= wrote,
                Poll::Ready(Err(())) => return self.abort(),
                Poll::Pending => {}
            }
            if self.finished() {
                self.ending = true;
                self.close_streams();
                return self.poll_end(cx);
            }
            if !progressed {
                match self.poll_timer(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Timer::Idle) => {
                        // GOAWAY, then close once it is written; a client that takes no bytes
                        // meanwhile is cut off as any other.
                        self.go_away(Reason::NoError);
                        self.arm(Timer::WriteStall);
                    }
                    Poll::Ready(_) => return self.abort(),
                }
            }
        }
    }

    fn can_read(&self) -> bool {
        !self.closing && !self.read_closed && self.shared.lock().out.len() < shared::OUT_LIMIT
    }

    /// Done: nothing left to write, and no stream (or the socket failed).
    fn finished(&self) -> bool {
        if self.unflushed || self.written < self.write.len() || !self.shared.lock().out.is_empty() {
            return false;
        }
        self.closing || ((self.going_away || self.peer_went_away) && self.tasks.is_empty())
    }

    /// Shuts the socket down once all is written (a TLS close_notify, then FIN), for at most
    /// [`CLOSE_GRACE`].
    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.timer_for != Timer::Closing {
            self.timer_for = Timer::Closing;
            self.timer.as_mut().reset(Instant::now() + CLOSE_GRACE);
        }
        match Pin::new(&mut self.io).poll_shutdown(cx) {
            Poll::Ready(_) => Poll::Ready(()),
            Poll::Pending => self.timer.as_mut().poll(cx),
        }
    }

    /// Ends the connection at once: the socket failed, or the client stopped taking bytes.
    fn abort(&mut self) -> Poll<()> {
        self.close_streams();
        Poll::Ready(())
    }

    /// Drops every stream's future: their upstream exchanges are abandoned.
    fn close_streams(&mut self) {
        self.tasks.clear();
        self.shared.lock().close();
        self.closing = true;
    }

    /// Queues GOAWAY: no stream after the last one opened will be served.
    fn go_away(&mut self, reason: Reason) {
        if self.going_away && reason == Reason::NoError {
            return;
        }
        self.going_away = true;
        frame::put_goaway(&mut self.shared.lock().out, self.last_served, reason);
    }

    /// Sets the timer for `why` (the listener's idle timeout from now) unless it is set for it.
    fn arm(&mut self, why: Timer) {
        if self.timer_for != why {
            self.timer_for = why;
            self.timer.as_mut().reset(Instant::now() + self.settings.idle_timeout);
        }
    }

    /// Sets the timer for what the connection waits on now; ready with the reason when it fires.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<Timer> {
        let wanted = if self.timer_for == Timer::WriteStall {
            Timer::WriteStall
        } else if self.tasks.is_empty() {
            Timer::Idle
        } else if self.shared.lock().blocked_on_windows() {
            Timer::WindowStall
        } else {
            Timer::Off
        };
        if wanted == Timer::Off {
            self.timer_for = Timer::Off;
            return Poll::Pending;
        }
        if wanted == Timer::Idle && self.timer_for != Timer::Idle && self.read.is_empty() {
            // An idle connection holds no read buffer.
            self.read = BytesMut::new();
        }
        self.arm(wanted);
        std::task::ready!(self.timer.as_mut().poll(cx));
        tracing::debug!(timer = ?self.timer_for, "HTTP/2 connection timed out");
        Poll::Ready(wanted)
    }

    /// Runs the streams woken since they last ran; true when any ran.
    fn run_woken(&mut self, cx: &mut Context<'_>) -> bool {
        let mut ran = false;
        let mut woken = std::mem::take(&mut self.woken);
        while self.shared.take_ready(&mut woken, cx) {
            ran = true;
            for id in woken.drain(..) {
                self.run_stream(id);
            }
        }
        self.woken = woken;
        ran
    }

    fn run_stream(&mut self, id: u32) {
        let Some(task) = self.tasks.get_mut(&id) else { return };
        let Poll::Ready(sent) = task.future.as_mut().poll(&mut Context::from_waker(&task.waker)) else { return };
        self.tasks.remove(&id);
        self.reset_budget = (self.reset_budget + 1).min(RESET_BUDGET);
        if sent == Sent::Failed {
            self.service.protocol_error(ErrorScope::Stream, Reason::Internal);
        }
        let mut inner = self.shared.lock();
        if let Some(stream) = inner.remove(id)
            && stream.recv == Recv::Open
            && sent == Sent::Complete
        {
            // The response is whole before the request: the client may stop sending (RFC 9113 8.1).
            frame::put_rst_stream(&mut inner.out, id, Reason::NoError);
        }
    }

    /// Reads what the socket has and acts on every whole frame in it.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnError>> {
        if self.read.capacity() - self.read.len() < frame::HEADER_LEN + frame::MAX_FRAME_SIZE {
            self.read.reserve(frame::HEADER_LEN + frame::MAX_FRAME_SIZE);
        }
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                self.read_closed = true;
                // Without a reader for the answers, the streams' work is for nobody.
                self.close_streams();
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Ok(_)) => {}
        }
        Poll::Ready(self.read_frames())
    }

    fn read_frames(&mut self) -> Result<(), ConnError> {
        if !self.preface_read {
            if self.read.len() < PREFACE.len() {
                return if PREFACE.starts_with(&self.read) {
                    Ok(())
                } else {
                    fail(Reason::Protocol, "no connection preface")
                };
            }
            if &self.read[..PREFACE.len()] != PREFACE {
                return fail(Reason::Protocol, "no connection preface");
            }
            self.read.advance(PREFACE.len());
            self.preface_read = true;
            if self.timer_for == Timer::Idle {
                // The timer ran for the preface; from now on it is the idle timeout's.
                self.timer.as_mut().reset(Instant::now() + self.settings.idle_timeout);
            }
        }
        while self.read.len() >= frame::HEADER_LEN {
            let head = Head::parse(&self.read);
            if head.length > frame::MAX_FRAME_SIZE {
                return fail(Reason::FrameSize, "a frame larger than SETTINGS_MAX_FRAME_SIZE");
            }
            if self.read.len() < frame::HEADER_LEN + head.length {
                break;
            }
            self.read.advance(frame::HEADER_LEN);
            let payload = self.read.split_to(head.length).freeze();
            self.frame(head, payload)?;
            if self.closing {
                break;
            }
        }
        Ok(())
    }

    fn frame(&mut self, head: Head, payload: Bytes) -> Result<(), ConnError> {
        if !self.settings_seen && (head.kind != frame::SETTINGS || head.has(frame::ACK)) {
            return fail(Reason::Protocol, "the connection did not open with SETTINGS");
        }
        if self.partial.is_some() && head.kind != frame::CONTINUATION {
            return fail(Reason::Protocol, "a frame between HEADERS and its CONTINUATION");
        }
        match head.kind {
            frame::DATA => self.data(head, payload),
            frame::HEADERS => self.headers(head, payload),
            frame::CONTINUATION => self.continuation(head, payload),
            frame::PRIORITY => self.priority(head),
            frame::RST_STREAM => self.rst_stream(head, &payload),
            frame::SETTINGS => self.settings(head, &payload),
            frame::PUSH_PROMISE => fail(Reason::Protocol, "PUSH_PROMISE from a client"),
            frame::PING => self.ping(head, &payload),
            frame::GOAWAY => self.goaway(head, &payload),
            frame::WINDOW_UPDATE => self.window_update(head, &payload),
            // Unknown frame types are ignored (RFC 9113 section 4.1).
            _ => Ok(()),
        }
    }

    fn priority(&mut self, head: Head) -> Result<(), ConnError> {
        if head.stream == 0 {
            return fail(Reason::Protocol, "PRIORITY on stream 0");
        }
        if head.length != 5 {
            return self.reset_stream(head.stream, Reason::FrameSize);
        }
        // Priorities are advice weir does not take.
        Ok(())
    }

    fn settings(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        if head.stream != 0 {
            return fail(Reason::Protocol, "SETTINGS on a stream");
        }
        if head.has(frame::ACK) {
            return if payload.is_empty() { Ok(()) } else { fail(Reason::FrameSize, "a SETTINGS ack with a payload") };
        }
        if !payload.len().is_multiple_of(6) {
            return fail(Reason::FrameSize, "a SETTINGS payload not made of whole settings");
        }
        self.settings_seen = true;
        let mut inner = self.shared.lock();
        for setting in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([setting[0], setting[1]]);
            let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
            match id {
                frame::SETTINGS_ENABLE_PUSH if value > 1 => {
                    return fail(Reason::Protocol, "SETTINGS_ENABLE_PUSH above 1");
                }
                frame::SETTINGS_INITIAL_WINDOW_SIZE => {
                    if i64::from(value) > frame::MAX_WINDOW {
                        return fail(Reason::FlowControl, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1");
                    }
                    if !inner.set_initial_send_window(i64::from(value)) {
                        return fail(Reason::FlowControl, "SETTINGS_INITIAL_WINDOW_SIZE takes a window past 2^31-1");
                    }
                }
                frame::SETTINGS_MAX_FRAME_SIZE => {
                    if !(frame::MAX_FRAME_SIZE as u32..1 << 24).contains(&value) {
                        return fail(Reason::Protocol, "SETTINGS_MAX_FRAME_SIZE out of range");
                    }
                    inner.max_send_frame = value as usize;
                }
                // The encoder uses no dynamic table; the others say nothing to a server.
                frame::SETTINGS_HEADER_TABLE_SIZE
                | frame::SETTINGS_ENABLE_PUSH
                | frame::SETTINGS_MAX_CONCURRENT_STREAMS
                | frame::SETTINGS_MAX_HEADER_LIST_SIZE => {}
                _ => {}
            }
        }
        frame::put_settings_ack(&mut inner.out);
        Ok(())
    }

    fn ping(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        if head.stream != 0 {
            return fail(Reason::Protocol, "PING on a stream");
        }
        if payload.len() != 8 {
            return fail(Reason::FrameSize, "a PING payload that is not 8 bytes");
        }
        if !head.has(frame::ACK) {
            frame::put_ping_ack(&mut self.shared.lock().out, payload);
        }
        Ok(())
    }

    fn goaway(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        if head.stream != 0 {
            return fail(Reason::Protocol, "GOAWAY on a stream");
        }
        if payload.len() < 8 {
            return fail(Reason::FrameSize, "a GOAWAY payload shorter than 8 bytes");
        }
        // The client opens no more streams: the connection closes once the open ones end.
        self.peer_went_away = true;
        Ok(())
    }

    fn window_update(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        if payload.len() != 4 {
            return fail(Reason::FrameSize, "a WINDOW_UPDATE payload that is not 4 bytes");
        }
        let increment = i64::from(u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff);
        let mut inner = self.shared.lock();
        if head.stream == 0 {
            if increment == 0 {
                return fail(Reason::Protocol, "a WINDOW_UPDATE of zero");
            }
            if !inner.add_conn_send_window(increment) {
                return fail(Reason::FlowControl, "the connection's window above 2^31-1");
            }
            return Ok(());
        }
        if head.stream > self.last_stream {
            return fail(Reason::Protocol, "WINDOW_UPDATE on a stream not opened");
        }
        if !inner.streams.contains_key(&head.stream) {
            return Ok(());
        }
        let broken = match increment {
            0 => Some(Reason::Protocol),
            _ if !inner.add_send_window(head.stream, increment) => Some(Reason::FlowControl),
            _ => None,
        };
        drop(inner);
        match broken {
            Some(reason) => self.reset_stream(head.stream, reason),
            None => Ok(()),
        }
    }

    fn rst_stream(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        if payload.len() != 4 {
            return fail(Reason::FrameSize, "a RST_STREAM payload that is not 4 bytes");
        }
        if head.stream == 0 || head.stream > self.last_stream {
            return fail(Reason::Protocol, "RST_STREAM on a stream not opened");
        }
        let dropped = self.tasks.remove(&head.stream).is_some();
        if let Some(mut stream) = self.shared.lock().remove(head.stream) {
            stream.fail(Reason::Cancel);
        }
        if dropped { self.spend_reset_budget() } else { Ok(()) }
    }

    /// Resets one stream: RST_STREAM, its future dropped, its body failed. A reset the client
    /// provoked counts against the same budget as one it sent: either way work was begun and
    /// thrown away.
    fn reset_stream(&mut self, id: u32, reason: Reason) -> Result<(), ConnError> {
        self.service.protocol_error(ErrorScope::Stream, reason);
        let dropped = self.tasks.remove(&id).is_some();
        {
            let mut inner = self.shared.lock();
            if let Some(mut stream) = inner.remove(id) {
                stream.fail(reason);
            }
            frame::put_rst_stream(&mut inner.out, id, reason);
        }
        if dropped { self.spend_reset_budget() } else { Ok(()) }
    }

    /// A stream's work was thrown away before its answer; too many of those end the connection.
    fn spend_reset_budget(&mut self) -> Result<(), ConnError> {
        self.reset_budget = self.reset_budget.saturating_sub(1);
        if self.reset_budget == 0 {
            return fail(Reason::EnhanceYourCalm, "too many streams reset before their responses");
        }
        Ok(())
    }

    fn data(&mut self, head: Head, payload: Bytes) -> Result<(), ConnError> {
        let id = head.stream;
        if id == 0 || id > self.last_stream {
            return fail(Reason::Protocol, "DATA on a stream not opened");
        }
        let (start, end) = match head.has(frame::PADDED) {
            true => {
                frame::strip_padding(&payload).map_or_else(|| fail(Reason::Protocol, "padding past the frame"), Ok)?
            }
            false => (0, payload.len()),
        };
        {
            let mut inner = self.shared.lock();
            inner.conn_recv_window -= payload.len() as i64;
            if inner.conn_recv_window < 0 {
                return fail(Reason::FlowControl, "DATA beyond the connection's window");
            }
        }
        match self.take_data(id, payload, start..end, head.has(frame::END_STREAM)) {
            Some(reason) => self.reset_stream(id, reason),
            None => Ok(()),
        }
    }

    /// Hands a DATA frame's payload (`data` of it, the rest padding) to its stream's body; the
    /// reason to reset the stream when the frame breaks its rules.
    fn take_data(&self, id: u32, payload: Bytes, data: std::ops::Range<usize>, end_stream: bool) -> Option<Reason> {
        let mut inner = self.shared.lock();
        let inner = &mut *inner;
        let flow = payload.len();
        let Some(stream) = inner.streams.get_mut(&id) else {
            // A stream that ended or was reset: the data is nobody's, but the connection's window counts it.
            inner.discard(id, flow);
            return None;
        };
        if stream.recv != Recv::Open {
            inner.discard(id, flow);
            return Some(Reason::StreamClosed);
        }
        stream.recv_window -= flow as i64;
        let padding = flow - data.len();
        let data = payload.slice(data);
        stream.received += data.len() as u64;
        let length_broken = stream
            .content_length
            .is_some_and(|length| stream.received > length || (end_stream && stream.received != length));
        if stream.recv_window < 0 || length_broken {
            inner.discard(id, flow);
            return Some(if length_broken { Reason::Protocol } else { Reason::FlowControl });
        }
        if end_stream {
            stream.recv = Recv::Ended;
        }
        shared::wake(&mut stream.body_waker);
        if stream.discard {
            inner.discard(id, flow);
        } else {
            if !data.is_empty() {
                stream.push_data(data);
            }
            if padding > 0 {
                inner.discard(id, padding);
            }
        }
        None
    }

    fn headers(&mut self, head: Head, payload: Bytes) -> Result<(), ConnError> {
        if head.stream == 0 {
            return fail(Reason::Protocol, "HEADERS on stream 0");
        }
        let (mut start, end) = match head.has(frame::PADDED) {
            true => {
                frame::strip_padding(&payload).map_or_else(|| fail(Reason::Protocol, "padding past the frame"), Ok)?
            }
            false => (0, payload.len()),
        };
        if head.has(frame::PRIORITY_FLAG) {
            start += 5;
            if start > end {
                return fail(Reason::FrameSize, "HEADERS too short for its priority");
            }
        }
        let fragment = payload.slice(start..end);
        let end_stream = head.has(frame::END_STREAM);
        if head.has(frame::END_HEADERS) {
            return self.header_block(head.stream, end_stream, fragment);
        }
        self.partial = Some(Partial { id: head.stream, end_stream, block: BytesMut::from(&fragment[..]) });
        Ok(())
    }

    fn continuation(&mut self, head: Head, payload: Bytes) -> Result<(), ConnError> {
        let Some(partial) = self.partial.as_mut().filter(|partial| partial.id == head.stream) else {
            return fail(Reason::Protocol, "CONTINUATION not following HEADERS on its stream");
        };
        if partial.block.len() + payload.len() > 2 * self.settings.limits.max_list_size + frame::MAX_FRAME_SIZE {
            return fail(Reason::EnhanceYourCalm, "a header block far over the header list limit");
        }
        partial.block.extend_from_slice(&payload);
        if !head.has(frame::END_HEADERS) {
            return Ok(());
        }
        let Some(partial) = self.partial.take() else { return Ok(()) };
        self.header_block(partial.id, partial.end_stream, partial.block.freeze())
    }

    /// A whole header block: a new request, or a request's trailers.
    fn header_block(&mut self, id: u32, end_stream: bool, block: Bytes) -> Result<(), ConnError> {
        if id <= self.last_stream {
            return self.trailers(id, end_stream, block);
        }
        if id.is_multiple_of(2) {
            return fail(Reason::Protocol, "a client stream with an even id");
        }
        self.last_stream = id;
        let mut collect = Collect::head(self.settings.limits);
        self.decoder
            .decode(block, |field| collect.field(field))
            .or_else(|_| fail(Reason::Compression, "a header block that does not decode"))?;
        if self.going_away || self.peer_went_away {
            return Ok(());
        }
        self.last_served = id;
        if self.tasks.len() >= self.settings.max_concurrent_streams as usize {
            self.refuse_stream(id, Reason::RefusedStream);
            return Ok(());
        }
        self.open_stream(id, end_stream, collect);
        Ok(())
    }

    fn trailers(&mut self, id: u32, end_stream: bool, block: Bytes) -> Result<(), ConnError> {
        let mut collect = Collect::trailers(self.settings.limits);
        self.decoder
            .decode(block, |field| collect.field(field))
            .or_else(|_| fail(Reason::Compression, "a header block that does not decode"))?;
        let mut inner = self.shared.lock();
        let Some(stream) = inner.streams.get_mut(&id).filter(|stream| stream.recv == Recv::Open) else {
            // Trailers for a stream that is over: nothing reads them.
            return Ok(());
        };
        let trailers = match collect.into_trailers() {
            Ok(trailers) if end_stream => trailers,
            _ => {
                drop(inner);
                return self.reset_stream(id, Reason::Protocol);
            }
        };
        if stream.content_length.is_some_and(|length| stream.received != length) {
            drop(inner);
            return self.reset_stream(id, Reason::Protocol);
        }
        stream.trailers = Some(trailers);
        stream.recv = Recv::Ended;
        shared::wake(&mut stream.body_waker);
        Ok(())
    }

    /// Starts serving a request on stream `id`.
    fn open_stream(&mut self, id: u32, end_stream: bool, collect: Collect) {
        let (request, content_length) = match collect.request(()) {
            Ok(built) => built,
            Err(Refused::Malformed(what)) => {
                tracing::debug!(stream = id, what, "malformed HTTP/2 request");
                return self.refuse_stream(id, Reason::Protocol);
            }
            Err(Refused::TooLarge(limit)) => {
                // Answered by the gateway; a body that follows is taken in and thrown away.
                let recv = if end_stream { Recv::Ended } else { Recv::Open };
                self.start(id, recv, None, false, too_large_request(limit));
                if let Some(stream) = self.shared.lock().streams.get_mut(&id) {
                    stream.discard = true;
                }
                return;
            }
        };
        if end_stream && content_length.is_some_and(|length| length != 0) {
            tracing::debug!(stream = id, "HTTP/2 request without the body its content-length announces");
            return self.refuse_stream(id, Reason::Protocol);
        }
        let expect_continue = !end_stream
            && request
                .headers()
                .get(http::header::EXPECT)
                .is_some_and(|expect| expect.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let (recv, body) = match end_stream {
            true => (Recv::Ended, ClientBody::Empty),
            false => (Recv::Open, ClientBody::Http2(shared::Http2Body::new(self.shared.clone(), id, content_length))),
        };
        self.start(id, recv, content_length, expect_continue, request.map(|()| body));
    }

    /// Resets a stream that was never started.
    fn refuse_stream(&mut self, id: u32, reason: Reason) {
        self.service.protocol_error(ErrorScope::Stream, reason);
        frame::put_rst_stream(&mut self.shared.lock().out, id, reason);
    }

    fn start(
        &mut self,
        id: u32,
        recv: Recv,
        content_length: Option<u64>,
        expect_continue: bool,
        request: Request<ClientBody>,
    ) {
        {
            let mut inner = self.shared.lock();
            let send_window = inner.initial_send_window;
            inner.streams.insert(id, StreamState::new(recv, send_window, content_length, expect_continue));
        }
        let head_request = request.method() == http::Method::HEAD;
        let service = self.service.clone();
        let shared = self.shared.clone();
        let future = Box::pin(async move {
            match service.call(request).await {
                Ok(response) => send::respond(&shared, id, response, head_request).await,
                Err(crate::handler::FaultReset) => {
                    send::reset(&shared, id, Reason::Internal);
                    Sent::Reset
                }
            }
        });
        let waker = Waker::from(Arc::new(StreamWaker { id, shared: self.shared.clone() }));
        self.tasks.insert(id, Task { future, waker });
        // Activity: the idle timer starts again when the connection is next without a stream.
        if self.timer_for == Timer::Idle {
            self.timer_for = Timer::Off;
        }
        self.shared.wake_stream(id);
    }

    /// Writes what is queued; `Ok(true)` when bytes went out.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, ()>> {
        let mut wrote = false;
        loop {
            if self.written == self.write.len() {
                self.write.clear();
                self.written = 0;
                let mut inner = self.shared.lock();
                if inner.out.is_empty() {
                    break;
                }
                std::mem::swap(&mut self.write, &mut inner.out);
                inner.wake_space_waiters();
            }
            match Pin::new(&mut self.io).poll_write(cx, &self.write[self.written..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Err(())),
                Poll::Ready(Ok(written)) => {
                    self.written += written;
                    wrote = true;
                    self.unflushed = true;
                    if self.timer_for == Timer::WriteStall {
                        self.timer_for = Timer::Off;
                    }
                }
                Poll::Pending => {
                    self.arm(Timer::WriteStall);
                    return if wrote { Poll::Ready(Ok(true)) } else { Poll::Pending };
                }
            }
        }
        self.unflushed |= wrote;
        if !self.unflushed {
            return Poll::Ready(Ok(false));
        }
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                self.unflushed = false;
                Poll::Ready(Ok(wrote))
            }
            Poll::Ready(Err(_)) => Poll::Ready(Err(())),
            Poll::Pending => {
                self.arm(Timer::WriteStall);
                if wrote { Poll::Ready(Ok(true)) } else { Poll::Pending }
            }
        }
    }
}

/// What a request over the head limits is handed to the gateway as: the gateway answers 431.
fn too_large_request(limit: HeadLimit) -> Request<ClientBody> {
    let mut request = Request::new(ClientBody::Empty);
    *request.version_mut() = http::Version::HTTP_2;
    request.extensions_mut().insert(RefusedHead(limit));
    request
}
