//! Strict HTTP/1.1 request framing guard that sits between a connection's socket and the HTTP/1.1 parser.
//!
//! Common parsers accept some framing a gateway must refuse (Content-Length next to Transfer-Encoding, bare LF line
//! endings), and its own parse-error responses cannot carry weir's headers. The guard therefore validates each
//! request head before the parser sees any byte of it. On a violation it never releases the bad head; it hands the parser a
//! small well-formed request instead and raises a [`ConnSignal`], so weir's handler answers with its own 4xx and
//! closes the connection.

#[cfg(test)]
mod hyper_tests;
mod machine;
#[cfg(test)]
mod random_tests;
mod syntax;
#[cfg(test)]
mod tests;

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll, ready};

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use machine::{Machine, Next, READ_CHUNK};

/// What the guard hands the reader in place of a refused head: the handler recognises it through [`ConnSignal`].
const SYNTHETIC_HEAD: &[u8] = b"GET / HTTP/1.1\r\nhost: weir.invalid\r\nconnection: close\r\n\r\n";

/// Limits on a request head and chunked framing, from the listener config.
#[derive(Clone, Copy, Debug)]
pub struct FramingLimits {
    /// Bytes in a whole request head, from the request line through the final CRLF. Also bounds a chunk-size
    /// line and the trailer section of a chunked body.
    pub max_head_bytes: usize,
    /// Field lines in one head, and in one trailer section.
    pub max_headers: usize,
    /// Bytes in the request-target.
    pub max_uri_len: usize,
    /// Time a request head may take to arrive, from its first byte to its last (against slowloris).
    pub head_timeout: Duration,
}

/// Why the guard refused a request head (stable snake_case names via `as_str`, used as metric/log reason detail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Violation {
    /// Both Content-Length and Transfer-Encoding are present.
    ContentLengthWithTransferEncoding = 1,
    /// A Content-Length value that is not 1*DIGIT, or overflows u64.
    InvalidContentLength,
    /// Content-Length fields with different values.
    ConflictingContentLength,
    /// Transfer-Encoding other than one field whose value is `chunked`, or any Transfer-Encoding on HTTP/1.0.
    UnsupportedTransferEncoding,
    /// A LF not preceded by CR.
    BareLineFeed,
    /// A CR not followed by LF.
    BareCarriageReturn,
    /// A request line that is not `token SP request-target SP HTTP/1.0|HTTP/1.1`.
    InvalidRequestLine,
    /// A field name that is empty, not a token, or followed by whitespace before the colon.
    InvalidHeaderName,
    /// A control character other than HTAB in a field value.
    InvalidHeaderValue,
    /// A field line starting with SP or HTAB.
    ObsoleteLineFolding,
    /// A malformed chunk-size line or missing CRLF after chunk data.
    InvalidChunk,
    /// A head (or trailer section) longer than `max_head_bytes`.
    HeadTooLarge,
    /// More than `max_headers` field lines.
    TooManyHeaders,
    /// A request-target longer than `max_uri_len`.
    UriTooLong,
    /// A request head took longer than `head_timeout` to arrive once it had begun.
    HeadTimeout,
    /// More than one Host field line (RFC 9112 section 3.2): which one names the target is ambiguous.
    DuplicateHost,
    /// An HTTP/1.1 request without a Host field line (RFC 9112 section 3.2).
    MissingHost,
}

impl Violation {
    /// Every violation, in discriminant order (the discriminant is the index plus one).
    const ALL: [Violation; 17] = [
        Violation::ContentLengthWithTransferEncoding,
        Violation::InvalidContentLength,
        Violation::ConflictingContentLength,
        Violation::UnsupportedTransferEncoding,
        Violation::BareLineFeed,
        Violation::BareCarriageReturn,
        Violation::InvalidRequestLine,
        Violation::InvalidHeaderName,
        Violation::InvalidHeaderValue,
        Violation::ObsoleteLineFolding,
        Violation::InvalidChunk,
        Violation::HeadTooLarge,
        Violation::TooManyHeaders,
        Violation::UriTooLong,
        Violation::HeadTimeout,
        Violation::DuplicateHost,
        Violation::MissingHost,
    ];

    /// The stable snake_case name, e.g. `content_length_with_transfer_encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Violation::ContentLengthWithTransferEncoding => "content_length_with_transfer_encoding",
            Violation::InvalidContentLength => "invalid_content_length",
            Violation::ConflictingContentLength => "conflicting_content_length",
            Violation::UnsupportedTransferEncoding => "unsupported_transfer_encoding",
            Violation::BareLineFeed => "bare_line_feed",
            Violation::BareCarriageReturn => "bare_carriage_return",
            Violation::InvalidRequestLine => "invalid_request_line",
            Violation::InvalidHeaderName => "invalid_header_name",
            Violation::InvalidHeaderValue => "invalid_header_value",
            Violation::ObsoleteLineFolding => "obsolete_line_folding",
            Violation::InvalidChunk => "invalid_chunk",
            Violation::HeadTooLarge => "head_too_large",
            Violation::TooManyHeaders => "too_many_headers",
            Violation::UriTooLong => "uri_too_long",
            Violation::HeadTimeout => "head_timeout",
            Violation::DuplicateHost => "duplicate_host",
            Violation::MissingHost => "missing_host",
        }
    }

    fn from_code(code: u8) -> Option<Violation> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }
}

/// Shared between a connection's guard and its request handler.
#[derive(Debug, Default)]
pub struct ConnSignal {
    /// A `Violation` discriminant, or 0 for none.
    raised: AtomicU8,
    /// The request about to be handled asked for a WebSocket upgrade, and the guard has stopped
    /// validating: unless the upgrade succeeds, the connection must close after the response.
    tunnel: AtomicBool,
}

impl ConnSignal {
    /// Takes the violation raised for the request about to be handled, if any.
    pub fn take(&self) -> Option<Violation> {
        Violation::from_code(self.raised.swap(0, Ordering::AcqRel))
    }

    /// Takes whether the request about to be handled is a WebSocket upgrade the guard let through.
    pub fn take_tunnel(&self) -> bool {
        // A plain load first: the common request is no tunnel, and pays no read-modify-write.
        self.tunnel.load(Ordering::Acquire) && self.tunnel.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn raise(&self, violation: Violation) {
        self.raised.store(violation as u8, Ordering::Release);
    }
}

/// Whether the guard is still validating, or has refused the connection.
#[derive(Clone, Copy, Debug)]
enum Phase {
    Validating,
    /// A violation was found after validated bytes were handed out in the same read; it is met on
    /// the next read.
    Violated(Violation),
    /// Handing out the synthetic head; `sent` bytes of it are out.
    Refusing {
        violation: Violation,
        sent: usize,
    },
    /// The synthetic head is out: reads wait forever, so the server answers it and closes the
    /// connection itself (an EOF here would make it drop the connection unanswered).
    Stalled,
    /// Every read returns EOF and the inner stream is not read again.
    Closed,
}

/// A framing violation inside a message body, surfaced to the server as a read error so that the request
/// body fails; the handler finds the violation in the error's chain.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("request framing: {}", .0.as_str())]
pub struct BodyFramingError(pub Violation);

/// Wraps a connection's byte stream; AsyncRead validates, AsyncWrite (incl. poll_write_vectored, is_write_vectored,
/// poll_flush, poll_shutdown) passes through untouched.
///
/// Take the signal when the server hands a request to the service, not later in its future, so a read-ahead cannot
/// misattribute it. `hyper_tests` pins this.
#[derive(Debug)]
pub struct FramingGuard<S> {
    io: S,
    signal: Arc<ConnSignal>,
    machine: Machine,
    phase: Phase,
    head_timeout: Duration,
    /// Runs while a head is arriving in pieces; boxed only for heads that span reads.
    head_deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> FramingGuard<S> {
    /// Wraps `io`; violations are reported through `signal`.
    pub fn new(io: S, limits: FramingLimits, signal: Arc<ConnSignal>) -> Self {
        Self {
            io,
            signal,
            machine: Machine::new(limits),
            phase: Phase::Validating,
            head_timeout: limits.head_timeout,
            head_deadline: None,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Capacity of the guard's own buffer, to check that it is freed when drained.
    #[cfg(test)]
    fn buffered_capacity(&self) -> usize {
        self.machine.buffered_capacity()
    }

    /// Refuses the connection: a head-level violation becomes the synthetic request; one inside a body
    /// becomes a read error for the body being read.
    fn refuse(&mut self, violation: Violation) -> Option<io::Error> {
        let in_body = self.machine.in_body();
        self.machine.discard();
        self.head_deadline = None;
        if in_body {
            self.phase = Phase::Closed;
            return Some(io::Error::new(io::ErrorKind::InvalidData, BodyFramingError(violation)));
        }
        self.phase = Phase::Refusing { violation, sent: 0 };
        None
    }

    /// Whether the head now arriving (or, on a new connection, the first byte) has run out of time;
    /// starts its clock on first call.
    fn head_timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.machine.head_in_progress() && !self.machine.awaiting_first_byte() {
            self.head_deadline = None;
            return false;
        }
        let timeout = self.head_timeout;
        let deadline = self.head_deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        deadline.as_mut().poll(cx).is_ready()
    }

    fn close(&mut self) {
        self.machine.discard();
        self.head_deadline = None;
        self.phase = Phase::Closed;
    }

    fn emit_synthetic(&mut self, violation: Violation, sent: usize, dst: &mut ReadBuf<'_>) {
        if sent == 0 {
            // Raised only now, not at detection, so an earlier pipelined request's handler cannot take it.
            self.signal.raise(violation);
        }
        let rest = &SYNTHETIC_HEAD[sent..];
        let n = rest.len().min(dst.remaining());
        dst.put_slice(&rest[..n]);
        let sent = sent + n;
        self.phase = if sent == SYNTHETIC_HEAD.len() { Phase::Stalled } else { Phase::Refusing { violation, sent } };
    }
}

impl<S: AsyncRead + Unpin> FramingGuard<S> {
    /// Reads up to `max` bytes from the inner stream into the machine's buffer; returns how many (0 at EOF).
    fn fill(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<io::Result<usize>> {
        // Reading into uninitialised stack memory avoids both zeroing and holding capacity across a Pending read.
        let mut scratch = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut read = ReadBuf::uninit(&mut scratch[..max.clamp(1, READ_CHUNK)]);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut read))?;
        self.machine.append(read.filled());
        Poll::Ready(Ok(read.filled().len()))
    }

    /// Reads straight into `dst` and validates there what came, keeping in `dst` only whole validated
    /// elements. Ready with `true` when bytes were handed over, or the guard has something to do next:
    /// a violation to meet, a partial element to complete, an end.
    fn read_in_place(&mut self, cx: &mut Context<'_>, dst: &mut ReadBuf<'_>) -> Poll<io::Result<bool>> {
        let before = dst.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, dst) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => return self.read_pending(cx).map(|()| Ok(false)),
        }
        if dst.filled().len() == before {
            self.close(); // EOF: reported by the caller.
            return Poll::Ready(Ok(false));
        }
        let (valid, verdict) = self.machine.validate_in_place(&mut dst.filled_mut()[before..]);
        dst.set_filled(before + valid);
        if valid > 0 {
            self.head_deadline = None;
            if self.machine.take_tunnel() {
                self.signal.tunnel.store(true, Ordering::Release);
            }
        }
        match verdict {
            // Validated bytes are out: the violation is met on the next read.
            Err(violation) if valid > 0 => self.phase = Phase::Violated(violation),
            Err(violation) => {
                if let Some(error) = self.refuse(violation) {
                    return Poll::Ready(Err(error));
                }
            }
            Ok(()) => {}
        }
        Poll::Ready(Ok(valid > 0))
    }

    /// A read found nothing: pending, unless the head now arriving has run out of time, which the
    /// guard then acts on (ready).
    fn read_pending(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.head_timed_out(cx) {
            return Poll::Pending;
        }
        if self.machine.awaiting_first_byte() {
            // A connection that never sent a byte is closed without a word, as a browser's
            // speculative connection expects.
            self.close();
        } else {
            let _ = self.refuse(Violation::HeadTimeout);
        }
        Poll::Ready(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FramingGuard<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, dst: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if dst.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let before = dst.filled().len();
        loop {
            match this.phase {
                Phase::Validating => {}
                Phase::Violated(violation) => {
                    if let Some(error) = this.refuse(violation) {
                        return Poll::Ready(Err(error));
                    }
                    continue;
                }
                Phase::Refusing { violation, sent } => {
                    this.emit_synthetic(violation, sent, dst);
                    return Poll::Ready(Ok(()));
                }
                Phase::Stalled => return Poll::Pending,
                Phase::Closed => return Poll::Ready(Ok(())),
            }
            let next = this.machine.advance();
            if !matches!(next, Ok(Next::Release)) && dst.filled().len() > before {
                // Validated bytes are out (a head with the body bytes that came with it, say): hand
                // them over before any more I/O, and meet a violation on the next read.
                if let Err(violation) = next {
                    this.phase = Phase::Violated(violation);
                }
                return Poll::Ready(Ok(()));
            }
            match next {
                Err(violation) => {
                    if let Some(error) = this.refuse(violation) {
                        return Poll::Ready(Err(error));
                    }
                }
                Ok(Next::Release) => {
                    this.head_deadline = None;
                    if this.machine.take_tunnel() {
                        this.signal.tunnel.store(true, Ordering::Release);
                    }
                    this.machine.release_into(dst);
                    if dst.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                }
                Ok(Next::InPlace) => match this.read_in_place(cx, dst) {
                    Poll::Ready(Ok(true)) => return Poll::Ready(Ok(())),
                    Poll::Ready(Ok(false)) => {}
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending => return Poll::Pending,
                },
                Ok(Next::Fill(max)) => match this.fill(cx, max) {
                    Poll::Ready(Ok(0)) => this.close(), // EOF: a partial head is never released.
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending => ready!(this.read_pending(cx)),
                },
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FramingGuard<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
