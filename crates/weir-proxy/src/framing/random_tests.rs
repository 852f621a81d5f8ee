//! Randomized robustness tests for the framing guard.
//!
//! The tests in `tests` pin each rule on hand-written inputs. These generate thousands of pipelined request streams,
//! cut them into random pieces and read them through random buffer sizes. They check properties that must hold for
//! every input:
//! - valid traffic comes through byte for byte;
//! - mutated traffic never gets a head carrying both Content-Length and Transfer-Encoding past the guard, and
//!   whatever is released is a prefix of the input;
//! - oversized heads are refused by the limit they break;
//! - the guard's buffer stays bounded by the head limit after every read.
//!
//! A seeded PRNG makes every run the same, and a failure names the seed of the case that broke.

use std::collections::VecDeque;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::tests::{End, Pieces, poll_once};
use super::{ConnSignal, FramingGuard, FramingLimits, SYNTHETIC_HEAD, Violation};

/// The shared test limits with room for more field lines: a generated head has up to nine fields plus up to two
/// framing fields and a Host. Generated heads stay well under `max_head_bytes` and `max_uri_len`, so only
/// mutations and the oversized generators reach a limit.
const LIMITS: FramingLimits = FramingLimits { max_headers: 12, ..super::tests::LIMITS };

/// The most the guard's buffer may hold is one element of `max_head_bytes` plus the CRLF that ends the chunk data
/// in front of it. The slack only covers an allocator that rounds up a `reserve_exact`.
const MAX_CAPACITY: usize = LIMITS.max_head_bytes + 2 + 16;

/// The largest reader buffer; hyper reads with large buffers, so large reads must be covered as well as small ones.
const MAX_READ: usize = 20_000;

/// splitmix64: a few lines, no dependency, and more than random enough to drive test generation.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`, give or take a modulo bias that does not matter here.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    fn below(&mut self, n: usize) -> usize {
        self.range(0, n - 1)
    }

    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}

/// Runs `case` once per seed from `seed` on. A failure names the seed, so that one case can be replayed alone.
/// Panics are caught for the same reason: a panic inside the guard is itself a failure, but it needs the seed.
fn for_each_case(seed: u64, cases: u64, mut case: impl FnMut(&mut Rng) -> Result<(), String>) {
    for n in 0..cases {
        let case_seed = seed.wrapping_add(n);
        let mut rng = Rng(case_seed);
        match catch_unwind(AssertUnwindSafe(|| case(&mut rng))) {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => panic!("case {n} (seed {case_seed:#x}): {failure}"),
            Err(_) => panic!("case {n} (seed {case_seed:#x}) panicked"),
        }
    }
}

fn ensure(holds: bool, failure: impl FnOnce() -> String) -> Result<(), String> {
    if holds { Ok(()) } else { Err(failure()) }
}

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|window| window == needle)
}

// ---- Generating valid traffic ----

const TCHARS: &[u8] = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const METHODS: &[&[u8]] = &[b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD"];
const CONTENT_LENGTH_7: &[u8] = b"Content-Length: 7\r\n";
const CHUNKED_ENCODING: &[u8] = b"Transfer-Encoding: chunked\r\n";

fn token(rng: &mut Rng, min: usize, max: usize) -> Vec<u8> {
    (0..rng.range(min, max)).map(|_| rng.pick(TCHARS)).collect()
}

fn visible(rng: &mut Rng) -> u8 {
    rng.range(0x21, 0x7e) as u8
}

fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.byte()).collect()
}

/// Field names are case-insensitive, so framing fields come in any case to check that the guard treats them alike.
fn random_case(rng: &mut Rng, text: &[u8]) -> Vec<u8> {
    text.iter().map(|&b| if rng.percent(50) { b.to_ascii_uppercase() } else { b.to_ascii_lowercase() }).collect()
}

/// Optional whitespace, as a field value may have around it.
fn ows(rng: &mut Rng, out: &mut Vec<u8>) {
    for _ in 0..rng.range(0, 2) {
        out.push(rng.pick(b" \t"));
    }
}

/// Names a random field never has: the framing fields, and Host, which a head has once at most.
fn is_reserved_name(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"content-length")
        || name.eq_ignore_ascii_case(b"transfer-encoding")
        || name.eq_ignore_ascii_case(b"host")
}

/// A field line with a random token name that is never a reserved one, and a value of visible ASCII with spaces
/// and tabs inside and around it.
fn random_field(rng: &mut Rng) -> Vec<u8> {
    let mut line = loop {
        let name = token(rng, 1, 16);
        if !is_reserved_name(&name) {
            break name;
        }
    };
    line.push(b':');
    ows(rng, &mut line);
    for _ in 0..rng.range(0, 30) {
        let b = if rng.percent(10) { rng.pick(b" \t") } else { visible(rng) };
        line.push(b);
    }
    ows(rng, &mut line);
    line.extend_from_slice(b"\r\n");
    line
}

fn content_length_field(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut line = random_case(rng, b"Content-Length");
    line.push(b':');
    ows(rng, &mut line);
    if rng.percent(10) {
        // Leading zeros are still 1*DIGIT.
        line.extend_from_slice(b"00");
    }
    line.extend_from_slice(len.to_string().as_bytes());
    ows(rng, &mut line);
    line.extend_from_slice(b"\r\n");
    line
}

/// `Host` in any case, naming a random host and maybe a port.
fn host_field(rng: &mut Rng) -> Vec<u8> {
    let mut line = random_case(rng, b"Host");
    line.push(b':');
    ows(rng, &mut line);
    line.extend(random_case(rng, b"api.example"));
    if rng.percent(30) {
        line.extend_from_slice(format!(":{}", rng.range(1, 65535)).as_bytes());
    }
    ows(rng, &mut line);
    line.extend_from_slice(b"\r\n");
    line
}

fn transfer_encoding_field(rng: &mut Rng) -> Vec<u8> {
    let mut line = random_case(rng, b"Transfer-Encoding");
    line.push(b':');
    ows(rng, &mut line);
    line.extend(random_case(rng, b"chunked"));
    ows(rng, &mut line);
    line.extend_from_slice(b"\r\n");
    line
}

fn request_line(rng: &mut Rng, target_len: usize, http10: bool) -> Vec<u8> {
    let mut line = if rng.percent(80) { rng.pick(METHODS).to_vec() } else { token(rng, 1, 8) };
    line.extend_from_slice(b" /");
    line.extend((1..target_len).map(|_| visible(rng)));
    line.extend_from_slice(if http10 { b" HTTP/1.0\r\n" } else { b" HTTP/1.1\r\n" });
    line
}

/// Whitespace a chunk extension may have around `;` and `=`.
fn bws(rng: &mut Rng, out: &mut Vec<u8>) {
    if rng.percent(20) {
        out.push(rng.pick(b" \t"));
    }
}

/// `chunk-size [chunk-ext] CRLF`, in either hex case and sometimes zero-padded (never past 16 digits).
fn chunk_line(rng: &mut Rng, size: usize) -> Vec<u8> {
    let hex = if rng.percent(50) { format!("{size:x}") } else { format!("{size:X}") };
    let zeros = if rng.percent(15) { rng.range(1, 16 - hex.len()) } else { 0 };
    let mut line = vec![b'0'; zeros];
    line.extend_from_slice(hex.as_bytes());
    for _ in 0..rng.range(0, 2) {
        bws(rng, &mut line);
        line.push(b';');
        bws(rng, &mut line);
        line.extend(token(rng, 1, 8));
        if rng.percent(50) {
            bws(rng, &mut line);
            line.push(b'=');
            bws(rng, &mut line);
            if rng.percent(50) {
                line.extend(token(rng, 1, 8));
            } else {
                line.push(b'"');
                for _ in 0..rng.range(0, 10) {
                    let b = if rng.percent(10) { b' ' } else { visible(rng) };
                    if b == b'"' || b == b'\\' {
                        line.push(b'\\');
                    }
                    line.push(b);
                }
                line.push(b'"');
            }
        }
    }
    line.extend_from_slice(b"\r\n");
    line
}

/// A generated stream of pipelined requests.
#[derive(Default)]
struct Traffic {
    /// What the client sends.
    input: Vec<u8>,
    /// What the guard must hand over: the input without the empty lines before request lines, which it drops.
    expected: Vec<u8>,
    /// Where in `input` a field line can be inserted into a head: after the request line and after each field line.
    field_slots: Vec<usize>,
    /// The framing in `input` (heads with the empty lines before them, chunk lines, CRLFs after chunk data,
    /// trailer sections), where a mutation is most likely to matter.
    framing: Vec<Range<usize>>,
}

impl Traffic {
    fn generate(rng: &mut Rng) -> Self {
        let mut traffic = Traffic::default();
        for _ in 0..rng.range(1, 4) {
            traffic.request(rng);
        }
        traffic
    }

    fn push(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
        self.expected.extend_from_slice(bytes);
    }

    fn push_framing(&mut self, bytes: &[u8]) {
        let start = self.input.len();
        self.push(bytes);
        self.framing.push(start..self.input.len());
    }

    fn request(&mut self, rng: &mut Rng) {
        let start = self.input.len();
        if rng.percent(15) {
            for _ in 0..rng.range(1, 3) {
                self.input.extend_from_slice(b"\r\n");
            }
        }
        let http10 = rng.percent(10);
        let target_len = if rng.percent(10) { rng.range(1, LIMITS.max_uri_len) } else { rng.range(1, 20) };
        let mut head = request_line(rng, target_len, http10);
        let mut fields: Vec<Vec<u8>> = (0..rng.range(0, 9)).map(|_| random_field(rng)).collect();
        // HTTP/1.1 requires Host; HTTP/1.0 may go without.
        if !http10 || rng.percent(50) {
            let at = rng.range(0, fields.len());
            fields.insert(at, host_field(rng));
        }
        let mut body = Vec::new();
        let mut chunked = false;
        // HTTP/1.0 has no chunked coding, so such requests only get Content-Length bodies.
        match rng.below(if http10 { 2 } else { 3 }) {
            0 => {}
            1 => {
                let len = if rng.percent(10) { 0 } else { rng.range(1, 300) };
                // A repeated Content-Length with the same value is allowed.
                for _ in 0..if rng.percent(15) { 2 } else { 1 } {
                    let at = rng.range(0, fields.len());
                    fields.insert(at, content_length_field(rng, len));
                }
                body = random_bytes(rng, len);
            }
            _ => {
                let at = rng.range(0, fields.len());
                fields.insert(at, transfer_encoding_field(rng));
                chunked = true;
            }
        }
        let head_start = self.input.len();
        self.field_slots.push(head_start + head.len());
        for field in fields {
            head.extend(field);
            self.field_slots.push(head_start + head.len());
        }
        head.extend_from_slice(b"\r\n");
        self.push(&head);
        self.framing.push(start..self.input.len());
        // Empty lines before the request line count against the head limit; the generator must stay valid.
        assert!(self.input.len() - start <= LIMITS.max_head_bytes, "generated head too large");
        self.push(&body);
        if chunked {
            self.chunked_body(rng);
        }
    }

    fn chunked_body(&mut self, rng: &mut Rng) {
        for _ in 0..rng.range(0, 4) {
            let size = if rng.percent(10) { rng.range(101, 600) } else { rng.range(1, 100) };
            self.push_framing(&chunk_line(rng, size));
            self.push(&random_bytes(rng, size));
            self.push_framing(b"\r\n");
        }
        let last = chunk_line(rng, 0);
        self.push_framing(&last);
        let mut trailers: Vec<u8> = (0..rng.range(0, 3)).flat_map(|_| random_field(rng)).collect();
        trailers.extend_from_slice(b"\r\n");
        self.push_framing(&trailers);
    }
}

// ---- Reading through a guard ----

/// Cuts `bytes` into the pieces the inner stream hands out, one per read: whole, in tiny pieces, or in between.
fn split(rng: &mut Rng, bytes: &[u8]) -> VecDeque<Vec<u8>> {
    let max = match rng.below(4) {
        0 => usize::MAX,
        1 => 3,
        2 => 64,
        _ => 2048,
    };
    let mut pieces = VecDeque::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = if max == usize::MAX { rest.len() } else { rng.range(1, max.min(rest.len())) };
        pieces.push_back(rest[..n].to_vec());
        rest = &rest[n..];
    }
    pieces
}

/// How a run sizes its reads: one fixed size, or a fresh random size for every read.
#[derive(Clone, Copy, Debug)]
enum Reads {
    Fixed(usize),
    UpTo(usize),
}

impl Reads {
    fn random(rng: &mut Rng) -> Self {
        match rng.below(5) {
            0 => Reads::Fixed(1),
            1 => Reads::Fixed(rng.range(2, 16)),
            2 => Reads::UpTo(64),
            3 => Reads::UpTo(MAX_READ),
            _ => Reads::Fixed(MAX_READ),
        }
    }

    fn next(self, rng: &mut Rng) -> usize {
        match self {
            Reads::Fixed(n) => n,
            Reads::UpTo(n) => rng.range(1, n),
        }
    }
}

/// What a run handed out, how it ended, and what the signal said.
struct Outcome {
    out: Vec<u8>,
    end: End,
    signal: Option<Violation>,
}

/// Reads a guard over `pieces` until it ends, checking the buffer bound after every read and that the end sticks.
fn run(rng: &mut Rng, pieces: VecDeque<Vec<u8>>) -> Result<Outcome, String> {
    let input_len: usize = pieces.iter().map(Vec::len).sum();
    let signal = Arc::new(ConnSignal::default());
    let mut guard = FramingGuard::new(Pieces(pieces), LIMITS, signal.clone());
    let reads = Reads::random(rng);
    let mut buf = vec![0; MAX_READ];
    let mut out = Vec::new();
    // A read that does not end the run hands out at least one byte, of the input or of the synthetic head, so a
    // guard that keeps answering without progress is caught here instead of hanging the test.
    let max_polls = input_len + SYNTHETIC_HEAD.len() + 1;
    let mut polls = 0;
    let end = loop {
        polls += 1;
        ensure(polls <= max_polls, || format!("no end after {max_polls} reads ({reads:?})"))?;
        let result = poll_once(&mut guard, &mut buf[..reads.next(rng)]);
        let capacity = guard.buffered_capacity();
        ensure(capacity <= MAX_CAPACITY, || format!("buffer capacity {capacity} after {} bytes out", out.len()))?;
        match result {
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(end) => break end,
        }
    };
    // The end sticks, and the inner stream is not read again (after a body error the guard reports EOF).
    let left = guard.get_ref().left();
    let after = if end == End::Stalled { End::Stalled } else { End::Eof };
    for _ in 0..2 {
        let again = poll_once(&mut guard, &mut buf[..16]);
        ensure(again == Err(after), || format!("ended {end:?}, then read {again:?}"))?;
    }
    ensure(guard.get_ref().left() == left, || "the inner stream was read after the end".into())?;
    ensure(guard.buffered_capacity() == 0, || "the buffer was kept after the end".into())?;
    Ok(Outcome { out, end, signal: signal.take() })
}

// ---- Property 1: valid traffic is transparent ----

#[test]
fn valid_traffic_passes_unchanged() {
    for_each_case(0x7765_6972_0001_0000, 3000, |rng| {
        let traffic = Traffic::generate(rng);
        let pieces = split(rng, &traffic.input);
        let outcome = run(rng, pieces).map_err(|e| format!("{e}\ninput: {}", show(&traffic.input)))?;
        ensure(outcome.out == traffic.expected && outcome.end == End::Eof && outcome.signal.is_none(), || {
            format!(
                "ended {:?} with signal {:?}\ninput:    {}\nexpected: {}\nreleased: {}",
                outcome.end,
                outcome.signal,
                show(&traffic.input),
                show(&traffic.expected),
                show(&outcome.out)
            )
        })
    });
}

// ---- Property 2: mutations never leak ----

/// Applies one to three random edits, mostly inside framing, then sometimes a truncation. Edits are applied from the
/// back, so that positions chosen on the original input still point at the same bytes when their turn comes.
fn mutate(rng: &mut Rng, traffic: &Traffic) -> Vec<u8> {
    enum Edit {
        Set(u8),
        Insert(&'static [u8]),
        DuplicateLine,
    }
    let mut bytes = traffic.input.clone();
    let mut edits = Vec::new();
    for _ in 0..rng.range(1, 3) {
        let edit = match rng.below(3) {
            0 => {
                // Smuggling needs both framing fields in one head: add either to any head.
                let line = if rng.percent(50) { CHUNKED_ENCODING } else { CONTENT_LENGTH_7 };
                (rng.pick(&traffic.field_slots), Edit::Insert(line))
            }
            kind => {
                let at = if rng.percent(70) {
                    let span = traffic.framing[rng.below(traffic.framing.len())].clone();
                    rng.range(span.start, span.end - 1)
                } else {
                    rng.below(bytes.len())
                };
                if kind == 1 {
                    let byte = rng.byte();
                    (at, Edit::Set(rng.pick(&[b'\r', b'\n', 0, b' ', b':', byte])))
                } else {
                    (at, Edit::DuplicateLine)
                }
            }
        };
        edits.push(edit);
    }
    edits.sort_by_key(|&(at, _)| std::cmp::Reverse(at));
    for (at, edit) in edits {
        match edit {
            Edit::Set(byte) => bytes[at] = byte,
            Edit::Insert(line) => drop(bytes.splice(at..at, line.iter().copied())),
            Edit::DuplicateLine => {
                let start = bytes[..at].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let end = bytes[at..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| at + i + 1);
                let line = bytes[start..end].to_vec();
                drop(bytes.splice(end..end, line));
            }
        }
    }
    if rng.percent(20) {
        bytes.truncate(rng.below(bytes.len() + 1));
    }
    bytes
}

/// Walks released bytes the way the guard must have framed them, matching them against the input.
///
/// Deliberately crude: it reads only head ends, Content-Length, Transfer-Encoding and chunk sizes. It does not
/// repeat the guard's checks, but it does catch a released head that has both framing fields, or a released piece of
/// an element the guard only hands out whole.
struct Walk<'a> {
    input: &'a [u8],
    released: &'a [u8],
    /// Position in `input`.
    i: usize,
    /// Position in `released`.
    j: usize,
}

impl<'a> Walk<'a> {
    fn rest(&self) -> &'a [u8] {
        &self.released[self.j..]
    }

    /// Takes up to `n` released bytes, which must equal the input at the same point; false when they ran out first.
    fn take(&mut self, n: usize) -> Result<bool, String> {
        let got = &self.rest()[..n.min(self.rest().len())];
        ensure(self.input.get(self.i..self.i + got.len()) == Some(got), || {
            format!("released bytes from {} differ from the input from {}", self.j, self.i)
        })?;
        self.i += got.len();
        self.j += got.len();
        Ok(got.len() == n)
    }

    /// Takes a head, chunk line or trailer section, which must be whole; `None` when the release ended before it.
    fn take_element(&mut self, end: &[u8], what: &str) -> Result<Option<&'a [u8]>, String> {
        if self.rest().is_empty() {
            return Ok(None);
        }
        let len = find(self.rest(), end).ok_or_else(|| format!("part of a {what} was released at {}", self.j))?;
        let element = &self.rest()[..len + end.len()];
        self.take(element.len())?;
        Ok(Some(element))
    }

    /// Walks a chunked body; false when the release ended inside it.
    fn chunked(&mut self) -> Result<bool, String> {
        loop {
            let Some(line) = self.take_element(b"\r\n", "chunk-size line")? else { return Ok(false) };
            let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            let size = std::str::from_utf8(&line[..digits]).ok().and_then(|hex| u64::from_str_radix(hex, 16).ok());
            let size = size.ok_or_else(|| format!("a bad chunk-size line was released: {}", show(line)))?;
            if size == 0 {
                if self.rest().starts_with(b"\r\n") {
                    return self.take(2);
                }
                return Ok(self.take_element(b"\r\n\r\n", "trailer section")?.is_some());
            }
            if !self.take(usize::try_from(size).unwrap_or(usize::MAX))? || self.rest().is_empty() {
                return Ok(false);
            }
            // The CRLF after chunk data goes out as one element.
            ensure(self.rest().starts_with(b"\r\n"), || format!("chunk data without its CRLF at {}", self.j))?;
            self.take(2)?;
        }
    }
}

enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// What a released head says about its body. A head with both framing fields is the leak this test exists for.
fn head_framing(head: &[u8]) -> Result<Framing, String> {
    let (mut length, mut chunked) = (None, false);
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        // Trimmed generously, so that a name the guard should have refused still counts as a framing field.
        let (name, value) = (line[..colon].trim_ascii(), line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            let parsed = (value.len() <= 19 && !value.is_empty() && value.iter().all(u8::is_ascii_digit))
                .then(|| value.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')));
            let n = parsed.ok_or_else(|| format!("a bad Content-Length was released: {}", show(head)))?;
            ensure(length.is_none_or(|seen| seen == n), || format!("conflicting lengths released: {}", show(head)))?;
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = true;
        }
    }
    match (length, chunked) {
        (Some(_), true) => {
            Err(format!("a head with Content-Length and Transfer-Encoding was released: {}", show(head)))
        }
        (Some(n), false) => Ok(Framing::Length(n)),
        (None, true) => Ok(Framing::Chunked),
        (None, false) => Ok(Framing::None),
    }
}

/// Checks that `released` (without any synthetic head) is a prefix of `input` once the empty lines before request
/// lines are dropped, and that no released head has both framing fields.
fn check_released(input: &[u8], released: &[u8]) -> Result<(), String> {
    let mut walk = Walk { input, released, i: 0, j: 0 };
    let mut first = true;
    loop {
        // The guard drops empty lines before a request line. A released head never starts with CR, so all of
        // them are dropped.
        while walk.input[walk.i..].starts_with(b"\r\n") {
            walk.i += 2;
        }
        if first && walk.rest().starts_with(b"PRI * HTTP/2.0\r\n") {
            // HTTP/2 prior knowledge: everything after it passes through.
            return walk.take(walk.rest().len()).map(drop);
        }
        first = false;
        let Some(head) = walk.take_element(b"\r\n\r\n", "head")? else { return Ok(()) };
        let whole = match head_framing(head)? {
            Framing::None => true,
            Framing::Length(n) => walk.take(usize::try_from(n).unwrap_or(usize::MAX))?,
            Framing::Chunked => walk.chunked()?,
        };
        if !whole {
            return Ok(());
        }
    }
}

#[test]
fn mutated_traffic_never_leaks_a_bad_head() {
    let (mut eof, mut stalled, mut failed, mut smuggling) = (0, 0, 0, 0);
    for_each_case(0x7765_6972_0002_0000, 4000, |rng| {
        let traffic = Traffic::generate(rng);
        let input = mutate(rng, &traffic);
        let pieces = split(rng, &input);
        let context = |e: String| format!("{e}\ninput: {}", show(&input));
        let outcome = run(rng, pieces).map_err(context)?;
        let released = match outcome.end {
            End::Stalled => {
                stalled += 1;
                outcome
                    .out
                    .strip_suffix(SYNTHETIC_HEAD)
                    .ok_or_else(|| context("stalled without the synthetic head".into()))?
            }
            End::Eof => {
                eof += 1;
                &outcome.out[..]
            }
            End::Failed(_) => {
                failed += 1;
                &outcome.out[..]
            }
        };
        // The signal is raised exactly when the synthetic head went out.
        ensure(outcome.signal.is_some() == (outcome.end == End::Stalled), || {
            context(format!("ended {:?} with signal {:?}", outcome.end, outcome.signal))
        })?;
        smuggling += usize::from(outcome.signal == Some(Violation::ContentLengthWithTransferEncoding));
        check_released(&input, released).map_err(|e| context(format!("{e}\nreleased: {}", show(released))))
    });
    // The mutations must keep reaching every kind of end, or the test would pass without testing much.
    for (what, count) in [("EOF", eof), ("stalled", stalled), ("failed", failed), ("CL+TE refusals", smuggling)] {
        assert!(count >= 40, "only {count} of 4000 runs were {what}");
    }
}

// ---- Property 3: limits hold ----

/// One request head that breaks a limit, and the violation it must be refused with. Sometimes the head is cut
/// short, but only once the guard has seen enough of it to refuse it without waiting for more.
fn oversized(rng: &mut Rng) -> (Vec<u8>, Violation, bool) {
    let max_head = LIMITS.max_head_bytes;
    // Empty lines before the request line count against the head limit.
    let mut head = if rng.percent(20) { b"\r\n".repeat(rng.range(1, 50)) } else { Vec::new() };
    let (violation, cut_from) = match rng.below(3) {
        0 => {
            let target_len = rng.range(1, 20);
            head.extend(request_line(rng, target_len, false));
            let before: Vec<u8> = (0..rng.range(0, 4)).flat_map(|_| random_field(rng)).collect();
            let after: Vec<u8> = (0..rng.range(0, 4)).flat_map(|_| random_field(rng)).collect();
            let name = loop {
                let name = token(rng, 1, 16);
                if !is_reserved_name(&name) {
                    break name;
                }
            };
            let fixed = head.len() + before.len() + name.len() + 1 + 2 + after.len() + 2;
            // Often exactly one byte too many, to probe the boundary; otherwise up to a few KiB over.
            let excess = if rng.percent(30) { 0 } else { rng.range(1, 3000) };
            let value_len = (max_head + 1 - fixed) + excess;
            head.extend(before);
            head.extend(name);
            head.push(b':');
            head.extend((0..value_len).map(|_| visible(rng)));
            head.extend_from_slice(b"\r\n");
            head.extend(after);
            head.extend_from_slice(b"\r\n");
            // Refused once `max_head_bytes` have arrived, line end or not.
            (Violation::HeadTooLarge, max_head)
        }
        1 => {
            let target_len = rng.range(1, 20);
            head.extend(request_line(rng, target_len, false));
            let mut cut_from = 0;
            for i in 0..rng.range(LIMITS.max_headers + 1, LIMITS.max_headers + 10) {
                head.extend(token(rng, 1, 6));
                head.push(b':');
                head.extend((0..rng.range(0, 6)).map(|_| visible(rng)));
                head.extend_from_slice(b"\r\n");
                if i == LIMITS.max_headers {
                    // The field line one past the limit is enough for a refusal.
                    cut_from = head.len();
                }
            }
            head.extend_from_slice(b"\r\n");
            assert!(head.len() <= max_head, "the field count must be the only limit broken");
            (Violation::TooManyHeaders, cut_from)
        }
        _ => {
            let excess = if rng.percent(30) { 0 } else { rng.range(1, 2000) };
            head.extend(request_line(rng, LIMITS.max_uri_len + 1 + excess, false));
            let end_of_target = head.len() - b" HTTP/1.1\r\n".len();
            for _ in 0..rng.range(0, 3) {
                head.extend(random_field(rng));
            }
            head.extend_from_slice(b"\r\n");
            // A target still arriving is refused once the head limit is reached, as too long a URI.
            (Violation::UriTooLong, if end_of_target > max_head { max_head } else { head.len() })
        }
    };
    let cut = rng.percent(25) && cut_from < head.len();
    if cut {
        head.truncate(rng.range(cut_from, head.len() - 1));
    }
    (head, violation, cut)
}

#[test]
fn oversized_heads_are_refused_by_their_limit() {
    let mut seen = [0; 3];
    for_each_case(0x7765_6972_0003_0000, 2000, |rng| {
        // Behind zero to two valid requests, which must come through intact.
        let mut traffic = Traffic::default();
        for _ in 0..rng.range(0, 2) {
            traffic.request(rng);
        }
        let (head, violation, cut) = oversized(rng);
        seen[match violation {
            Violation::HeadTooLarge => 0,
            Violation::TooManyHeaders => 1,
            _ => 2,
        }] += 1;
        let mut input = [&traffic.input[..], &head].concat();
        if !cut {
            // Nor may a request after the refused one come through.
            input.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        }
        let pieces = split(rng, &input);
        let outcome = run(rng, pieces).map_err(|e| format!("{e}\ninput: {}", show(&input)))?;
        let expected = [&traffic.expected[..], SYNTHETIC_HEAD].concat();
        ensure(outcome.out == expected && outcome.end == End::Stalled && outcome.signal == Some(violation), || {
            format!(
                "expected {violation:?}, ended {:?} with signal {:?}\ninput:    {}\nreleased: {}",
                outcome.end,
                outcome.signal,
                show(&input),
                show(&outcome.out)
            )
        })
    });
    assert!(seen.iter().all(|&n| n > 500), "each limit must be exercised: {seen:?}");
}
