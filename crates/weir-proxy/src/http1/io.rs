//! A client connection's socket with its two buffers. Between requests neither holds memory: bytes
//! are first read into a scratch array on the stack and copied out only when some arrived, and the
//! write buffer is given back once a response is out.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket at a time, at most.
const READ_SIZE: usize = 8 * 1024;
/// Body bytes up to this size are copied behind the head or chunk line, so one write carries both;
/// larger ones are written from their own buffer.
const COPY_LIMIT: usize = 4 * 1024;
/// Bytes gathered before they are written, when a body comes faster than the socket takes it.
const WRITE_BATCH: usize = 16 * 1024;
/// Write buffer a connection keeps between requests, at most.
const KEPT_WRITE_CAPACITY: usize = 4 * 1024;

/// A connection's socket, the bytes read from it and not yet taken, and the bytes to write to it.
pub(crate) struct ConnIo<S> {
    pub(super) stream: S,
    pub(super) read: BytesMut,
    /// A head, chunk lines and small body pieces, written from `written` on.
    write: Vec<u8>,
    written: usize,
    /// A large body piece and what follows it (a chunk's line end), written after `write`.
    tail: [Bytes; 2],
}

impl<S: AsyncRead + AsyncWrite + Unpin> ConnIo<S> {
    pub(crate) fn new(stream: S) -> Self {
        ConnIo { stream, read: BytesMut::new(), write: Vec::new(), written: 0, tail: [Bytes::new(), Bytes::new()] }
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

    /// The buffer to encode heads and chunk lines into; what is in it is written by [`Self::poll_write_out`].
    pub(super) fn out(&mut self) -> &mut Vec<u8> {
        &mut self.write
    }

    /// Queues a body piece after what `out` holds, followed by `suffix`.
    pub(super) fn queue(&mut self, data: Bytes, suffix: &'static [u8]) {
        if data.len() <= COPY_LIMIT || !self.stream.is_write_vectored() {
            self.write.extend_from_slice(&data);
            self.write.extend_from_slice(suffix);
        } else {
            self.tail = [data, Bytes::from_static(suffix)];
        }
    }

    /// Whether what is queued should be written before more is queued.
    pub(super) fn is_full(&self) -> bool {
        self.write.len() - self.written >= WRITE_BATCH || !self.tail.iter().all(Bytes::is_empty)
    }

    /// Whether everything queued has been written.
    fn is_written(&self) -> bool {
        self.written == self.write.len() && self.tail.iter().all(Bytes::is_empty)
    }

    /// Writes everything queued (not flushing).
    pub(super) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.is_written() {
            let n = if self.stream.is_write_vectored() {
                let slices = [
                    IoSlice::new(&self.write[self.written..]),
                    IoSlice::new(&self.tail[0]),
                    IoSlice::new(&self.tail[1]),
                ];
                ready!(Pin::new(&mut self.stream).poll_write_vectored(cx, &slices))?
            } else {
                let next = [&self.write[self.written..], &self.tail[0][..], &self.tail[1][..]];
                let next = next.into_iter().find(|piece| !piece.is_empty()).unwrap_or_default();
                ready!(Pin::new(&mut self.stream).poll_write(cx, next))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.consume(n);
        }
        self.write.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    fn consume(&mut self, mut n: usize) {
        let from_write = n.min(self.write.len() - self.written);
        self.written += from_write;
        n -= from_write;
        for piece in &mut self.tail {
            let from_piece = n.min(piece.len());
            piece.advance(from_piece);
            n -= from_piece;
        }
    }

    /// Writes everything queued and flushes the stream.
    pub(super) fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_out(cx))?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    /// Lets go of buffer memory while the connection waits for its next request.
    pub(super) fn release_idle(&mut self) {
        if self.read.is_empty() {
            self.read = BytesMut::new();
        }
        if self.write.capacity() > KEPT_WRITE_CAPACITY || self.write.is_empty() {
            self.write = Vec::new();
        }
    }

    /// Writes everything queued, flushes, and closes the sending side.
    pub(super) async fn close(&mut self) {
        let _ = std::future::poll_fn(|cx| self.poll_flush_out(cx)).await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut self.stream).await;
    }
}
