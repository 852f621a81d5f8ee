//! HPACK (RFC 7541): decoding a client's header blocks, encoding the server's.
//!
//! The decoder keeps the dynamic table the client's encoder writes to. The encoder writes every
//! field as a literal that is not indexed, naming it by its static-table index when it has one, and
//! never Huffman-codes: it keeps no state, so a response costs no table bookkeeping, and response
//! heads are a small part of what a proxied exchange writes.

mod huffman;
mod table;

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderName;

use table::{Dynamic, STATIC};
pub(crate) use table::{Field, Name, Pseudo};

/// Why a header block could not be decoded: a connection error (COMPRESSION_ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("an integer runs past the header block or overflows")]
    Integer,
    #[error("a string runs past the header block")]
    StringLength,
    #[error("a Huffman-coded string is malformed")]
    Huffman,
    #[error("an index names no table entry")]
    Index,
    #[error("a dynamic table size update is larger than allowed, or not at the start of a block")]
    SizeUpdate,
}

/// Decodes a connection's header blocks.
#[derive(Debug)]
pub(crate) struct Decoder {
    table: Dynamic,
    /// The table size this server announced (SETTINGS_HEADER_TABLE_SIZE): the most the client may use.
    max_size: usize,
}

impl Decoder {
    pub(crate) fn new(max_size: usize) -> Decoder {
        Decoder { table: Dynamic::new(max_size), max_size }
    }

    /// Decodes `block`, handing each field to `each` in order.
    pub(crate) fn decode(&mut self, mut block: Bytes, mut each: impl FnMut(Field)) -> Result<(), DecodeError> {
        let mut first = true;
        while let Some(&byte) = block.first() {
            if byte & 0x80 != 0 {
                let index = integer(&mut block, 7)?;
                each(self.table.get(index).cloned().ok_or(DecodeError::Index)?);
            } else if byte & 0x40 != 0 {
                let field = self.literal(&mut block, 6)?;
                // A copy: the table outlives the block, which holds a whole read's buffer.
                let value = Bytes::copy_from_slice(&field.value);
                self.table.insert(Field { name: field.name.clone(), value });
                each(field);
            } else if byte & 0x20 != 0 {
                let size = integer(&mut block, 5)?;
                if !first || size > self.max_size {
                    return Err(DecodeError::SizeUpdate);
                }
                self.table.resize(size);
                // Several updates may open a block (RFC 7541 section 4.2).
                continue;
            } else {
                // Without indexing (0000) or never indexed (0001): both only decode here.
                each(self.literal(&mut block, 4)?);
            }
            first = false;
        }
        Ok(())
    }

    /// A literal field whose name index has a `prefix`-bit prefix (zero: the name follows).
    fn literal(&self, block: &mut Bytes, prefix: u8) -> Result<Field, DecodeError> {
        let index = integer(block, prefix)?;
        let name = match index {
            0 => Name::parse(&string(block)?),
            index => self.table.get(index).ok_or(DecodeError::Index)?.name.clone(),
        };
        Ok(Field { name, value: string(block)? })
    }
}

/// Reads an integer with a `prefix`-bit prefix (RFC 7541 section 5.1).
fn integer(block: &mut Bytes, prefix: u8) -> Result<usize, DecodeError> {
    let mask = (1usize << prefix) - 1;
    let mut value = usize::from(block[0]) & mask;
    let mut used = 1;
    if value == mask {
        let mut shift = 0;
        loop {
            let &byte = block.get(used).ok_or(DecodeError::Integer)?;
            used += 1;
            value += usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            // Nothing in a header block needs more than 28 bits.
            if shift > 21 {
                return Err(DecodeError::Integer);
            }
        }
    }
    let _ = block.split_to(used);
    Ok(value)
}

/// Reads a string literal (RFC 7541 section 5.2): a slice of the block, or its Huffman decoding.
fn string(block: &mut Bytes) -> Result<Bytes, DecodeError> {
    let &first = block.first().ok_or(DecodeError::StringLength)?;
    let length = integer(block, 7)?;
    if length > block.len() {
        return Err(DecodeError::StringLength);
    }
    let raw = block.split_to(length);
    if first & 0x80 == 0 {
        return Ok(raw);
    }
    let mut decoded = Vec::with_capacity(length * 8 / 5);
    huffman::decode(&raw, &mut decoded).map_err(|_| DecodeError::Huffman)?;
    Ok(Bytes::from(decoded))
}

/// Appends `:status` to a header block.
pub(crate) fn encode_status(status: u16, out: &mut BytesMut) {
    let indexed = match status {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => 0,
    };
    if indexed != 0 {
        out.put_u8(0x80 | indexed);
        return;
    }
    // Literal without indexing, the name indexed (8, `:status`), then three digits.
    let digits = [b'0' + (status / 100 % 10) as u8, b'0' + (status / 10 % 10) as u8, b'0' + (status % 10) as u8];
    out.put_slice(&[0x08, 3]);
    out.put_slice(&digits);
}

/// Appends a field to a header block: a literal without indexing.
pub(crate) fn encode_field(name: &HeaderName, value: &[u8], out: &mut BytesMut) {
    match static_name_index(name.as_str()) {
        Some(index) => put_integer(out, 0x00, 4, index),
        None => {
            out.put_u8(0x00);
            put_string(out, name.as_str().as_bytes());
        }
    }
    put_string(out, value);
}

fn put_string(out: &mut BytesMut, bytes: &[u8]) {
    put_integer(out, 0x00, 7, bytes.len());
    out.put_slice(bytes);
}

/// Appends an integer with a `prefix`-bit prefix, the byte's other bits set to `flags`.
fn put_integer(out: &mut BytesMut, flags: u8, prefix: u8, value: usize) {
    let mask = (1usize << prefix) - 1;
    if value < mask {
        out.put_u8(flags | value as u8);
        return;
    }
    out.put_u8(flags | mask as u8);
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.put_u8(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.put_u8(rest as u8);
}

/// The static-table index of a response field's name, for the names responses commonly carry.
fn static_name_index(name: &str) -> Option<usize> {
    let index = match name {
        "accept-ranges" => 18,
        "access-control-allow-origin" => 20,
        "age" => 21,
        "allow" => 22,
        "cache-control" => 24,
        "content-disposition" => 25,
        "content-encoding" => 26,
        "content-language" => 27,
        "content-length" => 28,
        "content-location" => 29,
        "content-range" => 30,
        "content-type" => 31,
        "date" => 33,
        "etag" => 34,
        "expires" => 36,
        "last-modified" => 44,
        "link" => 45,
        "location" => 46,
        "proxy-authenticate" => 48,
        "refresh" => 52,
        "retry-after" => 53,
        "server" => 54,
        "set-cookie" => 55,
        "strict-transport-security" => 56,
        "vary" => 59,
        "via" => 60,
        "www-authenticate" => 61,
        _ => return None,
    };
    debug_assert!(matches!(&STATIC[index - 1].name, Name::Header(header) if header == name));
    Some(index)
}

#[cfg(test)]
mod tests;
