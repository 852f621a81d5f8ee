//! Randomized robustness tests for request framing: the head parser and the chunked body decoder,
//! driven the way a connection drives them, over thousands of generated pipelined request streams
//! cut into random pieces. They check properties that must hold for every input:
//! - valid traffic comes through whole: every request, with its fields, body and trailers;
//! - mutated traffic never gets a head past the parser that carries both Content-Length and
//!   Transfer-Encoding, a second Host, or a value with CR, LF or NUL, and nothing panics;
//! - what is buffered while a head or chunk line is incomplete stays within the limits.
//!
//! A seeded PRNG makes every run the same, and a failure names the seed of the case that broke.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::BytesMut;
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use weir_upstream::wire::{ChunkLimits, Decoded, take_length};

use super::chunks::Chunks;
use super::head::{BodyFraming, HeadLimits, Progress, parse};
use crate::framing::Violation;

const LIMITS: HeadLimits = HeadLimits { max_head_bytes: 1024, max_headers: 12, max_uri_len: 64 };
const CHUNK_LIMITS: ChunkLimits = ChunkLimits { line: 1024, trailer_bytes: 1024, trailers: 12 };
/// The largest piece a read hands over.
const MAX_PIECE: usize = 2048;

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
}

/// Runs `case` once per seed from `seed` on; a failure (or a panic) names the seed.
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

// ---- Generating valid traffic ----

const TCHARS: &[u8] = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const METHODS: &[&[u8]] = &[b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"];

fn token(rng: &mut Rng, min: usize, max: usize) -> Vec<u8> {
    (0..rng.range(min, max)).map(|_| rng.pick(TCHARS)).collect()
}

fn visible(rng: &mut Rng) -> u8 {
    rng.range(0x21, 0x7e) as u8
}

/// Field names are case-insensitive, so framing fields come in any case.
fn random_case(rng: &mut Rng, text: &[u8]) -> Vec<u8> {
    text.iter().map(|&b| if rng.percent(50) { b.to_ascii_uppercase() } else { b.to_ascii_lowercase() }).collect()
}

fn ows(rng: &mut Rng, out: &mut Vec<u8>) {
    for _ in 0..rng.range(0, 2) {
        out.push(rng.pick(b" \t"));
    }
}

/// A field line: `name`, or a random token that names no field with a meaning for framing.
fn field(rng: &mut Rng, name: Option<&[u8]>, value: &[u8]) -> Vec<u8> {
    let mut line = match name {
        Some(name) => random_case(rng, name),
        None => loop {
            let name = token(rng, 1, 16);
            let reserved = [&b"content-length"[..], b"transfer-encoding", b"host", b"connection", b"upgrade"];
            if !reserved.iter().any(|r| name.eq_ignore_ascii_case(r)) {
                break name;
            }
        },
    };
    line.push(b':');
    ows(rng, &mut line);
    line.extend_from_slice(value);
    ows(rng, &mut line);
    line.extend_from_slice(b"\r\n");
    line
}

fn random_field(rng: &mut Rng) -> Vec<u8> {
    let value = random_value(rng);
    field(rng, None, &value)
}

fn random_value(rng: &mut Rng) -> Vec<u8> {
    let mut value: Vec<u8> =
        (0..rng.range(0, 30)).map(|_| if rng.percent(10) { rng.pick(b" \t") } else { visible(rng) }).collect();
    // Surrounding whitespace is not part of a value.
    let trimmed = value.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(0, |i| i + 1);
    value.truncate(trimmed);
    let leading = value.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    value.drain(..leading);
    value
}

/// `chunk-size [chunk-ext] CRLF`, in either hex case and sometimes zero-padded.
fn chunk_line(rng: &mut Rng, size: usize) -> Vec<u8> {
    let hex = if rng.percent(50) { format!("{size:x}") } else { format!("{size:X}") };
    let zeros = if rng.percent(15) { rng.range(1, 16 - hex.len()) } else { 0 };
    let mut line = vec![b'0'; zeros];
    line.extend_from_slice(hex.as_bytes());
    for _ in 0..rng.range(0, 2) {
        line.push(b';');
        line.extend(token(rng, 1, 8));
        if rng.percent(50) {
            line.push(b'=');
            line.extend(token(rng, 1, 8));
        }
    }
    line.extend_from_slice(b"\r\n");
    line
}

/// What a request must come through as.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: Vec<u8>,
    target: Vec<u8>,
    fields: usize,
    body: Vec<u8>,
    trailers: usize,
}

/// A generated stream of pipelined requests, and where its framing sits (where mutations matter).
#[derive(Default)]
struct Traffic {
    input: Vec<u8>,
    requests: Vec<Request>,
    framing: Vec<std::ops::Range<usize>>,
}

impl Traffic {
    fn generate(rng: &mut Rng) -> Self {
        let mut traffic = Traffic::default();
        for _ in 0..rng.range(1, 4) {
            traffic.request(rng);
        }
        traffic
    }

    fn request(&mut self, rng: &mut Rng) {
        let start = self.input.len();
        if rng.percent(15) {
            self.input.extend_from_slice(&b"\r\n".repeat(rng.range(1, 2)));
        }
        let http10 = rng.percent(10);
        let method = if rng.percent(80) { rng.pick(METHODS).to_vec() } else { token(rng, 1, 8) };
        let mut target = b"/".to_vec();
        target.extend((1..rng.range(1, 40)).map(|_| {
            loop {
                // What `http::Uri` takes in a path and query.
                let b = visible(rng);
                if !b"\"<>\\^`{|}#".contains(&b) {
                    break b;
                }
            }
        }));
        let mut fields: Vec<Vec<u8>> = (0..rng.range(0, 6)).map(|_| random_field(rng)).collect();
        if !http10 || rng.percent(50) {
            let at = rng.range(0, fields.len());
            fields.insert(at, field(rng, Some(b"Host"), b"api.example"));
        }
        let (mut body, mut chunked) = (Vec::new(), false);
        match rng.below(if http10 { 2 } else { 3 }) {
            0 => {}
            1 => {
                let len = rng.range(0, 300);
                for _ in 0..if rng.percent(15) { 2 } else { 1 } {
                    let at = rng.range(0, fields.len());
                    fields.insert(at, field(rng, Some(b"Content-Length"), len.to_string().as_bytes()));
                }
                body = (0..len).map(|_| rng.next_u64() as u8).collect();
            }
            _ => {
                let at = rng.range(0, fields.len());
                fields.insert(at, field(rng, Some(b"Transfer-Encoding"), b"chunked"));
                chunked = true;
            }
        }
        let mut head = method.clone();
        head.push(b' ');
        head.extend_from_slice(&target);
        head.extend_from_slice(if http10 { b" HTTP/1.0\r\n" } else { b" HTTP/1.1\r\n" });
        let field_count = fields.len();
        head.extend(fields.concat());
        head.extend_from_slice(b"\r\n");
        self.input.extend_from_slice(&head);
        self.framing.push(start..self.input.len());
        let mut request = Request { method, target, fields: field_count, body, trailers: 0 };
        if chunked {
            self.chunked_body(rng, &mut request);
        } else {
            self.input.extend_from_slice(&request.body);
        }
        self.requests.push(request);
    }

    fn chunked_body(&mut self, rng: &mut Rng, request: &mut Request) {
        for _ in 0..rng.range(0, 4) {
            let size = rng.range(1, 200);
            let data: Vec<u8> = (0..size).map(|_| rng.next_u64() as u8).collect();
            self.push_framing(&chunk_line(rng, size));
            self.input.extend_from_slice(&data);
            request.body.extend_from_slice(&data);
            self.push_framing(b"\r\n");
        }
        let last = chunk_line(rng, 0);
        self.push_framing(&last);
        request.trailers = rng.range(0, 3);
        let mut trailers: Vec<u8> = (0..request.trailers).flat_map(|_| random_field(rng)).collect();
        trailers.extend_from_slice(b"\r\n");
        self.push_framing(&trailers);
    }

    fn push_framing(&mut self, bytes: &[u8]) {
        let start = self.input.len();
        self.input.extend_from_slice(bytes);
        self.framing.push(start..self.input.len());
    }
}

/// Cuts `bytes` into the pieces reads hand over: whole (up to `MAX_PIECE`), tiny, or in between.
fn split(rng: &mut Rng, bytes: &[u8]) -> VecDeque<Vec<u8>> {
    let max = rng.pick(&[MAX_PIECE, 3, 64, 700]);
    let mut pieces = VecDeque::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = if max == MAX_PIECE { rest.len().min(MAX_PIECE) } else { rng.range(1, max.min(rest.len())) };
        pieces.push_back(rest[..n].to_vec());
        rest = &rest[n..];
    }
    pieces
}

// ---- Driving the parser and the decoder as a connection does ----

enum Reading {
    Head,
    Length(u64),
    Chunked(Chunks),
}

/// Reads requests off `pieces` until they run out or a fault is found; checks each head that came
/// through and the bound on what is buffered.
fn drive(mut pieces: VecDeque<Vec<u8>>) -> Result<(Vec<Request>, Option<Violation>), String> {
    let (mut buf, mut progress, mut reading) = (BytesMut::new(), Progress::default(), Reading::Head);
    let mut requests: Vec<Request> = Vec::new();
    loop {
        let wants_more = match &mut reading {
            Reading::Head if buf.is_empty() => true,
            Reading::Head => match parse(&mut buf, &LIMITS, &mut progress) {
                Ok(None) => true,
                Ok(Some(head)) => {
                    let has = |name| head.headers.contains_key(name);
                    ensure(!(has(CONTENT_LENGTH) && has(TRANSFER_ENCODING)), || "CL and TE both got through".into())?;
                    ensure(head.headers.get_all(HOST).iter().count() <= 1, || "two Host fields got through".into())?;
                    let bad = |b: &u8| matches!(b, b'\r' | b'\n' | 0);
                    ensure(head.headers.values().all(|v| !v.as_bytes().iter().any(bad)), || "a bad value".into())?;
                    requests.push(Request {
                        method: head.method.as_str().as_bytes().to_vec(),
                        target: head.uri.to_string().into_bytes(),
                        fields: head.headers.len(),
                        body: Vec::new(),
                        trailers: 0,
                    });
                    reading = match head.framing {
                        BodyFraming::None => Reading::Head,
                        BodyFraming::Length(length) => Reading::Length(length),
                        BodyFraming::Chunked => Reading::Chunked(Chunks::Size),
                    };
                    false
                }
                Err(violation) => return Ok((requests, Some(violation))),
            },
            Reading::Length(0) => {
                reading = Reading::Head;
                false
            }
            Reading::Length(_) if buf.is_empty() => true,
            Reading::Length(left) => {
                let data = take_length(&mut buf, left);
                requests.last_mut().unwrap().body.extend_from_slice(&data);
                false
            }
            Reading::Chunked(chunks) => match chunks.decode(&mut buf, CHUNK_LIMITS) {
                Ok(Decoded::Data(data)) => {
                    requests.last_mut().unwrap().body.extend_from_slice(&data);
                    false
                }
                Ok(Decoded::Trailers(trailers)) => {
                    requests.last_mut().unwrap().trailers = trailers.len();
                    reading = Reading::Head;
                    false
                }
                Ok(Decoded::End) => {
                    reading = Reading::Head;
                    false
                }
                Ok(Decoded::More) => true,
                Err(violation) => return Ok((requests, Some(violation))),
            },
        };
        if wants_more {
            // Waiting for more of a head or framing line: never more than its limit and one read.
            let bound = LIMITS.max_head_bytes as usize + MAX_PIECE;
            ensure(buf.len() <= bound, || format!("{} bytes buffered waiting for more", buf.len()))?;
            let Some(piece) = pieces.pop_front() else { return Ok((requests, None)) };
            buf.extend_from_slice(&piece);
        }
    }
}

#[test]
fn valid_traffic_comes_through_whole() {
    for_each_case(0x7765_6972_0002_0000, 3000, |rng| {
        let traffic = Traffic::generate(rng);
        let (requests, fault) = drive(split(rng, &traffic.input))?;
        let input = || traffic.input.escape_ascii().to_string();
        ensure(fault.is_none(), || format!("refused for {fault:?}: {}", input()))?;
        ensure(requests == traffic.requests, || format!("{requests:?}\nexpected {:?}\n{}", traffic.requests, input()))
    });
}

/// One to three random edits, mostly inside framing: a byte set to CR, LF, NUL, space, colon or any
/// byte; a framing field added to a head; a line doubled. Sometimes the stream is cut short.
fn mutate(rng: &mut Rng, traffic: &Traffic) -> Vec<u8> {
    let mut bytes = traffic.input.clone();
    for _ in 0..rng.range(1, 3) {
        let span = traffic.framing[rng.below(traffic.framing.len())].clone();
        let at = if rng.percent(70) { rng.range(span.start, span.end - 1) } else { rng.below(bytes.len()) };
        let at = at.min(bytes.len() - 1);
        match rng.below(3) {
            0 => {
                let line: &[u8] =
                    if rng.percent(50) { b"Transfer-Encoding: chunked\r\n" } else { b"Content-Length: 7\r\n" };
                let after = bytes[at..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| at + i + 1);
                bytes.splice(after..after, line.iter().copied());
            }
            1 => {
                let any = rng.next_u64() as u8;
                bytes[at] = rng.pick(&[b'\r', b'\n', 0, b' ', b':', any]);
            }
            _ => {
                let start = bytes[..at].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let end = bytes[at..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| at + i + 1);
                let line = bytes[start..end].to_vec();
                bytes.splice(end..end, line);
            }
        }
    }
    if rng.percent(20) {
        bytes.truncate(rng.below(bytes.len() + 1));
    }
    bytes
}

#[test]
fn mutated_traffic_never_gets_an_ambiguous_head_through() {
    for_each_case(0x7765_6972_0003_0000, 5000, |rng| {
        let traffic = Traffic::generate(rng);
        let input = mutate(rng, &traffic);
        drive(split(rng, &input)).map(|_| ()).map_err(|e| format!("{e}: {}", input.escape_ascii()))
    });
}

#[test]
fn oversized_heads_and_chunk_lines_are_refused_by_their_limit_in_any_pieces() {
    for_each_case(0x7765_6972_0004_0000, 500, |rng| {
        let filler = vec![b'a'; rng.range(1100, 3000)];
        let (input, expected) = match rng.below(3) {
            0 => ([b"GET /".as_slice(), &filler].concat(), Violation::UriTooLong),
            1 => ([b"GET / HTTP/1.1\r\nX: ".as_slice(), &filler].concat(), Violation::HeadTooLarge),
            _ => {
                let head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=";
                ([head.as_slice(), &filler].concat(), Violation::InvalidChunk)
            }
        };
        let (_, fault) = drive(split(rng, &input))?;
        ensure(fault == Some(expected), || format!("{fault:?}, expected {expected:?}"))
    });
}
