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
    /// Part of an element is buffered: read more into the buffer, at most this many bytes (never zero).
    Fill(usize),
    /// Nothing is buffered: read straight into the reader's buffer and validate the bytes there
    /// ([`Machine::validate_in_place`]).
    InPlace,
}

/// What one parse step over the pending bytes came to.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// The first this-many bytes are validated (possibly none, on a change of state alone).
    Release(usize),
    /// The first this-many bytes are dropped (empty lines before a request line).
    Skip(usize),
    /// The element at the front has not fully arrived.
    NeedMore,
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
    /// A `Host` field line was seen.
    host: bool,
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
        } else if name.eq_ignore_ascii_case(b"host") {
            if std::mem::replace(&mut self.host, true) {
                return Err(Violation::DuplicateHost);
            }
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
    /// A framing fault is reported before a missing Host.
    fn body_state(&self) -> Result<State, Violation> {
        let next = self.framing()?;
        if !self.host && !self.http10 {
            return Err(Violation::MissingHost);
        }
        Ok(next)
    }

    fn framing(&self) -> Result<State, Violation> {
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
/// pending. Parsing only happens while `released == 0`, so the element being parsed always begins at `start`.
/// Most reads never touch `buf`: they land in the reader's buffer and are validated there
/// ([`Machine::validate_in_place`]); only an element split across reads is held here until it is whole.
#[derive(Debug)]
pub(super) struct Machine {
    buf: Vec<u8>,
    start: usize,
    released: usize,
    parser: Parser,
}

/// The framing state proper: where the next byte falls and what the element being parsed has said so far. It
/// parses whatever slice it is given, the machine's buffer or the reader's, with the element at its front.
#[derive(Debug)]
struct Parser {
    limits: FramingLimits,
    /// Bytes of complete, validated lines in the element being parsed.
    done: usize,
    /// Bytes already searched for a line break, so a line arriving in pieces is not rescanned.
    searched: usize,
    /// The line being searched holds a CR not followed by LF.
    bare_cr: bool,
    state: State,
    head: HeadInfo,
    /// No request line has been seen on this connection yet (the HTTP/2 preface is only honoured then).
    fresh: bool,
    /// A WebSocket upgrade head was just released; the guard tells the handler through its signal.
    tunnel: bool,
}

impl Machine {
    pub(super) fn new(limits: FramingLimits) -> Self {
        let parser = Parser {
            limits,
            done: 0,
            searched: 0,
            bare_cr: false,
            state: State::Head,
            head: HeadInfo::default(),
            fresh: true,
            tunnel: false,
        };
        Self { buf: Vec::new(), start: 0, released: 0, parser }
    }

    fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether the head just released asked for a WebSocket upgrade; asking clears it.
    pub(super) fn take_tunnel(&mut self) -> bool {
        std::mem::take(&mut self.parser.tunnel)
    }

    /// A request head has begun arriving but is not complete yet.
    pub(super) fn head_in_progress(&self) -> bool {
        matches!(self.parser.state, State::Head) && self.released == 0 && self.pending() > 0
    }

    /// No request line has arrived on this connection yet, and nothing is buffered.
    pub(super) fn awaiting_first_byte(&self) -> bool {
        self.parser.fresh && self.pending() == 0 && matches!(self.parser.state, State::Head)
    }

    /// The next byte belongs to a message body (or its chunked framing), not to a head.
    pub(super) fn in_body(&self) -> bool {
        !matches!(self.parser.state, State::Head | State::Passthrough)
    }

    #[cfg(test)]
    pub(super) fn buffered_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Validates as much of the buffered bytes as possible and says what the guard must do next.
    pub(super) fn advance(&mut self) -> Result<Next, Violation> {
        loop {
            if self.released > 0 {
                return Ok(Next::Release);
            }
            match self.parser.step(&self.buf[self.start..])? {
                Step::Release(n) => self.released = n,
                Step::Skip(n) => self.drop_front(n),
                Step::NeedMore => return Ok(self.wanted()),
            }
        }
    }

    /// Validates bytes just read into the reader's buffer, where they stay as far as whole elements go.
    ///
    /// Returns how many leading bytes are validated, with the violation that stopped it, if any. Dropped empty
    /// lines are cut out of `bytes` (so the count is of what remains); a trailing partial element is taken
    /// into the machine's buffer, and the reader must forget everything after the count.
    pub(super) fn validate_in_place(&mut self, bytes: &mut [u8]) -> (usize, Result<(), Violation>) {
        debug_assert!(self.pending() == 0, "in-place reads happen only with nothing buffered");
        let (mut valid, mut len) = (0, bytes.len());
        loop {
            match self.parser.step(&bytes[valid..len]) {
                Ok(Step::Release(n)) => valid += n,
                Ok(Step::Skip(n)) => {
                    bytes.copy_within(valid + n..len, valid);
                    len -= n;
                }
                Ok(Step::NeedMore) => {
                    self.append(&bytes[valid..len]);
                    return (valid, Ok(()));
                }
                Err(violation) => return (valid, Err(violation)),
            }
        }
    }

    /// What to read when the buffered bytes are not enough to make progress.
    fn wanted(&self) -> Next {
        if self.pending() == 0 {
            return Next::InPlace;
        }
        // Never read past what the current element could still use: it caps the buffer near `max_head_bytes`.
        let fill = |limit: usize| Next::Fill(limit.saturating_sub(self.pending()).clamp(1, READ_CHUNK));
        let max_head = self.parser.limits.max_head_bytes;
        match self.parser.state {
            State::Head => fill(max_head.saturating_sub(self.parser.head.skipped)),
            // The next chunk line follows at once; reading it along saves a read per chunk.
            State::ChunkEnd => fill(max_head.saturating_add(2)),
            // A body or pass-through never waits with bytes pending: they are released first.
            State::ChunkLine | State::Trailers | State::Body { .. } | State::Passthrough => fill(max_head),
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
            let cap = self.parser.limits.max_head_bytes.saturating_add(2);
            let target = (self.buf.capacity() * 2).min(cap).max(needed);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(bytes);
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
}

impl Parser {
    /// Parses the element at the front of `pending` as far as it has arrived.
    fn step(&mut self, pending: &[u8]) -> Result<Step, Violation> {
        match self.state {
            State::Head => self.head(pending),
            State::Body { remaining, chunked } => Ok(self.body(pending, remaining, chunked)),
            State::ChunkEnd => self.chunk_end(pending),
            State::ChunkLine => self.chunk_line(pending),
            State::Trailers => self.trailers(pending),
            State::Passthrough if pending.is_empty() => Ok(Step::NeedMore),
            State::Passthrough => Ok(Step::Release(pending.len())),
        }
    }

    /// Releases the element parsed so far (the `done` bytes) and moves on to `next`.
    fn release_element(&mut self, next: State) -> Step {
        let element = std::mem::take(&mut self.done);
        self.searched = 0;
        self.state = next;
        Step::Release(element)
    }

    /// Finds the next CRLF-terminated line of the element at the front of `pending`; `None` when it has not fully
    /// arrived.
    ///
    /// `limit` bounds the whole element (`too_long` is reported past it), and the range excludes the CRLF. One
    /// scan for the first CR or LF finds the end of a well-formed line; a line with a bare CR is left to
    /// [`Self::line_with_bare_cr`].
    fn next_line(
        &mut self,
        pending: &[u8],
        limit: usize,
        too_long: Violation,
    ) -> Result<Option<Range<usize>>, Violation> {
        if self.bare_cr {
            return self.line_with_bare_cr(pending, limit, too_long);
        }
        let from = self.searched;
        let Some(i) = weir_upstream::wire::find_line_break(&pending[from..]) else {
            self.searched = pending.len();
            // Even one more byte would make the element longer than allowed.
            return if self.searched >= limit { Err(too_long) } else { Ok(None) };
        };
        let line_feed = match pending.get(from + i + 1) {
            _ if pending[from + i] == b'\n' => from + i,
            Some(b'\n') => from + i + 1,
            Some(_) => {
                self.bare_cr = true;
                self.searched = from + i + 1;
                return self.line_with_bare_cr(pending, limit, too_long);
            }
            None => {
                // A CR whose next byte has not come: it is looked at again then.
                self.searched = from + i;
                return if pending.len() >= limit { Err(too_long) } else { Ok(None) };
            }
        };
        if line_feed + 1 > limit {
            return Err(too_long);
        }
        if line_feed == self.done || pending[line_feed - 1] != b'\r' {
            return Err(Violation::BareLineFeed);
        }
        let line = self.done..line_feed - 1;
        self.done = line_feed + 1;
        self.searched = self.done;
        Ok(Some(line))
    }

    /// The rest of a line known to hold a CR not followed by LF: it ends in a violation once its line
    /// feed comes (or it grows too long), reported as for any other line: length first, then a bare LF,
    /// then the bare CR.
    fn line_with_bare_cr(
        &mut self,
        pending: &[u8],
        limit: usize,
        too_long: Violation,
    ) -> Result<Option<Range<usize>>, Violation> {
        let Some(i) = weir_upstream::wire::find_byte(b'\n', &pending[self.searched..]) else {
            self.searched = pending.len();
            return if self.searched >= limit { Err(too_long) } else { Ok(None) };
        };
        let line_feed = self.searched + i;
        if line_feed + 1 > limit {
            Err(too_long)
        } else if pending[line_feed - 1] != b'\r' {
            Err(Violation::BareLineFeed)
        } else {
            Err(Violation::BareCarriageReturn)
        }
    }

    /// Scans head lines until the head is complete (or the connection turned out to be HTTP/2).
    fn head(&mut self, pending: &[u8]) -> Result<Step, Violation> {
        loop {
            let limit = self.limits.max_head_bytes.saturating_sub(self.head.skipped);
            let line = match self.next_line(pending, limit, Violation::HeadTooLarge) {
                Ok(Some(line)) => line,
                Ok(None) => return Ok(Step::NeedMore),
                Err(Violation::HeadTooLarge) => return Err(self.head_too_large(pending)),
                Err(violation) => return Err(violation),
            };
            if let Some(step) = self.head_line(&pending[line])? {
                return Ok(step);
            }
        }
    }

    /// Handles one head line; a step when the head is complete or the line is dropped.
    fn head_line(&mut self, line: &[u8]) -> Result<Option<Step>, Violation> {
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
            return Ok(Some(self.release_element(if tunnel { State::Passthrough } else { next })));
        }
        self.count_field()?;
        let (name, value) = syntax::field_line(line)?;
        self.head.note_field(name, value)?;
        Ok(None)
    }

    fn request_line(&mut self, line: &[u8]) -> Result<Option<Step>, Violation> {
        if line.is_empty() {
            // RFC 9112 §2.2: empty lines before the request line are ignored. Dropping them keeps them from the parser.
            let skipped = std::mem::take(&mut self.done);
            self.head.skipped += skipped;
            self.searched = 0;
            return Ok(Some(Step::Skip(skipped)));
        }
        let fresh = std::mem::replace(&mut self.fresh, false);
        if fresh && line == H2_PREFACE_LINE {
            return Ok(Some(self.release_element(State::Passthrough)));
        }
        self.head.get = line.starts_with(b"GET ");
        self.head.http10 = syntax::request_line(line, self.limits.max_uri_len)?;
        self.head.request_line = true;
        Ok(None)
    }

    /// Refines a too-large head whose request line never ended into a too-long URI when that is the cause.
    fn head_too_large(&self, pending: &[u8]) -> Violation {
        if !self.head.request_line && syntax::partial_target_len(pending) > self.limits.max_uri_len {
            Violation::UriTooLong
        } else {
            Violation::HeadTooLarge
        }
    }

    fn count_field(&mut self) -> Result<(), Violation> {
        self.head.fields += 1;
        if self.head.fields > self.limits.max_headers { Err(Violation::TooManyHeaders) } else { Ok(()) }
    }

    fn body(&mut self, pending: &[u8], remaining: u64, chunked: bool) -> Step {
        if remaining == 0 {
            self.state = if chunked { State::ChunkEnd } else { State::Head };
            return Step::Release(0);
        }
        let n = remaining.min(pending.len() as u64);
        if n == 0 {
            return Step::NeedMore;
        }
        self.state = State::Body { remaining: remaining - n, chunked };
        Step::Release(n as usize)
    }

    fn chunk_end(&mut self, pending: &[u8]) -> Result<Step, Violation> {
        match pending {
            [] | [b'\r'] => Ok(Step::NeedMore),
            [b'\r', b'\n', ..] => {
                self.done = 2;
                Ok(self.release_element(State::ChunkLine))
            }
            [b'\r', ..] => Err(Violation::BareCarriageReturn),
            [b'\n', ..] => Err(Violation::BareLineFeed),
            _ => Err(Violation::InvalidChunk),
        }
    }

    fn chunk_line(&mut self, pending: &[u8]) -> Result<Step, Violation> {
        let Some(line) = self.next_line(pending, self.limits.max_head_bytes, Violation::InvalidChunk)? else {
            return Ok(Step::NeedMore);
        };
        let size = syntax::chunk_size_line(&pending[line])?;
        let next = if size == 0 { State::Trailers } else { State::Body { remaining: size, chunked: true } };
        Ok(self.release_element(next))
    }

    /// The trailer section is held back and released whole, like a head.
    fn trailers(&mut self, pending: &[u8]) -> Result<Step, Violation> {
        while let Some(line) = self.next_line(pending, self.limits.max_head_bytes, Violation::HeadTooLarge)? {
            if line.is_empty() {
                self.head = HeadInfo::default();
                return Ok(self.release_element(State::Head));
            }
            self.count_field()?;
            syntax::field_line(&pending[line])?;
        }
        Ok(Step::NeedMore)
    }
}
