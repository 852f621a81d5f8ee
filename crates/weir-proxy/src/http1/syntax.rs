//! Byte-level grammar checks for HTTP/1.1 request lines, field lines and chunk lines (RFC 9110, RFC 9112).

use weir_upstream::wire::{find_byte, is_field_byte, is_field_value};

use crate::framing::Violation;

/// `tchar` from RFC 9110 §5.6.2, as a lookup table so token checks are one load per byte.
static TCHAR: [bool; 256] = tchar_table();

const fn tchar_table() -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric()
            || matches!(b, b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_')
            || matches!(b, b'`' | b'|' | b'~');
        i += 1;
    }
    table
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| TCHAR[usize::from(b)])
}

fn token_len(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| TCHAR[usize::from(b)]).count()
}

fn skip_ows(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

/// Strips surrounding OWS only: `<[u8]>::trim_ascii` would also strip form feeds, which are invalid in a value.
fn trim_ows(s: &[u8]) -> &[u8] {
    let s = skip_ows(s);
    let end = s.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(0, |i| i + 1);
    &s[..end]
}

/// Validates `method SP request-target SP HTTP-version`; returns whether the version is HTTP/1.0.
pub(crate) fn request_line(line: &[u8], max_uri_len: usize) -> Result<bool, Violation> {
    let first = find_byte(b' ', line).ok_or(Violation::InvalidRequestLine)?;
    let last = line.iter().rposition(|&b| b == b' ').ok_or(Violation::InvalidRequestLine)?;
    if first == last {
        return Err(Violation::InvalidRequestLine);
    }
    let (method, target, version) = (&line[..first], &line[first + 1..last], &line[last + 1..]);
    // Visible ASCII only: this also rejects the empty target and extra spaces ("GET  / HTTP/1.1").
    let target_ok = !target.is_empty() && target.iter().all(|&b| (0x21..=0x7e).contains(&b));
    if !is_token(method) || !target_ok {
        return Err(Violation::InvalidRequestLine);
    }
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        _ => return Err(Violation::InvalidRequestLine),
    };
    if target.len() > max_uri_len {
        return Err(Violation::UriTooLong);
    }
    Ok(http10)
}

/// Length of the request-target in a request line that has not ended yet, for telling an overlong URI from an
/// overlong head before the line is complete.
pub(crate) fn partial_target_len(partial_line: &[u8]) -> usize {
    let Some(space) = find_byte(b' ', partial_line) else { return 0 };
    let rest = &partial_line[space + 1..];
    find_byte(b' ', rest).unwrap_or(rest.len())
}

/// Validates one field line (no CRLF) and splits it into name and OWS-trimmed value.
pub(crate) fn field_line(line: &[u8]) -> Result<(&[u8], &[u8]), Violation> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(Violation::ObsoleteLineFolding);
    }
    let colon = find_byte(b':', line).ok_or(Violation::InvalidHeaderName)?;
    let name = &line[..colon];
    if !is_token(name) {
        return Err(Violation::InvalidHeaderName);
    }
    let value = &line[colon + 1..];
    if !is_field_value(value) {
        return Err(Violation::InvalidHeaderValue);
    }
    Ok((name, trim_ows(value)))
}

/// Parses a Content-Length value: 1 to 19 digits, so it always fits in a u64. Lists ("5, 5") are refused.
pub(crate) fn content_length(value: &[u8]) -> Result<u64, Violation> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(Violation::InvalidContentLength);
    }
    Ok(value.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Whether a (trimmed) Transfer-Encoding value is exactly `chunked`, the only coding weir accepts.
pub(crate) fn is_chunked(value: &[u8]) -> bool {
    value.eq_ignore_ascii_case(b"chunked")
}

/// Whether a comma-separated field value lists `token` (case-insensitive), like `upgrade` in
/// `Connection: keep-alive, Upgrade`.
pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    weir_upstream::wire::tokens(value).any(|item| item.eq_ignore_ascii_case(token))
}

/// Validates `chunk-size [chunk-ext]` (no CRLF) and returns the size.
pub(crate) fn chunk_size_line(line: &[u8]) -> Result<u64, Violation> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    // 16 hex digits is the most a u64 holds; longer sizes, even zero-padded, are refused rather than parsed.
    if digits == 0 || digits > 16 || !chunk_ext_ok(&line[digits..]) {
        return Err(Violation::InvalidChunk);
    }
    let hex = |b: u8| u64::from((b as char).to_digit(16).unwrap_or(0));
    Ok(line[..digits].iter().fold(0, |n, &b| (n << 4) | hex(b)))
}

/// `*( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )`, with nothing else after it (not even whitespace).
fn chunk_ext_ok(mut rest: &[u8]) -> bool {
    while !rest.is_empty() {
        let Some(after_semi) = skip_ows(rest).strip_prefix(b";") else { return false };
        let name_start = skip_ows(after_semi);
        let name_len = token_len(name_start);
        if name_len == 0 {
            return false;
        }
        rest = &name_start[name_len..];
        if let Some(after_eq) = skip_ows(rest).strip_prefix(b"=") {
            let value = skip_ows(after_eq);
            let Some(value_len) = ext_value_len(value) else { return false };
            rest = &value[value_len..];
        }
    }
    true
}

/// Length of a token or quoted-string at the start of `s`, if there is a well-formed one.
fn ext_value_len(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'"') {
        let len = token_len(s);
        return (len > 0).then_some(len);
    }
    let mut i = 1;
    while let Some(&b) = s.get(i) {
        match b {
            b'"' => return Some(i + 1),
            b'\\' if s.get(i + 1).is_some_and(|&escaped| is_field_byte(escaped)) => i += 2,
            _ if b != b'\\' && is_field_byte(b) => i += 1,
            _ => return None,
        }
    }
    None
}
