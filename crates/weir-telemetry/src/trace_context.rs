//! A trace id as the access log records it: the 32 lower-case hex digits of the W3C form. The
//! `traceparent` header itself is read by `weir-trace`.

/// A trace id as 32 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId([u8; 32]);

impl TraceId {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_ids_are_written_as_lower_case_hex() {
        let mut binary = [0u8; 16];
        binary[0] = 0x4b;
        binary[15] = 0x36;
        assert_eq!(TraceId::from_binary(&binary).as_bytes(), b"4b000000000000000000000000000036");
    }
}
