//! A protobuf writer for the few messages weir exports: varints, fixed-width numbers and
//! length-delimited fields, with nested messages written in place and their length put in front
//! once known. Enough for OTLP; no schema, no reflection, no generated code.

/// The wire types weir writes.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// A protobuf message being written.
#[derive(Debug, Default)]
pub struct ProtoWriter {
    buf: Vec<u8>,
}

impl ProtoWriter {
    pub fn with_capacity(capacity: usize) -> ProtoWriter {
        ProtoWriter { buf: Vec::with_capacity(capacity) }
    }

    /// An unsigned varint field (`uint32`, `uint64`, enums, `bool`).
    pub fn varint(&mut self, field: u32, value: u64) {
        self.tag(field, VARINT);
        put_varint(&mut self.buf, value);
    }

    /// An `int64` field: negative numbers take ten bytes, as protobuf's two's complement says.
    pub fn int64(&mut self, field: u32, value: i64) {
        self.varint(field, value as u64);
    }

    pub fn fixed64(&mut self, field: u32, value: u64) {
        self.tag(field, FIXED64);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    pub fn fixed32(&mut self, field: u32, value: u32) {
        self.tag(field, FIXED32);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// A `bytes` or `string` field (the caller keeps strings UTF-8).
    pub fn bytes(&mut self, field: u32, value: &[u8]) {
        self.tag(field, LEN);
        put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(value);
    }

    pub fn string(&mut self, field: u32, value: &str) {
        self.bytes(field, value.as_bytes());
    }

    /// A nested message written by `write`; its length is put in front of it afterwards. One byte
    /// is kept for the length (messages under 128 bytes, most of them); a longer message is moved
    /// to make room for the rest.
    pub fn message(&mut self, field: u32, write: impl FnOnce(&mut ProtoWriter)) {
        self.tag(field, LEN);
        let slot = self.buf.len();
        self.buf.push(0);
        write(self);
        let (prefix, used) = varint_array((self.buf.len() - slot - 1) as u64);
        self.buf[slot] = prefix[0];
        if used > 1 {
            self.buf.splice(slot + 1..slot + 1, prefix[1..used].iter().copied());
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    fn tag(&mut self, field: u32, wire_type: u8) {
        put_varint(&mut self.buf, (u64::from(field) << 3) | u64::from(wire_type));
    }
}

/// Appends `value` as a base-128 varint, least significant group first.
pub fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// `value` as a varint on the stack, and how many of the ten bytes it takes.
fn varint_array(mut value: u64) -> ([u8; 10], usize) {
    let mut out = [0u8; 10];
    let mut used = 0;
    while value >= 0x80 {
        out[used] = (value as u8 & 0x7f) | 0x80;
        value >>= 7;
        used += 1;
    }
    out[used] = value as u8;
    (out, used + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint_bytes(value: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        put_varint(&mut buf, value);
        buf
    }

    #[test]
    fn varints_match_the_encoding_guide() {
        assert_eq!(varint_bytes(0), [0x00]);
        assert_eq!(varint_bytes(1), [0x01]);
        assert_eq!(varint_bytes(127), [0x7f]);
        assert_eq!(varint_bytes(128), [0x80, 0x01]);
        assert_eq!(varint_bytes(150), [0x96, 0x01]);
        assert_eq!(varint_bytes(300), [0xac, 0x02]);
        assert_eq!(varint_bytes(u64::MAX).len(), 10);
        assert_eq!(*varint_bytes(u64::MAX).last().unwrap(), 0x01);
    }

    #[test]
    fn fields_carry_tag_and_wire_type() {
        let mut w = ProtoWriter::default();
        w.varint(1, 150);
        w.string(2, "testing");
        w.fixed64(7, 1);
        w.fixed32(16, 0x0102_0304);
        w.int64(3, -1);
        let mut expected = vec![0x08, 0x96, 0x01, 0x12, 0x07];
        expected.extend_from_slice(b"testing");
        expected.extend_from_slice(&[0x39, 1, 0, 0, 0, 0, 0, 0, 0]);
        // Field 16 needs a two-byte tag: (16 << 3 | 5) = 133.
        expected.extend_from_slice(&[0x85, 0x01, 0x04, 0x03, 0x02, 0x01]);
        expected.extend_from_slice(&[0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(w.into_vec(), expected);
    }

    #[test]
    fn nested_messages_are_length_prefixed_even_past_one_length_byte() {
        let mut w = ProtoWriter::default();
        w.message(3, |inner| inner.varint(1, 150));
        assert_eq!(w.into_vec(), [0x1a, 0x03, 0x08, 0x96, 0x01]);

        let long = "x".repeat(200);
        let mut w = ProtoWriter::default();
        w.message(1, |outer| outer.message(2, |inner| inner.string(1, &long)));
        let bytes = w.into_vec();
        // Inner: tag, 2-byte length 200, 200 bytes = 203; middle: tag, 2-byte length 203, 203 = 206.
        assert_eq!(&bytes[..3], [0x0a, 0xce, 0x01]);
        assert_eq!(&bytes[3..6], [0x12, 0xcb, 0x01]);
        assert_eq!(&bytes[6..9], [0x0a, 0xc8, 0x01]);
        assert_eq!(bytes.len(), 209);
    }
}
