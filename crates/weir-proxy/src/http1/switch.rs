//! A client connection after `101 Switching Protocols`, or after an HTTP/2 preface on a listener
//! that serves both protocols: the raw stream, with the bytes already read from it read first.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

/// A client connection's stream, whatever it is (TCP or TLS, behind the framing guard).
pub trait ClientStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<S: AsyncRead + AsyncWrite + Send + Unpin> ClientStream for S {}

/// A stream with bytes already read from it put back in front.
pub struct Rewound<S> {
    stream: S,
    read_first: BytesMut,
}

impl<S> Rewound<S> {
    pub(super) fn new(stream: S, read_first: BytesMut) -> Self {
        Rewound { stream, read_first }
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

/// The client's side of a protocol switch once its `101` is written.
pub type Switched = Rewound<Box<dyn ClientStream>>;

/// A request extension (extensions must be `Clone`): the client's connection, handed over once the
/// `101` answering the request has been written. The first to [`take`](ClientSwitch::take) it has it.
#[derive(Clone)]
pub struct ClientSwitch(Arc<Mutex<Option<oneshot::Receiver<Switched>>>>);

impl ClientSwitch {
    pub(super) fn new() -> (ClientSwitch, oneshot::Sender<Switched>) {
        let (sender, receiver) = oneshot::channel();
        (ClientSwitch(Arc::new(Mutex::new(Some(receiver)))), sender)
    }

    /// The connection to come, once; `None` after the first call.
    pub fn take(&self) -> Option<oneshot::Receiver<Switched>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }
}
