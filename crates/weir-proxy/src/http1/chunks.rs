//! A chunked request body's framing (RFC 9112 section 7.1), decoded strictly: every line ends in
//! CRLF, a chunk-size line is hex digits and well-formed extensions only, chunk data is followed by
//! CRLF, and the trailer section is held to the head's rules and limits. A fault fails the body
//! with the [`Violation`] that names it.

use bytes::{Buf, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use weir_upstream::wire::{ChunkLimits, Decoded, find_byte, take_length};

use super::syntax;
use crate::framing::Violation;

/// Where a chunked body's decoding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunks {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: the trailer section, of which `checked` bytes are whole field lines
    /// already checked (`fields` of them).
    Trailers { checked: usize, fields: usize },
}

impl Chunks {
    /// Decodes from the front of `buf`, consuming what it returns.
    pub(super) fn decode(&mut self, buf: &mut BytesMut, limits: ChunkLimits) -> Result<Decoded, Violation> {
        loop {
            match *self {
                Chunks::Size => {
                    let Some(line_feed) = line_feed(buf, 0, limits.line, Violation::InvalidChunk)? else {
                        return Ok(Decoded::More);
                    };
                    let line = &buf[..line_feed - 1];
                    if find_byte(b'\r', line).is_some() {
                        return Err(Violation::BareCarriageReturn);
                    }
                    let size = syntax::chunk_size_line(line)?;
                    buf.advance(line_feed + 1);
                    *self = if size == 0 { Chunks::Trailers { checked: 0, fields: 0 } } else { Chunks::Data(size) };
                }
                Chunks::Data(mut left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let data = take_length(buf, &mut left);
                    *self = if left == 0 { Chunks::DataEnd } else { Chunks::Data(left) };
                    return Ok(Decoded::Data(data));
                }
                Chunks::DataEnd => {
                    match &buf[..] {
                        [] | [b'\r'] => return Ok(Decoded::More),
                        [b'\r', b'\n', ..] => {}
                        [b'\r', ..] => return Err(Violation::BareCarriageReturn),
                        [b'\n', ..] => return Err(Violation::BareLineFeed),
                        _ => return Err(Violation::InvalidChunk),
                    }
                    buf.advance(2);
                    *self = Chunks::Size;
                }
                Chunks::Trailers { ref mut checked, ref mut fields } => {
                    return trailers(buf, limits, checked, fields);
                }
            }
        }
    }
}

/// Where the line feed ending the line from `start` sits, checking that CR comes before it and
/// that the element (from the front of `buf`) stays within `limit`, past which it is refused for
/// `too_long`. `Ok(None)`: the line has not all arrived.
fn line_feed(buf: &[u8], start: usize, limit: usize, too_long: Violation) -> Result<Option<usize>, Violation> {
    let Some(i) = find_byte(b'\n', &buf[start..]) else {
        // Even one more byte would make the element longer than allowed.
        return if buf.len() >= limit { Err(too_long) } else { Ok(None) };
    };
    let line_feed = start + i;
    if line_feed + 1 > limit {
        return Err(too_long);
    }
    if line_feed == start || buf[line_feed - 1] != b'\r' {
        return Err(Violation::BareLineFeed);
    }
    Ok(Some(line_feed))
}

/// The trailer section: checked line by line as it arrives, handed over whole once its empty line
/// is here.
fn trailers(
    buf: &mut BytesMut,
    limits: ChunkLimits,
    checked: &mut usize,
    fields: &mut usize,
) -> Result<Decoded, Violation> {
    while let Some(line_feed) = line_feed(buf, *checked, limits.trailer_bytes, Violation::HeadTooLarge)? {
        let line = &buf[*checked..line_feed - 1];
        *checked = line_feed + 1;
        if line.is_empty() {
            let section = buf.split_to(*checked);
            return Ok(match *fields {
                0 => Decoded::End,
                _ => Decoded::Trailers(trailer_map(&section, *fields)),
            });
        }
        *fields += 1;
        if *fields > limits.trailers {
            return Err(Violation::TooManyHeaders);
        }
        if find_byte(b'\r', line).is_some() {
            return Err(Violation::BareCarriageReturn);
        }
        syntax::field_line(line)?;
    }
    Ok(Decoded::More)
}

/// The fields of a trailer section whose lines were all checked.
fn trailer_map(section: &[u8], fields: usize) -> HeaderMap {
    let mut trailers = HeaderMap::with_capacity(fields);
    for line in section.split(|&b| b == b'\n').map(|line| line.strip_suffix(b"\r").unwrap_or(line)) {
        let Ok((name, value)) = syntax::field_line(line) else { continue };
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            trailers.append(name, value);
        }
    }
    trailers
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ChunkLimits = ChunkLimits { line: 1024, trailer_bytes: 1024, trailers: 8 };

    /// Decodes `input` fed in two pieces cut at `at`: the data, trailers, and how it ended.
    fn decode_split(input: &[u8], at: usize) -> (Vec<u8>, Option<HeaderMap>, Result<(), Violation>) {
        let mut chunks = Chunks::Size;
        let mut buf = BytesMut::from(&input[..at]);
        let (mut data, mut trailers) = (Vec::new(), None);
        let mut rest = Some(&input[at..]);
        loop {
            match chunks.decode(&mut buf, LIMITS) {
                Ok(Decoded::Data(bytes)) => data.extend_from_slice(&bytes),
                Ok(Decoded::Trailers(map)) => {
                    trailers = Some(map);
                    return (data, trailers, Ok(()));
                }
                Ok(Decoded::End) => return (data, trailers, Ok(())),
                Ok(Decoded::More) => match rest.take() {
                    Some(more) => buf.extend_from_slice(more),
                    None => return (data, trailers, Err(Violation::InvalidChunk)),
                },
                Err(violation) => return (data, trailers, Err(violation)),
            }
        }
    }

    #[test]
    fn chunks_decode_the_same_however_they_are_cut() {
        let input = b"5\r\nhello\r\n6;a=b;c=\"d\\\"e\"\r\n world\r\n0\r\nX-Sum: 11\r\nY: 2\r\n\r\n";
        for at in 0..=input.len() {
            let (data, trailers, end) = decode_split(input, at);
            assert_eq!((data.as_slice(), end), (b"hello world".as_slice(), Ok(())), "cut at {at}");
            let trailers = trailers.unwrap();
            assert_eq!((trailers["x-sum"].as_bytes(), trailers["y"].as_bytes()), (&b"11"[..], &b"2"[..]));
        }
        let (data, trailers, end) = decode_split(b"0\r\n\r\n", 0);
        assert!(data.is_empty() && trailers.is_none() && end.is_ok());
    }

    #[test]
    fn each_framing_fault_fails_the_body_by_name() {
        let sent: &[u8] = b"5\r\nhello\r\n";
        let cases: [(&[u8], Violation); 14] = [
            (b"zz\r\n", Violation::InvalidChunk),
            (b"\r\n", Violation::InvalidChunk),
            (b"11111111111111111\r\n", Violation::InvalidChunk),
            (b"5 \r\n", Violation::InvalidChunk),
            (b"5;\r\n", Violation::InvalidChunk),
            (b"5;a=\r\n", Violation::InvalidChunk),
            (b"5;a=\"x\r\n", Violation::InvalidChunk),
            (b"5\nhello\r\n", Violation::BareLineFeed),
            (b"5\r;x\r\n", Violation::BareCarriageReturn),
            (b"0\r\nX: 1\n\r\n", Violation::BareLineFeed),
            (b"0\r\nX: 1\r2\r\n\r\n", Violation::BareCarriageReturn),
            (b"0\r\nX : 1\r\n\r\n", Violation::InvalidHeaderName),
            (b"0\r\n X: 1\r\n\r\n", Violation::ObsoleteLineFolding),
            (
                b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: 8\r\nI: 9\r\n\r\n",
                Violation::TooManyHeaders,
            ),
        ];
        for (bad, violation) in cases {
            let input = [sent, bad].concat();
            for at in 0..=input.len() {
                let (data, _, end) = decode_split(&input, at);
                assert_eq!((data.as_slice(), end), (b"hello".as_slice(), Err(violation)), "{bad:?} cut at {at}");
            }
        }
        for (bad, violation) in [
            (b"XY", Violation::InvalidChunk),
            (b"\n0", Violation::BareLineFeed),
            (b"\rX", Violation::BareCarriageReturn),
        ] {
            let input = [b"5\r\nhello".as_slice(), bad].concat();
            assert_eq!(decode_split(&input, input.len()).2, Err(violation));
        }
        let long_ext = [b"5;x=".as_slice(), &[b'e'; 1100], b"\r\n"].concat();
        assert_eq!(decode_split(&long_ext, long_ext.len()).2, Err(Violation::InvalidChunk));
        let endless_line = [b"5;x=".as_slice(), &[b'e'; 1100]].concat();
        assert_eq!(decode_split(&endless_line, endless_line.len()).2, Err(Violation::InvalidChunk));
        let long_trailer = [b"0\r\nX: ".as_slice(), &[b't'; 1100], b"\r\n\r\n"].concat();
        assert_eq!(decode_split(&long_trailer, long_trailer.len()).2, Err(Violation::HeadTooLarge));
    }
}
