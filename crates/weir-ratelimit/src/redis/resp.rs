//! The few pieces of RESP2 (the Redis wire protocol) that global limits need: writing a command
//! as an array of bulk strings, and reading replies one at a time from a buffer that may hold part
//! of a reply, several replies, or both.

/// A reply from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// Nesting and sizes beyond these are not something weir's commands get back: the stream is broken.
const MAX_BULK: usize = 64 * 1024 * 1024;
const MAX_ARRAY: usize = 1024 * 1024;
const MAX_DEPTH: usize = 8;

/// Appends one command to `out`.
pub fn write_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let mut digits = Decimal::default();
    out.push(b'*');
    out.extend_from_slice(digits.of(args.len() as u64));
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        out.extend_from_slice(digits.of(arg.len() as u64));
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Room to write a number in decimal without allocating.
#[derive(Default)]
pub struct Decimal([u8; 20]);

impl Decimal {
    /// `value` in decimal, borrowed from this buffer.
    pub fn of(&mut self, mut value: u64) -> &[u8] {
        let mut at = self.0.len();
        loop {
            at -= 1;
            self.0[at] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                return &self.0[at..];
            }
        }
    }
}

/// The stream cannot be read as RESP.
#[derive(Debug, thiserror::Error)]
#[error("malformed reply from Redis")]
pub struct Malformed;

/// Reads one whole reply from the front of `buf`: the reply and the bytes it took, or `None` when
/// `buf` does not hold a whole reply yet.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, Malformed> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], start: usize, depth: usize) -> Result<Option<(Reply, usize)>, Malformed> {
    if depth > MAX_DEPTH {
        return Err(Malformed);
    }
    let Some((line, after)) = line(buf, start) else { return Ok(None) };
    let (kind, text) = line.split_first().ok_or(Malformed)?;
    let text = std::str::from_utf8(text).map_err(|_| Malformed)?;
    match kind {
        b'+' => Ok(Some((Reply::Status(text.to_string()), after))),
        b'-' => Ok(Some((Reply::Error(text.to_string()), after))),
        b':' => Ok(Some((Reply::Integer(text.parse().map_err(|_| Malformed)?), after))),
        b'$' => bulk(buf, after, text),
        b'*' => array(buf, after, text, depth),
        _ => Err(Malformed),
    }
}

/// The line starting at `start` without its CRLF, and where the next one starts.
fn line(buf: &[u8], start: usize) -> Option<(&[u8], usize)> {
    let mut from = start;
    loop {
        let end = buf.get(from..)?.iter().position(|&b| b == b'\r')? + from;
        match buf.get(end + 1) {
            Some(b'\n') => return Some((&buf[start..end], end + 2)),
            Some(_) => from = end + 1,
            None => return None,
        }
    }
}

fn bulk(buf: &[u8], after: usize, len: &str) -> Result<Option<(Reply, usize)>, Malformed> {
    if len == "-1" {
        return Ok(Some((Reply::Bulk(None), after)));
    }
    let len: usize = len.parse().map_err(|_| Malformed)?;
    if len > MAX_BULK {
        return Err(Malformed);
    }
    if buf.len() < after + len + 2 {
        return Ok(None);
    }
    Ok(Some((Reply::Bulk(Some(buf[after..after + len].to_vec())), after + len + 2)))
}

fn array(buf: &[u8], mut at: usize, len: &str, depth: usize) -> Result<Option<(Reply, usize)>, Malformed> {
    if len == "-1" {
        return Ok(Some((Reply::Array(None), at)));
    }
    let len: usize = len.parse().map_err(|_| Malformed)?;
    if len > MAX_ARRAY {
        return Err(Malformed);
    }
    let mut items = Vec::with_capacity(len.min(16));
    for _ in 0..len {
        let Some((item, next)) = parse_at(buf, at, depth + 1)? else { return Ok(None) };
        items.push(item);
        at = next;
    }
    Ok(Some((Reply::Array(Some(items)), at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        write_command(&mut out, &[b"GET", b"k"]);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        let long = vec![b'x'; 1234];
        out.clear();
        write_command(&mut out, &[&long]);
        assert!(out.starts_with(b"*1\r\n$1234\r\nxxx"));
        let mut digits = Decimal::default();
        assert_eq!(digits.of(0), b"0");
        assert_eq!(digits.of(u64::MAX), u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn a_carriage_return_inside_a_line_does_not_end_it() {
        let (reply, used) = parse(b"+a\rb\r\n:1\r\n").unwrap().unwrap();
        assert_eq!((reply, used), (Reply::Status("a\rb".into()), 6));
    }

    #[test]
    fn replies_parse_whole_and_wait_when_partial() {
        let stream = b"+OK\r\n-NOSCRIPT No matching script\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:1\r\n*1\r\n:7\r\n";
        let mut at = 0;
        let mut replies = Vec::new();
        while let Some((reply, used)) = parse(&stream[at..]).unwrap() {
            replies.push(reply);
            at += used;
        }
        assert_eq!(at, stream.len());
        assert_eq!(replies[1], Reply::Error("NOSCRIPT No matching script".into()));
        assert_eq!(replies[3], Reply::Bulk(Some(b"abc".to_vec())));
        assert_eq!(
            replies[5],
            Reply::Array(Some(vec![Reply::Integer(1), Reply::Array(Some(vec![Reply::Integer(7)]))]))
        );
        // Every proper prefix of a reply is incomplete, never an error.
        let array = b"*2\r\n$3\r\nabc\r\n:5\r\n";
        for cut in 0..array.len() {
            assert!(parse(&array[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        assert!(parse(b"?what\r\n").is_err());
    }
}
