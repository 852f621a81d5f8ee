//! The trace id of a W3C `traceparent` header (`00-<trace id>-<parent id>-<flags>`), as the access log
//! records it. Headers that break the format give no trace id rather than a wrong one.

/// A trace id as 32 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId([u8; 32]);

impl TraceId {
    /// The trace id in a `traceparent` value, if the value is well formed.
    pub fn from_traceparent(value: &[u8]) -> Option<TraceId> {
        if value.len() < 55 || (value.len() > 55 && value[55] != b'-') {
            return None;
        }
        let version = &value[0..2];
        if !is_lower_hex(version) || version == b"ff" || (version == b"00" && value.len() != 55) {
            return None;
        }
        let dashes = [value[2], value[35], value[52]];
        let (trace, parent, flags) = (&value[3..35], &value[36..52], &value[53..55]);
        if dashes != [b'-'; 3] || !is_lower_hex(trace) || !is_lower_hex(parent) || !is_lower_hex(flags) {
            return None;
        }
        if trace.iter().all(|b| *b == b'0') || parent.iter().all(|b| *b == b'0') {
            return None;
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(trace);
        Some(TraceId(id))
    }

    /// The hex form of a binary trace id.
    pub fn from_binary(id: &[u8; 16]) -> TraceId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 32];
        for (i, byte) in id.iter().enumerate() {
            hex[2 * i] = HEX[usize::from(byte >> 4)];
            hex[2 * i + 1] = HEX[usize::from(byte & 0xf)];
        }
        TraceId(hex)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_the_trace_id_of_a_valid_header() {
        let id = TraceId::from_traceparent(VALID.as_bytes()).unwrap();
        assert_eq!(id.as_bytes(), b"4bf92f3577b34da6a3ce929d0e0e4736");
        let future = format!("01{}-more", &VALID[2..]);
        assert!(TraceId::from_traceparent(future.as_bytes()).is_some());
        let mut binary = [0u8; 16];
        binary[0] = 0x4b;
        binary[15] = 0x36;
        assert_eq!(TraceId::from_binary(&binary).as_bytes(), b"4b000000000000000000000000000036");
    }

    #[test]
    fn refuses_malformed_headers() {
        for bad in [
            "",
            &VALID[..54],
            &format!("{VALID}-extra"),
            &VALID.replace("4bf9", "4BF9"),
            &VALID.replace("-00f0", "_00f0"),
            &format!("ff{}", &VALID[2..]),
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            &VALID.replace("4bf9", "4bz9"),
        ] {
            assert_eq!(TraceId::from_traceparent(bad.as_bytes()), None, "{bad}");
        }
    }
}
