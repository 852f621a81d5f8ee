//! Scanning head bytes a word at a time (no memchr dependency; a byte loop is several times slower on
//! long heads), shared by weir's server and its upstream client.

const LOW: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `x` that is zero. A borrow can flag a byte above a zero byte too,
/// never below one, so the lowest flag is exact.
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(LOW) & !x & HIGH
}

/// Index of the first byte of `hay` that `flags` (a word-wide test as [`zero_bytes`]) marks, or that `is`
/// accepts in the bytes after the last whole word.
fn find_flagged(hay: &[u8], flags: impl Fn(u64) -> u64, is: impl Fn(u8) -> bool) -> Option<usize> {
    let mut words = hay.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let bytes: [u8; 8] = word.try_into().unwrap_or_default();
        let hits = flags(u64::from_le_bytes(bytes));
        if hits != 0 {
            return Some(offset + (hits.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    words.remainder().iter().position(|&b| is(b)).map(|i| offset + i)
}

/// Index of the first `needle` in `hay`.
pub fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    let pattern = LOW * u64::from(needle);
    find_flagged(hay, |x| zero_bytes(x ^ pattern), |b| b == needle)
}

/// Index of the first CR or LF in `hay`: where a line ends, or breaks the rules.
pub fn find_line_break(hay: &[u8]) -> Option<usize> {
    const CR: u64 = LOW * b'\r' as u64;
    const LF: u64 = LOW * b'\n' as u64;
    find_flagged(hay, |x| zero_bytes(x ^ CR) | zero_bytes(x ^ LF), |b| b == b'\r' || b == b'\n')
}

/// HTAB, SP, VCHAR and obs-text: what a field value (and a quoted-pair) may contain.
pub fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// Whether every byte of `value` may be in a field value. A word with no control byte and no DEL passes
/// whole; only a word with one (HTAB, say) is looked at byte by byte.
pub fn is_field_value(value: &[u8]) -> bool {
    const SPACE: u64 = LOW * 0x20;
    const DEL: u64 = LOW * 0x7f;
    let mut words = value.chunks_exact(8);
    for word in &mut words {
        let bytes: [u8; 8] = word.try_into().unwrap_or_default();
        let x = u64::from_le_bytes(bytes);
        // Bytes under 0x20 (exact about whether there is one, for any byte values), and DEL.
        let suspect = (x.wrapping_sub(SPACE) & !x & HIGH) | zero_bytes(x ^ DEL);
        if suspect != 0 && !word.iter().all(|&b| is_field_byte(b)) {
            return false;
        }
    }
    words.remainder().iter().all(|&b| is_field_byte(b))
}
