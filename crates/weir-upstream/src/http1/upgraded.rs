//! A connection after `101 Switching Protocols` (an upstream's here; a client's in weir's server):
//! the raw stream, with whatever bytes came after the response head read first.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::stream::Stream;

/// A stream with bytes already read from it put back in front.
pub struct Rewound<S> {
    stream: S,
    read_first: BytesMut,
}

impl<S> Rewound<S> {
    pub fn new(stream: S, read_first: BytesMut) -> Self {
        Rewound { stream, read_first }
    }
}

/// An upstream's switched connection.
pub type Upgraded = Rewound<Stream>;

/// The switched connection as a response extension (extensions must be `Clone`): the first to
/// [`take`](PendingUpgrade::take) it has it.
#[derive(Clone)]
pub struct PendingUpgrade(Arc<Mutex<Option<Upgraded>>>);

impl PendingUpgrade {
    pub(super) fn new(upgraded: Upgraded) -> Self {
        PendingUpgrade(Arc::new(Mutex::new(Some(upgraded))))
    }

    pub fn take(&self) -> Option<Upgraded> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewound<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read_first.has_remaining() {
            let n = this.read_first.len().min(buf.remaining());
            buf.put_slice(&this.read_first[..n]);
            this.read_first.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewound<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
