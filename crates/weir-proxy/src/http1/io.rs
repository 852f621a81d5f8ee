//! A client connection's socket with its two buffers. Between requests neither holds memory: bytes
//! are first read into a scratch array on the stack and copied out only when some arrived, and the
//! write buffer is given back once a response is out. A write that makes no progress for the
//! connection's write timeout (a client that stopped reading) fails.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Bytes read from the socket at a time, at most.
const READ_SIZE: usize = 8 * 1024;
/// Body bytes up to this size are copied behind the head or chunk line, so one write carries both;
/// larger ones are written from their own buffer.
const COPY_LIMIT: usize = 4 * 1024;
/// Bytes gathered before they are written, when a body comes faster than the socket takes it.
const WRITE_BATCH: usize = 64 * 1024;
/// Large pieces gathered before they are written.
const MAX_PIECES: usize = 16;
/// A closing connection whose client may still be sending reads on and throws away what comes
/// (so the answer already sent is not lost to a reset), until the client has been quiet this long...
const LINGER_QUIET: Duration = Duration::from_secs(5);
/// ...or this long has passed in all.
const LINGER_MOST: Duration = Duration::from_secs(30);
/// Write buffer a connection keeps between requests, at most.
const KEPT_WRITE_CAPACITY: usize = 4 * 1024;

/// A connection's socket, the bytes read from it and not yet taken, and the bytes to write to it.
pub(crate) struct ConnIo<S> {
    pub(super) stream: S,
    pub(super) read: BytesMut,
    /// A head, chunk lines and small body pieces, written from `written` on.
    write: Vec<u8>,
    written: usize,
    /// Large body pieces, written after `write` in one vectored write with it.
    pieces: Vec<Bytes>,
    /// How long a write may make no progress.
    write_timeout: Duration,
    /// Armed while a write waits for the socket, boxed since writes rarely wait.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ConnIo<S> {
    pub(crate) fn new(stream: S) -> Self {
        ConnIo {
            stream,
            read: BytesMut::new(),
            write: Vec::new(),
            written: 0,
            pieces: Vec::new(),
            write_timeout: Duration::MAX,
            stalled: None,
        }
    }

    /// Bounds how long a write may wait for the client to take bytes.
    pub(super) fn set_write_timeout(&mut self, timeout: Duration) {
        self.write_timeout = timeout;
    }

    /// Reads what the socket has into the read buffer; returns how many bytes (0 at its end).
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.is_empty() {
            // Nothing buffered: read onto the stack, so a connection waiting for its next request
            // holds no buffer, and a request's bytes get an allocation of their own size.
            let mut scratch = [MaybeUninit::<u8>::uninit(); READ_SIZE];
            let mut buf = ReadBuf::uninit(&mut scratch);
            ready!(Pin::new(&mut self.stream).poll_read(cx, &mut buf))?;
            let filled = buf.filled();
            if self.read.capacity() < filled.len() {
                self.read = BytesMut::with_capacity(filled.len().max(512));
            }
            self.read.extend_from_slice(filled);
            return Poll::Ready(Ok(filled.len()));
        }
        self.read.reserve(READ_SIZE);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.read)
    }

    /// The buffer to encode heads and chunk lines into; what is in it is written by [`Self::poll_write_out`],
    /// before the large pieces queued. Bytes added here while pieces are queued would go out of order:
    /// see [`Self::has_pieces`].
    pub(super) fn out(&mut self) -> &mut Vec<u8> {
        &mut self.write
    }

    /// Whether large pieces are queued (behind which nothing may be added to [`Self::out`]).
    pub(super) fn has_pieces(&self) -> bool {
        !self.pieces.is_empty()
    }

    /// Queues a body piece after what is queued, followed by `suffix`: copied behind the head when
    /// small (one write carries both), else kept as it is for a vectored write.
    pub(super) fn queue(&mut self, data: Bytes, suffix: &'static [u8]) {
        let vectored = self.stream.is_write_vectored();
        if self.pieces.is_empty() && (data.len() <= COPY_LIMIT || !vectored) {
            self.write.extend_from_slice(&data);
            self.write.extend_from_slice(suffix);
        } else {
            self.pieces.push(data);
            if !suffix.is_empty() {
                self.pieces.push(Bytes::from_static(suffix));
            }
        }
    }

    /// Whether what is queued should be written before more is queued.
    pub(super) fn is_full(&self) -> bool {
        let pieces: usize = self.pieces.iter().map(Bytes::len).sum();
        self.write.len() - self.written + pieces >= WRITE_BATCH || self.pieces.len() >= MAX_PIECES
    }

    /// Whether everything queued has been written.
    fn is_written(&self) -> bool {
        self.written == self.write.len() && self.pieces.is_empty()
    }

    /// Writes everything queued (not flushing).
    pub(super) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.is_written() {
            let unwritten = &self.write[self.written..];
            let n = if self.stream.is_write_vectored() {
                let mut slices = [IoSlice::new(&[]); MAX_PIECES + 1];
                slices[0] = IoSlice::new(unwritten);
                for (slice, piece) in slices[1..].iter_mut().zip(&self.pieces) {
                    *slice = IoSlice::new(piece);
                }
                let count = 1 + self.pieces.len().min(MAX_PIECES);
                Pin::new(&mut self.stream).poll_write_vectored(cx, &slices[..count])
            } else {
                let next = if unwritten.is_empty() { &self.pieces[0][..] } else { unwritten };
                Pin::new(&mut self.stream).poll_write(cx, next)
            };
            let n = match n {
                Poll::Ready(n) => n?,
                Poll::Pending => return self.poll_stalled(cx),
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.stalled = None;
            self.consume(n);
        }
        self.write.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// A write is waiting: pending until the write timeout passes with no progress, then an error.
    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let stalled = match &mut self.stalled {
            Some(stalled) => stalled,
            None => {
                let Some(deadline) = tokio::time::Instant::now().checked_add(self.write_timeout) else {
                    return Poll::Pending;
                };
                self.stalled.insert(Box::pin(tokio::time::sleep_until(deadline)))
            }
        };
        ready!(stalled.as_mut().poll(cx));
        self.stalled = None;
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client took no bytes for the write timeout")))
    }

    fn consume(&mut self, mut n: usize) {
        let from_write = n.min(self.write.len() - self.written);
        self.written += from_write;
        n -= from_write;
        let mut done = 0;
        for piece in &mut self.pieces {
            let from_piece = n.min(piece.len());
            piece.advance(from_piece);
            n -= from_piece;
            if !piece.is_empty() {
                break;
            }
            done += 1;
        }
        self.pieces.drain(..done);
    }

    /// Writes everything queued and flushes the stream. A flush that stays pending is bounded by the
    /// write timeout from when it first waited: what a flush writes (TLS records weir's TLS layer
    /// holds, some tens of KiB) cannot be seen going out piece by piece, so a client draining them
    /// slower than that over the whole timeout counts as stopped.
    pub(super) fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_out(cx))?;
        match Pin::new(&mut self.stream).poll_flush(cx) {
            Poll::Pending => self.poll_stalled(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    /// Lets go of buffer memory while the connection waits for its next request.
    pub(super) fn release_idle(&mut self) {
        if self.read.is_empty() {
            self.read = BytesMut::new();
        }
        if self.write.capacity() > KEPT_WRITE_CAPACITY || self.write.is_empty() {
            self.write = Vec::new();
        }
        if self.pieces.capacity() > 0 && self.pieces.is_empty() {
            self.pieces = Vec::new();
        }
    }

    /// Writes everything queued, flushes, and closes the sending side. With `linger` (the client may
    /// still be sending a request body), reads on and discards until the client closes or goes
    /// quiet: a socket closed with unread bytes is reset, and a reset can destroy the answer before
    /// the client reads it (RFC 9112 section 9.6).
    pub(super) async fn close(&mut self, linger: bool) {
        let _ = std::future::poll_fn(|cx| self.poll_flush_out(cx)).await;
        // Bounded too: TLS writes its close_notify here.
        let _ = tokio::time::timeout(self.write_timeout, tokio::io::AsyncWriteExt::shutdown(&mut self.stream)).await;
        if linger {
            self.discard_until_quiet().await;
        }
    }

    async fn discard_until_quiet(&mut self) {
        let end = tokio::time::Instant::now() + LINGER_MOST;
        // On the heap: this runs rarely, and the connection's future stays small.
        let mut sink = vec![0u8; READ_SIZE];
        loop {
            let quiet = (tokio::time::Instant::now() + LINGER_QUIET).min(end);
            let read = tokio::io::AsyncReadExt::read(&mut self.stream, &mut sink);
            match tokio::time::timeout_at(quiet, read).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
    }
}
