//! Tests for the framing guard: what the reader receives, and what the signal says, for inputs split many ways.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::{ConnSignal, FramingGuard, FramingLimits, SYNTHETIC_HEAD, Violation};

pub(super) const LIMITS: FramingLimits =
    FramingLimits { max_head_bytes: 1024, max_headers: 8, max_uri_len: 64, head_timeout: Duration::from_secs(60) };

/// An inner stream that hands out its input in exactly the pieces given (never more than one piece per read).
pub(super) struct Pieces(pub(super) VecDeque<Vec<u8>>);

impl Pieces {
    pub(super) fn left(&self) -> usize {
        self.0.iter().map(Vec::len).sum()
    }
}

impl AsyncRead for Pieces {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, dst: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let queue = &mut self.get_mut().0;
        if let Some(front) = queue.front_mut() {
            let n = front.len().min(dst.remaining());
            dst.put_slice(&front[..n]);
            front.drain(..n);
            if front.is_empty() {
                queue.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn guard(pieces: Vec<Vec<u8>>) -> (FramingGuard<Pieces>, Arc<ConnSignal>) {
    let signal = Arc::new(ConnSignal::default());
    let pieces = pieces.into_iter().filter(|p| !p.is_empty()).collect();
    (FramingGuard::new(Pieces(pieces), LIMITS, signal.clone()), signal)
}

/// How reading a guard ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// EOF: the inner stream ended.
    Eof,
    /// The synthetic head is out and reads wait forever.
    Stalled,
    /// A violation inside a body, reported as a read error.
    Failed(Violation),
}

/// One read, polled once (the test streams never wait, so only a stalled guard is pending).
pub(super) fn poll_once(guard: &mut FramingGuard<Pieces>, buf: &mut [u8]) -> Result<usize, End> {
    let mut read_buf = ReadBuf::new(buf);
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(guard).poll_read(&mut cx, &mut read_buf) {
        Poll::Pending => Err(End::Stalled),
        Poll::Ready(Ok(())) if read_buf.filled().is_empty() => Err(End::Eof),
        Poll::Ready(Ok(())) => Ok(read_buf.filled().len()),
        Poll::Ready(Err(error)) => {
            let inner = error.get_ref().and_then(|e| e.downcast_ref::<super::BodyFramingError>());
            Err(End::Failed(inner.expect("only framing errors are raised").0))
        }
    }
}

/// Reads until the guard ends, in reads of at most `chunk` bytes; returns the bytes, each read's
/// size, and how it ended.
async fn read_all(guard: &mut FramingGuard<Pieces>, chunk: usize) -> (Vec<u8>, Vec<usize>, End) {
    let (mut out, mut sizes, mut buf) = (Vec::new(), Vec::new(), vec![0; chunk]);
    loop {
        match poll_once(guard, &mut buf) {
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                sizes.push(n);
            }
            Err(end) => return (out, sizes, end),
        }
    }
}

/// Feeds `pieces`, reads everything and checks the output and the signal: a head violation ends in a
/// stalled guard with the signal raised, no violation in EOF. Either way the end sticks.
async fn check(pieces: Vec<Vec<u8>>, chunk: usize, expected: &[u8], violation: Option<Violation>) {
    let end = if violation.is_some() { End::Stalled } else { End::Eof };
    check_end(pieces, chunk, expected, end, violation).await;
}

/// Like [`check`] for a violation inside a body: a read error, no synthetic head, no signal.
async fn check_body_error(pieces: Vec<Vec<u8>>, chunk: usize, expected: &[u8], violation: Violation) {
    check_end(pieces, chunk, expected, End::Failed(violation), None).await;
}

async fn check_end(pieces: Vec<Vec<u8>>, chunk: usize, expected: &[u8], end: End, signalled: Option<Violation>) {
    let (mut guard, signal) = guard(pieces);
    let (out, _, ended) = read_all(&mut guard, chunk).await;
    assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(expected), "chunk {chunk}");
    assert_eq!(ended, end, "chunk {chunk}");
    assert_eq!(signal.take(), signalled);
    assert_eq!(signal.take(), None);
    let left = guard.get_ref().left();
    let after = if end == End::Stalled { End::Stalled } else { End::Eof };
    for _ in 0..3 {
        assert_eq!(poll_once(&mut guard, &mut [0; 16]), Err(after));
    }
    assert_eq!(guard.get_ref().left(), left, "inner stream read after the end");
    assert_eq!(guard.buffered_capacity(), 0);
}

/// Every two-piece split, one-byte pieces, and several reader buffer sizes.
async fn check_all_splits(input: &[u8], expected: &[u8], violation: Option<Violation>) {
    for chunk in [1, 3, 64, 8192] {
        check(input.iter().map(|&b| vec![b]).collect(), chunk, expected, violation).await;
        for at in 0..=input.len() {
            check(vec![input[..at].to_vec(), input[at..].to_vec()], chunk, expected, violation).await;
        }
    }
}

fn refused(prefix: &[u8]) -> Vec<u8> {
    [prefix, SYNTHETIC_HEAD].concat()
}

const GET: &[u8] = b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
const POST: &[u8] = b"POST /p HTTP/1.1\r\nhost: x\r\nContent-Length: 11\r\n\r\nhello\r\n\nabc";
const CHUNKED: &[u8] = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:  Chunked \r\n\r\n\
    5;name=value;q=\"a \\\"b\\\" c\"\r\nhello\r\n\
    A ; ext\r\n0123456789\r\n\
    0;last\r\nExpires: never\r\nX-Sum: 1\r\n\r\n";
const H2: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00\n\x00\r\x03\xff\xfe";

#[tokio::test]
async fn valid_requests_pass_unchanged_at_every_split() {
    let pipelined = [GET, POST, CHUNKED, GET].concat();
    for input in [GET, POST, CHUNKED, H2, &pipelined] {
        check_all_splits(input, input, None).await;
    }
    let http10 = b"GET / HTTP/1.0\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok";
    check_all_splits(http10, http10, None).await;
}

#[tokio::test]
async fn leading_empty_lines_are_dropped() {
    let input = [b"\r\n\r\n".as_slice(), GET, b"\r\n", GET].concat();
    check_all_splits(&input, &[GET, GET].concat(), None).await;
}

#[tokio::test]
async fn pipelined_requests_in_one_read() {
    let input = [GET, POST, GET].concat();
    let (mut guard, signal) = guard(vec![input.clone()]);
    let (out, sizes, _) = read_all(&mut guard, 8192).await;
    assert_eq!(out, input);
    // Everything validated that is already buffered goes out in one read: heads, and bodies behind them.
    assert_eq!(sizes, [input.len()]);
    assert_eq!(signal.take(), None);
}

#[tokio::test]
async fn http2_preface_switches_to_pass_through() {
    let (mut guard, _) = guard(vec![H2.to_vec(), b"\n\n\r junk HTTP/9\n".to_vec()]);
    let (out, _, _) = read_all(&mut guard, 7).await;
    assert_eq!(out, [H2, b"\n\n\r junk HTTP/9\n"].concat());
}

#[tokio::test]
async fn http2_preface_later_on_a_connection_is_refused() {
    let input = [GET, H2].concat();
    check_all_splits(&input, &refused(GET), Some(Violation::InvalidRequestLine)).await;
}

#[tokio::test]
async fn a_websocket_upgrade_switches_to_pass_through() {
    let head: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n";
    let input = [head, b"\x81\x05hello\n"].concat();
    check_all_splits(&input, &input, None).await;
}

#[tokio::test]
async fn other_upgrades_and_upgrades_with_a_body_keep_being_validated() {
    let h2c: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n";
    check_all_splits(&[h2c, b"x\n"].concat(), &refused(h2c), Some(Violation::BareLineFeed)).await;
    let post: &[u8] =
        b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 1\r\n\r\nA";
    check_all_splits(&[post, b"x\n"].concat(), &refused(post), Some(Violation::BareLineFeed)).await;
    let http10: &[u8] = b"GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
    check_all_splits(&[http10, b"x\n"].concat(), &refused(http10), Some(Violation::BareLineFeed)).await;
}

/// One bad head per case; each is also sent after a good request, which must come through intact.
const BAD_HEADS: &[(&[u8], Violation)] = {
    use Violation::*;
    &[
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ContentLengthWithTransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello",
            ContentLengthWithTransferEncoding,
        ),
        (b"POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n", ConflictingContentLength),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", UnsupportedTransferEncoding),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", UnsupportedTransferEncoding),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", UnsupportedTransferEncoding),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked;x\r\n\r\n", UnsupportedTransferEncoding),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            UnsupportedTransferEncoding,
        ),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", UnsupportedTransferEncoding),
        (b"GET / HTTP/1.1\nHost: x\r\n\r\n", BareLineFeed),
        (b"GET / HTTP/1.1\r\nHost: x\n\r\n", BareLineFeed),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\n", BareLineFeed),
        (b"\nGET / HTTP/1.1\r\n\r\n", BareLineFeed),
        (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", BareCarriageReturn),
        (b"GET /\r HTTP/1.1\r\n\r\n", BareCarriageReturn),
        (b"GET  / HTTP/1.1\r\n\r\n", InvalidRequestLine),
        (b"GET / HTTP/1.1 \r\n\r\n", InvalidRequestLine),
        (b" GET / HTTP/1.1\r\n\r\n", InvalidRequestLine),
        (b"GET / HTTP/1.2\r\n\r\n", InvalidRequestLine),
        (b"GET / http/1.1\r\n\r\n", InvalidRequestLine),
        (b"GET /\x01 HTTP/1.1\r\n\r\n", InvalidRequestLine),
        (b"G(T / HTTP/1.1\r\n\r\n", InvalidRequestLine),
        (b"GET\r\n\r\n", InvalidRequestLine),
        (b"GET / HTTP/1.1\r\nX Y: z\r\n\r\n", InvalidHeaderName),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", InvalidHeaderName),
        (b"GET / HTTP/1.1\r\n: x\r\n\r\n", InvalidHeaderName),
        (b"GET / HTTP/1.1\r\nno-colon\r\n\r\n", InvalidHeaderName),
        (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", InvalidHeaderValue),
        (b"GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", InvalidHeaderValue),
        (b"GET / HTTP/1.1\r\nX: \x0c\r\n\r\n", InvalidHeaderValue),
        (b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", ObsoleteLineFolding),
        (b"GET / HTTP/1.1\r\n\tX: a\r\n\r\n", ObsoleteLineFolding),
        (
            b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: 8\r\nI: 9\r\n\r\n",
            TooManyHeaders,
        ),
        (b"GET /0123456789012345678901234567890123456789012345678901234567890123456789 HTTP/1.1\r\n\r\n", UriTooLong),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\nhost: b\r\n\r\n", DuplicateHost),
        (b"GET / HTTP/1.0\r\nHOST: a\r\nHost: a\r\n\r\n", DuplicateHost),
        (b"GET / HTTP/1.1\r\nX: host\r\n\r\n", MissingHost),
        (b"GET http://a.example/ HTTP/1.1\r\n\r\n", MissingHost),
        (b"POST / HTTP/1.1\r\nHosts: a\r\nContent-Length: 1\r\n\r\nA", MissingHost),
    ]
};

#[tokio::test]
async fn each_violation_refuses_the_head_alone_and_after_a_good_request() {
    for &(bad, violation) in BAD_HEADS {
        let tail = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        for chunk in [1, 5, 8192] {
            check(vec![bad.to_vec(), tail.clone()], chunk, &refused(b""), Some(violation)).await;
            let input = [GET, POST, bad].concat();
            check(vec![input, tail.clone()], chunk, &refused(&[GET, POST].concat()), Some(violation)).await;
        }
    }
}

#[tokio::test]
async fn host_is_required_of_http11_only_and_framing_faults_are_named_first() {
    let http10: &[u8] = b"GET / HTTP/1.0\r\n\r\n";
    check(vec![http10.to_vec()], 8192, http10, None).await;
    let smuggled: &[u8] = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    check(vec![smuggled.to_vec()], 8192, &refused(b""), Some(Violation::ContentLengthWithTransferEncoding)).await;
    check_all_splits(&[GET, b"GET / HTTP/1.1\r\n\r\n"].concat(), &refused(GET), Some(Violation::MissingHost)).await;
}

#[tokio::test]
async fn some_violations_at_every_split() {
    let bad = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    check_all_splits(&[GET, bad].concat(), &refused(GET), Some(Violation::ContentLengthWithTransferEncoding)).await;
    let bad = b"GET / HTTP/1.1\r\nX: 1\r\r\n\r\n";
    check_all_splits(bad, &refused(b""), Some(Violation::BareCarriageReturn)).await;
}

#[tokio::test]
async fn oversized_heads() {
    let value = vec![b'v'; 2000];
    let long_field = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &value, b"\r\n\r\n"].concat();
    check(vec![long_field], 8192, &refused(b""), Some(Violation::HeadTooLarge)).await;
    // No line end at all: refused once the limit is reached, without waiting for more.
    let endless = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &value].concat();
    check(vec![endless], 100, &refused(b""), Some(Violation::HeadTooLarge)).await;
    let endless_uri = [b"GET /".as_slice(), &value].concat();
    check(vec![endless_uri], 100, &refused(b""), Some(Violation::UriTooLong)).await;
    // Empty lines before the request line count against the head limit.
    let blank = b"\r\n".repeat(600);
    check(vec![blank, GET.to_vec()], 8192, &refused(b""), Some(Violation::HeadTooLarge)).await;
}

const CHUNKED_HEAD: &[u8] = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";

#[tokio::test]
async fn chunk_violations_after_data_was_released() {
    let sent: &[u8] = b"5\r\nhello\r\n";
    let cases: [(&[u8], Violation); 11] = [
        (b"zz\r\n", Violation::InvalidChunk),
        (b"\r\n", Violation::InvalidChunk),
        (b"11111111111111111\r\n", Violation::InvalidChunk),
        (b"5 \r\n", Violation::InvalidChunk),
        (b"5;\r\n", Violation::InvalidChunk),
        (b"5;a=\r\n", Violation::InvalidChunk),
        (b"5;a=\"x\r\n", Violation::InvalidChunk),
        (b"5\nhello\r\n", Violation::BareLineFeed),
        (b"0\r\nX: 1\n\r\n", Violation::BareLineFeed),
        (b"0\r\nX : 1\r\n\r\n", Violation::InvalidHeaderName),
        (
            b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: 8\r\nI: 9\r\n\r\n",
            Violation::TooManyHeaders,
        ),
    ];
    for (bad, violation) in cases {
        let input = [CHUNKED_HEAD, sent, bad].concat();
        // The last-chunk line is released on its own; the trailer section is held back whole.
        let last_chunk: &[u8] = if bad.starts_with(b"0\r\n") { b"0\r\n" } else { b"" };
        check_body_error(vec![input], 8192, &[CHUNKED_HEAD, sent, last_chunk].concat(), violation).await;
    }
    // Chunk data not followed by CRLF: the data is out, the bytes after it are not.
    let cases: [(&[u8], Violation); 3] =
        [(b"XY", Violation::InvalidChunk), (b"\n0", Violation::BareLineFeed), (b"\rX", Violation::BareCarriageReturn)];
    for (bad, violation) in cases {
        let input = [CHUNKED_HEAD, b"5\r\nhello", bad].concat();
        for at in 0..=input.len() {
            let pieces = vec![input[..at].to_vec(), input[at..].to_vec()];
            check_body_error(pieces, 8192, &[CHUNKED_HEAD, b"5\r\nhello"].concat(), violation).await;
        }
    }
    let long_ext = [b"5;x=".as_slice(), &[b'e'; 1100], b"\r\n"].concat();
    check_body_error(vec![[CHUNKED_HEAD, &long_ext].concat()], 8192, CHUNKED_HEAD, Violation::InvalidChunk).await;
    let long_trailer = [b"0\r\nX: ".as_slice(), &[b't'; 1100], b"\r\n\r\n"].concat();
    let expected = [CHUNKED_HEAD, b"0\r\n"].concat();
    check_body_error(vec![[CHUNKED_HEAD, &long_trailer].concat()], 8192, &expected, Violation::HeadTooLarge).await;
}

#[tokio::test]
async fn a_body_and_the_head_after_it_are_validated_where_they_are_read() {
    let head = b"POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n";
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let input = [head.as_slice(), &body, GET].concat();
    let (mut guard, signal) = guard(vec![input.clone()]);
    let mut buf = vec![0; 65536];
    let mut sizes = Vec::new();
    let mut out = Vec::new();
    loop {
        let n = guard.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        sizes.push((n, guard.buffered_capacity()));
    }
    assert_eq!(out, input);
    // Each read fills the reader's buffer straight from the stream: the head, the body and the next
    // head are checked there, and the guard's own buffer is never used.
    assert_eq!(sizes, [(65536, 0), (input.len() - 65536, 0)]);
    assert_eq!(signal.take(), None);
}

#[tokio::test]
async fn buffer_holds_only_a_split_element_and_is_freed_when_drained() {
    // Whole requests are validated in the reader's buffer.
    let (mut whole, _) = guard(vec![[GET, GET].concat()]);
    let mut one_request = vec![0; GET.len()];
    assert_eq!(whole.read(&mut one_request).await.unwrap(), GET.len());
    assert_eq!(whole.buffered_capacity(), 0);
    // A head split across reads is completed in the buffer, with what came after it.
    let (mut split, _) = guard(vec![GET[..10].to_vec(), [&GET[10..], GET].concat()]);
    assert_eq!(split.read(&mut one_request).await.unwrap(), GET.len());
    assert!(split.buffered_capacity() > 0, "the second request is still held");
    assert_eq!(split.read(&mut one_request).await.unwrap(), GET.len());
    assert_eq!(split.buffered_capacity(), 0);
    let mut buf = [0; 8192];

    // An idle keep-alive connection whose next read is pending holds no buffer either.
    let (client, server) = tokio::io::duplex(1024);
    let mut guard = FramingGuard::new(server, LIMITS, Arc::new(ConnSignal::default()));
    let mut client = client;
    client.write_all(GET).await.unwrap();
    assert_eq!(guard.read(&mut buf).await.unwrap(), GET.len());
    let mut read_buf = ReadBuf::new(&mut buf);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Pin::new(&mut guard).poll_read(&mut cx, &mut read_buf).is_pending());
    assert_eq!(guard.machine.buffered_capacity(), 0);
    // A partial head is held, not released.
    client.write_all(&GET[..10]).await.unwrap();
    assert!(Pin::new(&mut guard).poll_read(&mut cx, &mut read_buf).is_pending());
    assert_eq!(read_buf.filled().len(), 0);
    assert!(guard.machine.buffered_capacity() > 0);
}

#[tokio::test]
async fn signal_is_raised_only_when_the_synthetic_head_is_handed_out() {
    let (mut guard, signal) = guard(vec![[GET, b"BAD\r\n\r\n"].concat()]);
    let mut buf = [0; 8192];
    assert_eq!(guard.read(&mut buf).await.unwrap(), GET.len());
    assert_eq!(signal.take(), None);
    let n = guard.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], SYNTHETIC_HEAD);
    assert_eq!(signal.take(), Some(Violation::InvalidRequestLine));
    assert_eq!(poll_once(&mut guard, &mut buf), Err(End::Stalled));
}

#[tokio::test]
async fn eof_mid_head_releases_nothing() {
    check(vec![GET[..GET.len() - 1].to_vec()], 8192, b"", None).await;
    check(vec![[POST, &GET[..20]].concat()], 8192, POST, None).await;
    // EOF mid-body: what arrived is passed on, the reader sees the truncation.
    check(vec![POST[..POST.len() - 3].to_vec()], 8192, &POST[..POST.len() - 3], None).await;
}

#[tokio::test]
async fn writes_pass_through() {
    let (mut client, server) = tokio::io::duplex(1024);
    let mut guard = FramingGuard::new(server, LIMITS, Arc::new(ConnSignal::default()));
    assert_eq!(guard.is_write_vectored(), guard.get_ref().is_write_vectored());
    guard.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
    let n = guard.write_vectored(&[std::io::IoSlice::new(b"a"), std::io::IoSlice::new(b"b")]).await.unwrap();
    guard.flush().await.unwrap();
    guard.shutdown().await.unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, [b"HTTP/1.1 200 OK\r\n\r\n".as_slice(), &b"ab"[..n]].concat());
}

#[test]
fn violation_names_and_codes_round_trip() {
    for (i, v) in Violation::ALL.into_iter().enumerate() {
        assert_eq!(v as usize, i + 1);
        assert_eq!(Violation::from_code(v as u8), Some(v));
        assert!(v.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    }
    assert_eq!(Violation::ContentLengthWithTransferEncoding.as_str(), "content_length_with_transfer_encoding");
    assert_eq!(Violation::from_code(0), None);
    assert_eq!(Violation::from_code(Violation::ALL.len() as u8 + 1), None);
}

#[tokio::test]
async fn limits_are_inclusive() {
    let head = |len: usize| {
        let fixed = b"GET / HTTP/1.1\r\nHost: \r\n\r\n".len();
        [b"GET / HTTP/1.1\r\nHost: ".as_slice(), &vec![b'v'; len - fixed], b"\r\n\r\n"].concat()
    };
    check(vec![head(1024)], 8192, &head(1024), None).await;
    check(vec![head(1025)], 8192, &refused(b""), Some(Violation::HeadTooLarge)).await;
    let uri = |len: usize| format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(len - 1)).into_bytes();
    check(vec![uri(64)], 8192, &uri(64), None).await;
    check(vec![uri(65)], 8192, &refused(b""), Some(Violation::UriTooLong)).await;
}

#[test]
fn find_byte_finds_the_first_match_at_every_offset() {
    for len in 0..40 {
        for at in 0..len {
            let mut hay = vec![b'a'; len];
            hay[at] = b'\n';
            hay[len - 1] = b'\n';
            assert_eq!(weir_upstream::wire::find_byte(b'\n', &hay), Some(at));
        }
        assert_eq!(weir_upstream::wire::find_byte(b'\n', &vec![0x8a; len]), None);
    }
}

#[test]
fn find_line_break_finds_the_first_cr_or_lf_at_every_offset() {
    for len in 0..40 {
        for at in 0..len {
            for first in [b'\r', b'\n'] {
                let mut hay = vec![0x8d; len];
                hay[at] = first;
                hay[len - 1] = b'\n';
                assert_eq!(weir_upstream::wire::find_line_break(&hay), Some(at), "{first} at {at} of {len}");
            }
        }
        assert_eq!(weir_upstream::wire::find_line_break(&vec![0x0b; len]), None);
    }
}

#[test]
fn field_values_are_checked_at_every_offset() {
    for len in 1..40 {
        for at in 0..len {
            let mut value = vec![b'v'; len];
            for (byte, allowed) in
                [(b'\t', true), (0x80, true), (0xff, true), (0x00, false), (0x1f, false), (0x7f, false)]
            {
                value[at] = byte;
                let line = [b"name:".as_slice(), &value].concat();
                let parsed = super::syntax::field_line(&line).map(|_| ());
                let expected = if allowed { Ok(()) } else { Err(Violation::InvalidHeaderValue) };
                assert_eq!(parsed, expected, "byte {byte:#04x} at {at} of {len}");
            }
        }
    }
}
