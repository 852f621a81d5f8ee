//! W3C Trace Context: reading the caller's `traceparent` (`00-<trace id>-<parent id>-<flags>`) into
//! binary ids, and writing the one weir sends upstream. A header that breaks the format is treated
//! as absent, so the request starts a new trace rather than joining a wrong one.

use http::HeaderValue;

/// The `sampled` bit of the trace flags.
pub const SAMPLED: u8 = 0x01;

/// A 16-byte trace id; never all zeroes.
pub type TraceId = [u8; 16];
/// An 8-byte span id; never all zeroes.
pub type SpanId = [u8; 8];

/// The caller's span, as its `traceparent` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub flags: u8,
}

impl Parent {
    /// Reads a `traceparent` value. Versions above `00` are read by their first four fields, as the
    /// specification asks; version `ff` and malformed values give `None`.
    pub fn from_traceparent(value: &[u8]) -> Option<Parent> {
        if value.len() < 55 || (value.len() > 55 && value[55] != b'-') {
            return None;
        }
        let version = hex_byte(&value[0..2])?;
        if version == 0xff || (version == 0 && value.len() != 55) {
            return None;
        }
        if [value[2], value[35], value[52]] != [b'-'; 3] {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        decode_hex(&value[3..35], &mut trace_id)?;
        decode_hex(&value[36..52], &mut span_id)?;
        let flags = hex_byte(&value[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Parent { trace_id, span_id, flags })
    }

    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }
}

/// The `traceparent` naming span `span_id` of trace `trace_id`, version `00`.
pub fn traceparent(trace_id: &TraceId, span_id: &SpanId, sampled: bool) -> HeaderValue {
    let mut text = [0u8; 55];
    text[..3].copy_from_slice(b"00-");
    encode_hex(trace_id, &mut text[3..35]);
    text[35] = b'-';
    encode_hex(span_id, &mut text[36..52]);
    text[52] = b'-';
    text[53..].copy_from_slice(if sampled { b"01" } else { b"00" });
    HeaderValue::from_bytes(&text).expect("hex digits and dashes are a valid header value")
}

/// Lower-case hex of `bytes` into `out` (twice as long).
pub fn encode_hex(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(byte >> 4)];
        out[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
}

/// Reads lower-case hex digits into `out` (half as long); upper case is refused, as W3C requires.
fn decode_hex(text: &[u8], out: &mut [u8]) -> Option<()> {
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = hex_byte(pair)?;
    }
    Some(())
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_ids_and_flags_of_a_valid_header() {
        let parent = Parent::from_traceparent(VALID.as_bytes()).unwrap();
        assert_eq!(parent.trace_id[..4], [0x4b, 0xf9, 0x2f, 0x35]);
        assert_eq!(parent.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert!(parent.sampled());
        let unsampled = Parent::from_traceparent(VALID.replace("-01", "-00").as_bytes()).unwrap();
        assert!(!unsampled.sampled());
        let future = format!("cc{}-what-comes-next", &VALID[2..]);
        assert_eq!(Parent::from_traceparent(future.as_bytes()).unwrap().trace_id, parent.trace_id);
    }

    #[test]
    fn refuses_malformed_headers() {
        for bad in [
            "",
            &VALID[..54],
            &format!("{VALID}-extra"),
            &format!("{VALID}x"),
            &VALID.replace("4bf9", "4BF9"),
            &VALID.replace("-00f0", "_00f0"),
            &format!("ff{}", &VALID[2..]),
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            &VALID.replace("4bf9", "4bz9"),
            &VALID.replace("-01", "-0g"),
        ] {
            assert_eq!(Parent::from_traceparent(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn written_headers_read_back() {
        let parent = Parent::from_traceparent(VALID.as_bytes()).unwrap();
        let written = traceparent(&parent.trace_id, &parent.span_id, true);
        assert_eq!(written, VALID);
        let unsampled = traceparent(&parent.trace_id, &[1; 8], false);
        assert_eq!(unsampled, "00-4bf92f3577b34da6a3ce929d0e0e4736-0101010101010101-00");
    }
}
