//! Decoding HPACK's Huffman code (RFC 7541 section 5.2 and appendix B).
//!
//! The code is canonical: within one length, codes run in the order of their symbols, and each
//! length's first code follows on from the last code of the length before. So the length of each
//! symbol's code is all the table there is; the decoder derives, per length, the first code and how
//! many codes have it, and finds a symbol by its offset from that first code.

/// The length in bits of each symbol's code: the 256 octets, then EOS (256).
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, //
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, //
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, //
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, //
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, //
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, //
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, //
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, //
    30,
];

const EOS: u16 = 256;
const LONGEST: usize = 30;
const SHORTEST: usize = 5;

/// The canonical code's tables, indexed by code length.
struct Canonical {
    /// The first code of each length.
    first: [u32; LONGEST + 1],
    /// How many codes have each length.
    count: [u32; LONGEST + 1],
    /// Where each length's symbols start in `symbols`.
    offset: [u16; LONGEST + 1],
    /// The symbols by code length, then by value: the order of their codes.
    symbols: [u16; 257],
}

const CANONICAL: Canonical = canonical();

const fn canonical() -> Canonical {
    let mut count = [0u32; LONGEST + 1];
    let mut symbol = 0;
    while symbol < CODE_LENGTHS.len() {
        count[CODE_LENGTHS[symbol] as usize] += 1;
        symbol += 1;
    }
    let mut first = [0u32; LONGEST + 1];
    let mut offset = [0u16; LONGEST + 1];
    let mut symbols = [0u16; 257];
    let (mut code, mut placed) = (0u32, 0usize);
    let mut length = 1;
    while length <= LONGEST {
        first[length] = code;
        offset[length] = placed as u16;
        let mut symbol = 0;
        while symbol < CODE_LENGTHS.len() {
            if CODE_LENGTHS[symbol] as usize == length {
                symbols[placed] = symbol as u16;
                placed += 1;
            }
            symbol += 1;
        }
        code = (code + count[length]) << 1;
        length += 1;
    }
    Canonical { first, count, offset, symbols }
}

/// Why a Huffman-coded string could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidHuffman;

/// Appends the decoding of `coded` to `out`.
pub(crate) fn decode(coded: &[u8], out: &mut Vec<u8>) -> Result<(), InvalidHuffman> {
    let table = &CANONICAL;
    let (mut code, mut length) = (0u32, 0usize);
    for &byte in coded {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            length += 1;
            if length < SHORTEST {
                continue;
            }
            let index = code.wrapping_sub(table.first[length]);
            if index < table.count[length] {
                let symbol = table.symbols[usize::from(table.offset[length]) + index as usize];
                if symbol == EOS {
                    return Err(InvalidHuffman);
                }
                out.push(symbol as u8);
                (code, length) = (0, 0);
            } else if length == LONGEST {
                return Err(InvalidHuffman);
            }
        }
    }
    // What is left is padding: fewer than eight bits, all ones (the start of EOS).
    let padding_ok = length < 8 && code == (1u32 << length) - 1;
    if padding_ok { Ok(()) } else { Err(InvalidHuffman) }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The code of `symbol`, from the canonical tables: what an encoder writes.
    fn code_of(symbol: u16) -> (u32, usize) {
        let length = CODE_LENGTHS[usize::from(symbol)] as usize;
        let start = usize::from(CANONICAL.offset[length]);
        let rank = CANONICAL.symbols[start..].iter().position(|&s| s == symbol).unwrap();
        (CANONICAL.first[length] + rank as u32, length)
    }

    /// Huffman-codes `text` (for tests: weir never Huffman-codes what it sends).
    pub(crate) fn encode(text: &[u8]) -> Vec<u8> {
        let (mut bits, mut held, mut out) = (0u64, 0usize, Vec::new());
        for &byte in text {
            let (code, length) = code_of(u16::from(byte));
            bits = (bits << length) | u64::from(code);
            held += length;
            while held >= 8 {
                out.push((bits >> (held - 8)) as u8);
                held -= 8;
            }
            bits &= (1 << held) - 1;
        }
        if held > 0 {
            out.push(((bits << (8 - held)) | ((1 << (8 - held)) - 1)) as u8);
        }
        out
    }

    fn decoded(coded: &[u8]) -> Result<Vec<u8>, InvalidHuffman> {
        let mut out = Vec::new();
        decode(coded, &mut out).map(|()| out)
    }

    #[test]
    fn the_code_table_is_the_rfcs() {
        // RFC 7541 appendix B, a few rows: '0' is 00000, 'a' 00011, ' ' 010100, EOS thirty ones.
        assert_eq!(code_of(u16::from(b'0')), (0b00000, 5));
        assert_eq!(code_of(u16::from(b'a')), (0b00011, 5));
        assert_eq!(code_of(u16::from(b' ')), (0b010100, 6));
        assert_eq!(code_of(u16::from(b'A')), (0b100001, 6));
        assert_eq!(code_of(0), (0x1ff8, 13));
        assert_eq!(code_of(255), (0x3ffffee, 26));
        assert_eq!(code_of(EOS), (0x3fffffff, 30));
    }

    #[test]
    fn the_rfc_examples_decode() {
        // RFC 7541 appendix C.4.
        let www = [0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff];
        assert_eq!(decoded(&www).unwrap(), b"www.example.com");
        assert_eq!(decoded(&[0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf]).unwrap(), b"no-cache");
        let key = [0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f];
        assert_eq!(decoded(&key).unwrap(), b"custom-key");
        let value = [0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf];
        assert_eq!(decoded(&value).unwrap(), b"custom-value");
    }

    #[test]
    fn every_octet_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decoded(&encode(&all)).unwrap(), all);
        for byte in 0..=255u8 {
            assert_eq!(decoded(&encode(&[byte])).unwrap(), [byte]);
        }
        assert_eq!(decoded(&[]).unwrap(), b"");
    }

    #[test]
    fn bad_padding_and_eos_are_refused() {
        // 'a' (00011) padded with zeros instead of ones.
        assert_eq!(decoded(&[0b0001_1000]), Err(InvalidHuffman));
        // A whole byte of padding.
        let mut padded = encode(b"a");
        padded.push(0xff);
        assert_eq!(decoded(&padded), Err(InvalidHuffman));
        // EOS itself, thirty ones, then two padding ones.
        assert_eq!(decoded(&[0xff, 0xff, 0xff, 0xff]), Err(InvalidHuffman));
    }
}
