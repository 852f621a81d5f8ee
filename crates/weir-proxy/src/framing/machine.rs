//! The request-framing state machine: holds unvalidated bytes and decides which of them may be released.

use std::ops::Range;

use tokio::io::ReadBuf;

use super::syntax;
use super::{FramingLimits, Violation};

/// Most bytes pulled into the guard's buffer by one inner read.
pub(super) const READ_CHUNK: usize = 16 * 1024;

/// The first line of an HTTP/2 prior-knowledge connection preface.
const H2_PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0";

/// What the guard should do next, as decided by [`Machine::advance`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Validated bytes are waiting in the buffer: hand them to the reader.
    Release,
    /// Read from the inner stream into the buffer, at most this many bytes (never zero).
    Fill(usize),
    /// Read from the inner stream straight into the reader's buffer, at most this many bytes.
    Direct(u64),
}

/// Where in the request stream the next unvalidated byte falls.
#[derive(Clone, Copy, Debug)]
enum State {
    Head,
    Body {
        remaining: u64,
        chunked: bool,
    },
    /// The CRLF after chunk data.
    ChunkEnd,
    ChunkLine,
    Trailers,
    /// HTTP/2, or a WebSocket upgrade: nothing more is validated.
    Passthrough,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum TransferEncoding {
    #[default]
    Absent,
    Chunked,
    /// Anything the guard refuses: another coding, a list, or a second field line.
    Unsupported,
}

/// What the lines of the head seen so far say about framing.
#[derive(Clone, Copy, Debug, Default)]
struct HeadInfo {
    /// Empty lines dropped before the request line; they count against the head limit.
    skipped: usize,
    fields: usize,
    request_line: bool,
    http10: bool,
    content_length: Option<u64>,
    transfer_encoding: TransferEncoding,
    /// The request line's method is `GET`.
    get: bool,
    /// An `Upgrade` field names `websocket`.
    upgrade_websocket: bool,
    /// A `Connection` field names `upgrade`.
    connection_upgrade: bool,
}

impl HeadInfo {
    fn note_field(&mut self, name: &[u8], value: &[u8]) -> Result<(), Violation> {
        if name.eq_ignore_ascii_case(b"content-length") {
            let length = syntax::content_length(value)?;
            if self.content_length.is_some_and(|seen| seen != length) {
                return Err(Violation::ConflictingContentLength);
            }
            self.content_length = Some(length);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let chunked = self.transfer_encoding == TransferEncoding::Absent && syntax::is_chunked(value);
            self.transfer_encoding = if chunked { TransferEncoding::Chunked } else { TransferEncoding::Unsupported };
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade_websocket |= syntax::has_token(value, b"websocket");
        } else if name.eq_ignore_ascii_case(b"connection") {
            self.connection_upgrade |= syntax::has_token(value, b"upgrade");
        }
        Ok(())
    }

    /// A bodiless HTTP/1.1 `GET` asking to switch to WebSocket (RFC 6455 section 4.1).
    fn websocket_upgrade(&self, next: State) -> bool {
        self.get && !self.http10 && self.upgrade_websocket && self.connection_upgrade && matches!(next, State::Head)
    }

    /// Decided once the head is complete, so that CL plus TE is reported as such whatever the TE value or order.
    fn body_state(&self) -> Result<State, Violation> {
        match (self.transfer_encoding, self.content_length) {
            (TransferEncoding::Absent, Some(remaining)) if remaining > 0 => {
                Ok(State::Body { remaining, chunked: false })
            }
            (TransferEncoding::Absent, _) => Ok(State::Head),
            (_, Some(_)) => Err(Violation::ContentLengthWithTransferEncoding),
            (TransferEncoding::Chunked, None) if !self.http10 => Ok(State::ChunkLine),
            _ => Err(Violation::UnsupportedTransferEncoding),
        }
    }
}

/// Per-connection framing state plus the buffer of bytes read from the inner stream but not yet handed out.
///
/// Layout of `buf`: `[start, start + released)` is validated and waiting to be read; everything after it is
/// pending. Parsing only happens while `released == 0`, so the element being parsed always begins at `start`,
/// and `done` and `searched` are offsets from there.
#[derive(Debug)]
pub(super) struct Machine {
    limits: FramingLimits,
    buf: Vec<u8>,
    start: usize,
    released: usize,
    /// Bytes of complete, validated lines in the element being parsed.
    done: usize,
    /// Bytes already searched for a line feed, so a line arriving in pieces is not rescanned.
    searched: usize,
    state: State,
    head: HeadInfo,
    /// No request line has been seen on this connection yet (the HTTP/2 preface is only honoured then).
    fresh: bool,
    /// A WebSocket upgrade head was just released; the guard tells the handler through its signal.
    tunnel: bool,
}

impl Machine {
    pub(super) fn new(limits: FramingLimits) -> Self {
        Self {
            limits,
            buf: Vec::new(),
            start: 0,
            released: 0,
            done: 0,
            searched: 0,
            state: State::Head,
            head: HeadInfo::default(),
            fresh: true,
            tunnel: false,
        }
    }

    fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether the head just released asked for a WebSocket upgrade; asking clears it.
    pub(super) fn take_tunnel(&mut self) -> bool {
        std::mem::take(&mut self.tunnel)
    }

    /// A request head has begun arriving but is not complete yet.
    pub(super) fn head_in_progress(&self) -> bool {
        matches!(self.state, State::Head) && self.released == 0 && self.pending() > 0
    }

    /// No request line has arrived on this connection yet, and nothing is buffered.
    pub(super) fn awaiting_first_byte(&self) -> bool {
        self.fresh && self.pending() == 0 && matches!(self.state, State::Head)
    }

    /// The next byte belongs to a message body (or its chunked framing), not to a head.
    pub(super) fn in_body(&self) -> bool {
        !matches!(self.state, State::Head | State::Passthrough)
    }

    #[cfg(test)]
    pub(super) fn buffered_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Validates as much of the pending bytes as possible and says what the guard must do next.
    pub(super) fn advance(&mut self) -> Result<Next, Violation> {
        loop {
            if self.released > 0 {
                return Ok(Next::Release);
            }
            let progressed = match self.state {
                State::Head => self.head()?,
                State::Body { remaining, chunked } => self.body(remaining, chunked),
                State::ChunkEnd => self.chunk_end()?,
                State::ChunkLine => self.chunk_line()?,
                State::Trailers => self.trailers()?,
                State::Passthrough => {
                    self.released = self.pending();
                    self.released > 0
                }
            };
            if !progressed {
                return Ok(self.wanted());
            }
        }
    }

    /// What to read when the pending bytes are not enough to make progress.
    fn wanted(&self) -> Next {
        // Never read past what the current element could still use: it caps the buffer near `max_head_bytes`.
        let fill = |limit: usize| Next::Fill(limit.saturating_sub(self.pending()).clamp(1, READ_CHUNK));
        let max_head = self.limits.max_head_bytes;
        match self.state {
            State::Body { remaining, .. } => Next::Direct(remaining),
            State::Passthrough => Next::Direct(u64::MAX),
            State::Head => fill(max_head.saturating_sub(self.head.skipped)),
            // The next chunk line follows at once; reading it along saves a read per chunk.
            State::ChunkEnd => fill(max_head.saturating_add(2)),
            State::ChunkLine | State::Trailers => fill(max_head),
        }
    }

    /// Copies released bytes into `dst`, as many as fit.
    pub(super) fn release_into(&mut self, dst: &mut ReadBuf<'_>) {
        let n = self.released.min(dst.remaining());
        dst.put_slice(&self.buf[self.start..self.start + n]);
        self.released -= n;
        self.drop_front(n);
    }

    /// Adds bytes read from the inner stream behind the pending ones.
    pub(super) fn append(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let needed = self.buf.len() + bytes.len();
        if needed > self.buf.capacity() {
            // Geometric growth, but capped at what one element can take, so capacity stays bounded by the limits.
            let cap = self.limits.max_head_bytes.saturating_add(2);
            let target = (self.buf.capacity() * 2).min(cap).max(needed);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Accounts for body bytes the guard read straight into the reader's buffer.
    pub(super) fn direct_read(&mut self, n: usize) {
        if let State::Body { remaining, chunked } = self.state {
            self.state = State::Body { remaining: remaining.saturating_sub(n as u64), chunked };
        }
    }

    /// Forgets everything buffered; used once the connection is refused or closed.
    pub(super) fn discard(&mut self) {
        self.buf = Vec::new();
        self.start = 0;
        self.released = 0;
    }

    fn drop_front(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            // Drained: give the memory back so an idle keep-alive connection holds no buffer.
            self.buf = Vec::new();
            self.start = 0;
        }
    }

    /// Releases the element parsed so far (the `done` bytes) and moves on to `next`.
    fn release_element(&mut self, next: State) {
        self.released = self.done;
        self.done = 0;
        self.searched = 0;
        self.state = next;
    }

    /// Finds the next CRLF-terminated line of the current element; `None` when it has not fully arrived.
    ///
    /// `limit` bounds the whole element (`too_long` is reported past it), and the range excludes the CRLF.
    fn next_line(&mut self, limit: usize, too_long: Violation) -> Result<Option<Range<usize>>, Violation> {
        let from = self.start + self.searched;
        let Some(i) = syntax::find_byte(b'\n', &self.buf[from..]) else {
            self.searched = self.pending();
            // Even one more byte would make the element longer than allowed.
            return if self.searched >= limit { Err(too_long) } else { Ok(None) };
        };
        let line_feed = from + i;
        let line_start = self.start + self.done;
        if line_feed + 1 - self.start > limit {
            return Err(too_long);
        }
        if line_feed == line_start || self.buf[line_feed - 1] != b'\r' {
            return Err(Violation::BareLineFeed);
        }
        let line = line_start..line_feed - 1;
        if syntax::find_byte(b'\r', &self.buf[line.clone()]).is_some() {
            return Err(Violation::BareCarriageReturn);
        }
        self.done = line_feed + 1 - self.start;
        self.searched = self.done;
        Ok(Some(line))
    }

    /// Scans head lines; true once the head is released (or the connection turned out to be HTTP/2).
    fn head(&mut self) -> Result<bool, Violation> {
        loop {
            let limit = self.limits.max_head_bytes.saturating_sub(self.head.skipped);
            let line = match self.next_line(limit, Violation::HeadTooLarge) {
                Ok(Some(line)) => line,
                Ok(None) => return Ok(false),
                Err(Violation::HeadTooLarge) => return Err(self.head_too_large()),
                Err(violation) => return Err(violation),
            };
            if self.head_line(line)? {
                return Ok(true);
            }
        }
    }

    /// Handles one head line; true when the head is complete.
    fn head_line(&mut self, line: Range<usize>) -> Result<bool, Violation> {
        if !self.head.request_line {
            return self.request_line(line);
        }
        if line.is_empty() {
            let next = self.head.body_state()?;
            let tunnel = self.head.websocket_upgrade(next);
            self.head = HeadInfo::default();
            // After a WebSocket upgrade head nothing is validated: the bytes that follow are the
            // tunnel's if the upgrade succeeds, and the handler closes the connection if it does not,
            // so no later head is ever parsed unvalidated. Other upgrades (h2c) and CONNECT are
            // framed like any other request.
            self.tunnel = tunnel;
            self.release_element(if tunnel { State::Passthrough } else { next });
            return Ok(true);
        }
        self.count_field()?;
        let (name, value) = syntax::field_line(&self.buf[line])?;
        self.head.note_field(name, value)?;
        Ok(false)
    }

    fn request_line(&mut self, line: Range<usize>) -> Result<bool, Violation> {
        if line.is_empty() {
            // RFC 9112 §2.2: empty lines before the request line are ignored. Dropping them keeps them from the parser.
            self.head.skipped += self.done;
            let skipped = self.done;
            self.done = 0;
            self.searched = 0;
            self.drop_front(skipped);
            return Ok(false);
        }
        let fresh = std::mem::replace(&mut self.fresh, false);
        if fresh && self.buf[line.clone()] == *H2_PREFACE_LINE {
            self.release_element(State::Passthrough);
            return Ok(true);
        }
        self.head.get = self.buf[line.clone()].starts_with(b"GET ");
        self.head.http10 = syntax::request_line(&self.buf[line], self.limits.max_uri_len)?;
        self.head.request_line = true;
        Ok(false)
    }

    /// Refines a too-large head whose request line never ended into a too-long URI when that is the cause.
    fn head_too_large(&self) -> Violation {
        if !self.head.request_line && syntax::partial_target_len(&self.buf[self.start..]) > self.limits.max_uri_len {
            Violation::UriTooLong
        } else {
            Violation::HeadTooLarge
        }
    }

    fn count_field(&mut self) -> Result<(), Violation> {
        self.head.fields += 1;
        if self.head.fields > self.limits.max_headers { Err(Violation::TooManyHeaders) } else { Ok(()) }
    }

    fn body(&mut self, remaining: u64, chunked: bool) -> bool {
        if remaining == 0 {
            self.state = if chunked { State::ChunkEnd } else { State::Head };
            return true;
        }
        let n = remaining.min(self.pending() as u64);
        if n == 0 {
            return false;
        }
        self.released = n as usize;
        self.state = State::Body { remaining: remaining - n, chunked };
        true
    }

    fn chunk_end(&mut self) -> Result<bool, Violation> {
        match &self.buf[self.start..] {
            [] | [b'\r'] => Ok(false),
            [b'\r', b'\n', ..] => {
                self.done = 2;
                self.release_element(State::ChunkLine);
                Ok(true)
            }
            [b'\r', ..] => Err(Violation::BareCarriageReturn),
            [b'\n', ..] => Err(Violation::BareLineFeed),
            _ => Err(Violation::InvalidChunk),
        }
    }

    fn chunk_line(&mut self) -> Result<bool, Violation> {
        let Some(line) = self.next_line(self.limits.max_head_bytes, Violation::InvalidChunk)? else {
            return Ok(false);
        };
        let size = syntax::chunk_size_line(&self.buf[line])?;
        let next = if size == 0 { State::Trailers } else { State::Body { remaining: size, chunked: true } };
        self.release_element(next);
        Ok(true)
    }

    /// The trailer section is held back and released whole, like a head.
    fn trailers(&mut self) -> Result<bool, Violation> {
        while let Some(line) = self.next_line(self.limits.max_head_bytes, Violation::HeadTooLarge)? {
            if line.is_empty() {
                self.head = HeadInfo::default();
                self.release_element(State::Head);
                return Ok(true);
            }
            self.count_field()?;
            syntax::field_line(&self.buf[line])?;
        }
        Ok(false)
    }
}
