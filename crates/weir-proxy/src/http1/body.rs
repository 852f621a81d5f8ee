//! A request body read off a client's HTTP/1.1 connection. The connection keeps its socket; the body
//! asks it for bytes through a slot the two share, which holds at most one frame. Whoever polls the
//! body (the request's own task, or an HTTP/2 upstream's) sets `wanted`; the connection, polling
//! beside the request, reads and decodes the next piece and puts it in the slot. A request without a
//! body has no slot at all.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};
use weir_upstream::wire::{ChunkLimits, Decoded, take_length};

use super::chunks::Chunks;
use super::head::BodyFraming;
use super::io::ConnIo;
use crate::framing::BodyFramingError;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The body of a request on a client's HTTP/1.1 connection.
pub struct Http1Body {
    slot: Arc<Shared>,
    /// Bytes still to come, when the length is known.
    remaining: Option<u64>,
    ended: bool,
}

#[derive(Default)]
struct Shared(Mutex<Slot>);

#[derive(Default)]
struct Slot {
    frame: Option<io::Result<Frame<Bytes>>>,
    /// The last frame is in `frame` or taken.
    ended: bool,
    /// The body was polled and found the slot empty.
    wanted: bool,
    /// The body was dropped: nobody reads what is left.
    dropped: bool,
    reader: Option<Waker>,
    connection: Option<Waker>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Body for Http1Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let mut slot = this.slot.lock();
        if let Some(frame) = slot.frame.take() {
            if let (Some(remaining), Ok(frame)) = (&mut this.remaining, &frame) {
                *remaining -= frame.data_ref().map_or(0, |data| data.len() as u64);
            }
            this.ended = slot.ended || frame.is_err();
            return Poll::Ready(Some(frame));
        }
        if slot.ended {
            this.ended = true;
            return Poll::Ready(None);
        }
        slot.wanted = true;
        if !slot.reader.as_ref().is_some_and(|reader| reader.will_wake(cx.waker())) {
            slot.reader = Some(cx.waker().clone());
        }
        // Polled on the connection's own task, the connection looks at the slot as soon as this
        // returns; from another task it must be woken.
        if let Some(connection) = slot.connection.as_ref().filter(|waker| !waker.will_wake(cx.waker())) {
            connection.wake_by_ref();
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(remaining) => SizeHint::with_exact(remaining),
            None => SizeHint::default(),
        }
    }
}

impl Drop for Http1Body {
    fn drop(&mut self) {
        let mut slot = self.slot.lock();
        slot.dropped = true;
        if let Some(connection) = slot.connection.take() {
            connection.wake();
        }
    }
}

/// The connection's side of a request body: how it is delimited and what is left of it.
pub(super) struct Feed {
    slot: Arc<Shared>,
    framing: Framing,
    /// `100 Continue` is owed before the first read (the client asked, and the body was polled).
    owe_continue: bool,
    /// The response began while `100 Continue` was still owed: the client was never told to send.
    withheld: bool,
    /// `100 Continue` is queued and not yet flushed.
    continue_unflushed: bool,
    state: FeedState,
}

enum Framing {
    Length(u64),
    Chunked(Chunks, ChunkLimits),
}

impl Drop for Feed {
    /// A body the connection stops feeding before its end fails, so whoever reads it (perhaps on
    /// another task) is not left waiting.
    fn drop(&mut self) {
        if self.state != FeedState::Open {
            return;
        }
        let mut slot = self.slot.lock();
        if slot.dropped || slot.ended {
            return;
        }
        slot.frame = Some(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "the client connection ended")));
        slot.ended = true;
        if let Some(reader) = slot.reader.take() {
            reader.wake();
        }
    }
}

/// Where the body stands, seen from the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FeedState {
    /// More of the body is to come from the client.
    Open,
    /// The body was read to its end; the connection can read the next request.
    Complete,
    /// The body failed (the client closed, or framing broke): the connection cannot go on.
    Broken,
}

impl Feed {
    /// A body and the connection's side of it, for a request with `framing` (never `None`).
    pub(super) fn open(framing: BodyFraming, expect_continue: bool, limits: ChunkLimits) -> (Http1Body, Feed) {
        let slot = Arc::new(Shared::default());
        let (framing, remaining) = match framing {
            BodyFraming::Length(length) => (Framing::Length(length), Some(length)),
            BodyFraming::Chunked | BodyFraming::None => (Framing::Chunked(Chunks::Size, limits), None),
        };
        let body = Http1Body { slot: slot.clone(), remaining, ended: false };
        (
            body,
            Feed {
                slot,
                framing,
                owe_continue: expect_continue,
                withheld: false,
                continue_unflushed: false,
                state: FeedState::Open,
            },
        )
    }

    pub(super) fn state(&self) -> FeedState {
        self.state
    }

    /// The response has begun: `100 Continue` can no longer be sent.
    pub(super) fn forgo_continue(&mut self) {
        self.withheld = self.owe_continue;
        self.owe_continue = false;
    }

    /// Whether the client was never told to send a body it was waiting to send.
    pub(super) fn continue_withheld(&self) -> bool {
        self.owe_continue || self.withheld
    }

    /// Whether the body was dropped with more of it to come than the connection would read past to
    /// keep the connection.
    pub(super) fn too_long_to_skip(&self, budget: u64) -> bool {
        matches!(self.framing, Framing::Length(left) if left > budget) && self.abandoned()
    }

    /// Whether the body was dropped before its end.
    pub(super) fn abandoned(&self) -> bool {
        self.state == FeedState::Open && self.slot.lock().dropped
    }

    /// Puts the next frame in the slot if the body wants one. `Ready(true)`: a frame (or the end)
    /// was handed over, and the reader should be polled again; `Ready(false)`: nothing more to do
    /// until woken.
    pub(super) fn poll_feed<S>(&mut self, cx: &mut Context<'_>, io: &mut ConnIo<S>) -> Poll<bool>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.state != FeedState::Open {
            return Poll::Ready(false);
        }
        {
            let mut slot = self.slot.lock();
            if slot.dropped || slot.frame.is_some() || !slot.wanted {
                if !slot.connection.as_ref().is_some_and(|waker| waker.will_wake(cx.waker())) {
                    slot.connection = Some(cx.waker().clone());
                }
                return Poll::Ready(false);
            }
        }
        let next = ready!(self.poll_next(cx, io));
        let mut slot = self.slot.lock();
        slot.wanted = false;
        match next {
            Ok(Some(frame)) => slot.frame = Some(Ok(frame)),
            Ok(None) => {}
            Err(error) => {
                slot.frame = Some(Err(error));
                self.state = FeedState::Broken;
            }
        }
        if self.state == FeedState::Complete {
            slot.ended = true;
        }
        if let Some(reader) = slot.reader.take() {
            reader.wake();
        }
        Poll::Ready(true)
    }

    /// Reads and throws away what is left of an abandoned body, up to `budget` bytes. `Ready(true)`:
    /// the body ended within the budget.
    pub(super) fn poll_discard<S>(&mut self, cx: &mut Context<'_>, io: &mut ConnIo<S>, budget: &mut u64) -> Poll<bool>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        while self.state == FeedState::Open {
            match ready!(self.poll_next(cx, io)) {
                Ok(Some(frame)) => {
                    let len = frame.data_ref().map_or(0, |data| data.len() as u64);
                    let Some(left) = budget.checked_sub(len) else { return Poll::Ready(false) };
                    *budget = left;
                }
                Ok(None) => {}
                Err(_) => self.state = FeedState::Broken,
            }
        }
        Poll::Ready(self.state == FeedState::Complete)
    }

    /// The next frame from the connection; `Ok(None)` marks the end (state `Complete`).
    fn poll_next<S>(&mut self, cx: &mut Context<'_>, io: &mut ConnIo<S>) -> Poll<io::Result<Option<Frame<Bytes>>>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.owe_continue {
            // Queued once: the flush may take several polls.
            io.out().extend_from_slice(CONTINUE);
            self.owe_continue = false;
            self.continue_unflushed = true;
        }
        if self.continue_unflushed {
            ready!(io.poll_flush_out(cx))?;
            self.continue_unflushed = false;
        }
        loop {
            match &mut self.framing {
                Framing::Length(0) => {
                    self.state = FeedState::Complete;
                    return Poll::Ready(Ok(None));
                }
                Framing::Length(left) if !io.read.is_empty() => {
                    let data = take_length(&mut io.read, left);
                    if *left == 0 {
                        self.state = FeedState::Complete;
                    }
                    return Poll::Ready(Ok(Some(Frame::data(data))));
                }
                Framing::Length(_) => {}
                Framing::Chunked(chunk, limits) => match chunk.decode(&mut io.read, *limits) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Ok(Some(Frame::data(data)))),
                    Ok(Decoded::Trailers(trailers)) => {
                        self.state = FeedState::Complete;
                        return Poll::Ready(Ok(Some(Frame::trailers(trailers))));
                    }
                    Ok(Decoded::End) => {
                        self.state = FeedState::Complete;
                        return Poll::Ready(Ok(None));
                    }
                    Ok(Decoded::More) => {}
                    Err(violation) => {
                        self.state = FeedState::Broken;
                        let error = BodyFramingError(violation);
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
                    }
                },
            }
            match ready!(io.poll_fill(cx)) {
                Ok(0) => {
                    self.state = FeedState::Broken;
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(_) => {}
                Err(error) => {
                    self.state = FeedState::Broken;
                    return Poll::Ready(Err(error));
                }
            }
        }
    }
}
