//! Hand-written JSON for access-log lines: strings escaped so that any input bytes (quotes, control
//! bytes, invalid UTF-8) still make one valid line, and numbers written without the formatting
//! machinery. No value trees: everything is appended to one byte buffer.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as a JSON string. Quotes, backslashes, control bytes and DEL are escaped; bytes
/// that are not UTF-8 become U+FFFD, so a hostile path or host can neither break the line nor make it
/// invalid JSON.
pub fn push_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    // Most values are plain printable ASCII: one check, one copy.
    if is_plain(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    for chunk in bytes.utf8_chunks() {
        push_escaped(out, chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
    out.push(b'"');
}

/// Whether every byte is printable ASCII other than `"` and `\`, so it goes out as it is. Eight
/// bytes at a time: most of a line is such text.
fn is_plain(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let plain = words.all(|word| !word_needs_escape(u64::from_le_bytes(word.try_into().unwrap_or_default())));
    plain && words.remainder().iter().all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// Whether any byte of `word` is a control byte, DEL, `"`, `\` or not ASCII. Each test is the
/// classic "has a byte less than n" one, exact about whether there is one.
fn word_needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    let equal = |byte: u8| below(word ^ (ONES * u64::from(byte)), 1);
    (below(word, 0x20) | (word & HIGH) | equal(0x7f) | equal(b'"') | equal(b'\\')) != 0
}

/// Appends valid UTF-8, escaping what JSON (or a terminal reading the log) must not see raw.
fn push_escaped(out: &mut Vec<u8>, text: &[u8]) {
    let mut plain_from = 0;
    for (i, &byte) in text.iter().enumerate() {
        let short: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&text[plain_from..i]);
        if short.is_empty() {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]);
        } else {
            out.extend_from_slice(short);
        }
        plain_from = i + 1;
    }
    out.extend_from_slice(&text[plain_from..]);
}

/// Appends an unsigned integer in decimal.
pub fn push_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends a duration in milliseconds with microsecond precision: `12.345`.
pub fn push_millis(out: &mut Vec<u8>, duration: Duration) {
    let micros = duration.as_micros().min(u128::from(u64::MAX)) as u64;
    push_u64(out, micros / 1000);
    out.push(b'.');
    push_padded(out, micros % 1000, 3);
}

/// Appends `value` with leading zeros to `width` digits (at most 4; `value` must fit). Division by
/// the constant 10 compiles to a multiplication, unlike division by a computed power of ten.
fn push_padded(out: &mut Vec<u8>, mut value: u64, width: usize) {
    let mut digits = [b'0'; 4];
    for digit in digits[..width].iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out.extend_from_slice(&digits[..width]);
}

/// A quoted RFC 3339 timestamp with milliseconds, as [`push_time`] writes it.
type TimeText = [u8; 26];

thread_local! {
    /// The last second this thread wrote a time in, and its text: lines come many a second, and
    /// only the milliseconds differ between them.
    static LAST_SECOND: std::cell::Cell<(u64, TimeText)> = const { std::cell::Cell::new((u64::MAX, [0; 26])) };
}

/// Appends a time as a quoted RFC 3339 UTC timestamp with milliseconds: `"2026-11-22T19:14:13.123Z"`.
/// The date and time of day are formatted once a second per thread; each line sets its
/// milliseconds in a copy and appends it in one go.
pub fn push_time(out: &mut Vec<u8>, time: SystemTime) {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (last, mut text) = LAST_SECOND.get();
    if last != seconds {
        text = second_text(seconds);
        LAST_SECOND.set((seconds, text));
    }
    set_digits(&mut text[21..24], u64::from(since_epoch.subsec_millis()));
    out.extend_from_slice(&text);
}

/// The text of a whole second since the epoch, its milliseconds zero.
fn second_text(seconds: u64) -> TimeText {
    let (year, month, day) = civil_date(seconds / 86_400);
    let in_day = seconds % 86_400;
    let mut text = *b"\"0000-00-00T00:00:00.000Z\"";
    set_digits(&mut text[1..5], year);
    set_digits(&mut text[6..8], month);
    set_digits(&mut text[9..11], day);
    set_digits(&mut text[12..14], in_day / 3600);
    set_digits(&mut text[15..17], in_day / 60 % 60);
    set_digits(&mut text[18..20], in_day % 60);
    text
}

/// Writes `value`'s last `digits.len()` decimal digits into `digits`, zero-padded.
fn set_digits(digits: &mut [u8], mut value: u64) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The proleptic Gregorian (year, month, day) of a day counted from 1970-01-01, by the
/// era-of-400-years method.
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Appends a socket address as a quoted string: `"10.0.0.1:8080"`, `"[::1]:8080"`. An IPv4 address
/// is set on the stack and appended in one copy.
pub fn push_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip().to_canonical() {
        IpAddr::V4(v4) => {
            // `"255.255.255.255:65535"` at the longest, written a byte at a time: the pieces are
            // one to five bytes, too short to be worth a copy each.
            let mut text = [0u8; 23];
            let mut at = 0;
            let mut put = |byte: u8| {
                text[at] = byte;
                at += 1;
            };
            put(b'"');
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    put(b'.');
                }
                if octet >= 100 {
                    put(b'0' + octet / 100);
                }
                if octet >= 10 {
                    put(b'0' + octet / 10 % 10);
                }
                put(b'0' + octet % 10);
            }
            put(b':');
            let mut port = [0u8; 5];
            let width = decimal_width(u64::from(addr.port()));
            set_digits(&mut port[..width], u64::from(addr.port()));
            port[..width].iter().for_each(|&digit| put(digit));
            put(b'"');
            out.extend_from_slice(&text[..at]);
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "\"[{v6}]:{}\"", addr.port());
        }
    }
}

/// Decimal digits in `value` (at least 1).
fn decimal_width(value: u64) -> usize {
    value.checked_ilog10().map_or(1, |log| log as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        push_string(&mut out, bytes);
        String::from_utf8(out).expect("escaped output is UTF-8")
    }

    #[test]
    fn strings_escape_quotes_backslashes_and_control_bytes() {
        assert_eq!(string(b"plain /path"), "\"plain /path\"");
        assert_eq!(string(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(string(b"line\nbreak\r\t"), r#""line\nbreak\r\t""#);
        assert_eq!(string(b"\x00\x1b[31m\x7f"), r#""\u0000\u001b[31m\u007f""#);
        assert_eq!(string("caf\u{e9} \u{2603}".as_bytes()), "\"caf\u{e9} \u{2603}\"");
    }

    #[test]
    fn every_byte_is_plain_or_escaped_whatever_its_place_in_a_word() {
        for byte in 0..=255u8 {
            let plain = (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\';
            for at in 0..17 {
                let mut text = vec![b'a'; 17];
                text[at] = byte;
                assert_eq!(is_plain(&text), plain, "byte {byte:#04x} at {at}");
            }
        }
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        assert_eq!(string(b"/a\xff\xfeb"), r#""/a\ufffd\ufffdb""#);
        assert_eq!(string(b"\xe2\x82"), r#""\ufffd""#);
    }

    #[test]
    fn numbers_and_durations() {
        let mut out = Vec::new();
        push_u64(&mut out, 0);
        out.push(b' ');
        push_u64(&mut out, u64::MAX);
        out.push(b' ');
        push_millis(&mut out, Duration::from_micros(12_345));
        out.push(b' ');
        push_millis(&mut out, Duration::from_nanos(999));
        assert_eq!(String::from_utf8(out).unwrap(), "0 18446744073709551615 12.345 0.000");
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        let cases = [
            (0, "\"1970-01-01T00:00:00.000Z\""),
            (951_782_400_123, "\"2000-02-29T00:00:00.123Z\""),
            (1_795_374_853_007, "\"2026-11-22T19:14:13.007Z\""),
            (4_102_444_799_999, "\"2099-12-31T23:59:59.999Z\""),
        ];
        for (millis, expected) in cases {
            let mut out = Vec::new();
            push_time(&mut out, UNIX_EPOCH + Duration::from_millis(millis));
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn a_second_formatted_once_serves_its_milliseconds_and_the_next_second_is_formatted_anew() {
        let text = |millis: u64| {
            let mut out = Vec::new();
            push_time(&mut out, UNIX_EPOCH + Duration::from_millis(millis));
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(1_795_374_853_007), "\"2026-11-22T19:14:13.007Z\"");
        assert_eq!(text(1_795_374_853_999), "\"2026-11-22T19:14:13.999Z\"");
        assert_eq!(text(1_795_374_854_000), "\"2026-11-22T19:14:14.000Z\"");
        assert_eq!(text(1_795_374_853_500), "\"2026-11-22T19:14:13.500Z\"", "an earlier second, too");
    }

    #[test]
    fn addresses() {
        let mut out = Vec::new();
        push_addr(&mut out, "10.0.0.1:8080".parse().unwrap());
        push_addr(&mut out, "[::1]:80".parse().unwrap());
        push_addr(&mut out, "[::ffff:127.0.0.1]:9".parse().unwrap());
        push_addr(&mut out, "192.10.200.0:1".parse().unwrap());
        push_addr(&mut out, "255.255.255.255:65535".parse().unwrap());
        push_addr(&mut out, "0.0.0.0:0".parse().unwrap());
        let expected = r#""10.0.0.1:8080""[::1]:80""127.0.0.1:9""192.10.200.0:1""255.255.255.255:65535""0.0.0.0:0""#;
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}
