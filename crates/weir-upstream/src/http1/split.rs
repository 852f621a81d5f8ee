//! Splitting a message head into its lines: where the start line ends and where each field's name
//! and value sit. Nothing here judges what the pieces hold: the `http` types they become (method,
//! target, status, names, values) check that.

use std::ops::Range;

use super::scan::find_byte;

/// Where a field's name and value sit in the head, as byte offsets (a head is far below 4 GiB).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FieldSpan {
    pub name: (u32, u32),
    pub value: (u32, u32),
}

impl FieldSpan {
    pub fn name(&self) -> Range<usize> {
        self.name.0 as usize..self.name.1 as usize
    }

    pub fn value(&self) -> Range<usize> {
        self.value.0 as usize..self.value.1 as usize
    }
}

/// A whole head found at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct SplitHead {
    /// Bytes of the head, through the empty line that ends it.
    pub length: usize,
    /// The request or status line, without its line ending.
    pub start_line: Range<usize>,
    /// How many of the given slots hold fields.
    pub fields: usize,
}

/// Why a head could not be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitError {
    /// More fields than slots.
    TooManyFields,
    /// A field line without a colon.
    NoColon,
    /// A line ends in LF alone where CRLF is required.
    BareLineFeed,
}

/// How a line may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnds {
    /// CRLF only.
    Crlf,
    /// CRLF or a bare LF, as RFC 9112 section 2.2 lets a recipient accept (an upstream's head).
    CrlfOrLf,
}

/// Field slots on the stack; a head with more fields is split again into the heap.
const STACK_FIELDS: usize = 32;

/// Where a head's fields are put: on the stack for most heads, on the heap for one with more.
pub struct FieldSlots {
    on_stack: [FieldSpan; STACK_FIELDS],
    on_heap: Vec<FieldSpan>,
}

impl Default for FieldSlots {
    fn default() -> Self {
        FieldSlots { on_stack: [FieldSpan::default(); STACK_FIELDS], on_heap: Vec::new() }
    }
}

impl FieldSlots {
    /// [`split_head`] with room for `max_fields` fields.
    pub fn split(&mut self, buf: &[u8], max_fields: usize, ends: LineEnds) -> Result<Option<SplitHead>, SplitError> {
        match split_head(buf, &mut self.on_stack[..max_fields.min(STACK_FIELDS)], ends) {
            Err(SplitError::TooManyFields) if max_fields > STACK_FIELDS => {
                self.on_heap.resize(max_fields, FieldSpan::default());
                split_head(buf, &mut self.on_heap, ends)
            }
            split => split,
        }
    }

    /// The fields of the head `split` found.
    pub fn fields(&self, split: &SplitHead) -> &[FieldSpan] {
        if self.on_heap.is_empty() { &self.on_stack[..split.fields] } else { &self.on_heap[..split.fields] }
    }
}

/// Splits the head at the front of `buf`, putting its fields in `fields`. `Ok(None)`: the head has
/// not fully arrived. Empty lines before the start line are skipped.
pub fn split_head(buf: &[u8], fields: &mut [FieldSpan], ends: LineEnds) -> Result<Option<SplitHead>, SplitError> {
    let mut at = 0;
    let mut start_line = None;
    let mut count = 0;
    loop {
        let Some(i) = find_byte(b'\n', &buf[at..]) else { return Ok(None) };
        let line_feed = at + i;
        let end = if line_feed > at && buf[line_feed - 1] == b'\r' {
            line_feed - 1
        } else if ends == LineEnds::CrlfOrLf {
            line_feed
        } else {
            return Err(SplitError::BareLineFeed);
        };
        let line = at..end;
        at = line_feed + 1;
        match &start_line {
            None if line.is_empty() => {}
            None => start_line = Some(line),
            Some(start) if line.is_empty() => {
                return Ok(Some(SplitHead { length: at, start_line: start.clone(), fields: count }));
            }
            Some(_) => {
                let slot = fields.get_mut(count).ok_or(SplitError::TooManyFields)?;
                *slot = field_span(buf, line)?;
                count += 1;
            }
        }
    }
}

/// Name and OWS-trimmed value of the field line at `line`.
fn field_span(buf: &[u8], line: Range<usize>) -> Result<FieldSpan, SplitError> {
    let colon = line.start + buf[line.clone()].iter().position(|&b| b == b':').ok_or(SplitError::NoColon)?;
    let is_ows = |b: u8| b == b' ' || b == b'\t';
    let mut value = colon + 1..line.end;
    while value.start < value.end && is_ows(buf[value.start]) {
        value.start += 1;
    }
    while value.end > value.start && is_ows(buf[value.end - 1]) {
        value.end -= 1;
    }
    let offset = |i: usize| i as u32;
    Ok(FieldSpan { name: (offset(line.start), offset(colon)), value: (offset(value.start), offset(value.end)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fields = Vec<(String, String)>;

    fn split(head: &[u8], ends: LineEnds) -> Result<Option<(SplitHead, Fields)>, SplitError> {
        let mut slots = [FieldSpan::default(); 8];
        let Some(split) = split_head(head, &mut slots, ends)? else { return Ok(None) };
        let text = |range: Range<usize>| String::from_utf8_lossy(&head[range]).into_owned();
        let fields = slots[..split.fields].iter().map(|f| (text(f.name()), text(f.value()))).collect();
        Ok(Some((split, fields)))
    }

    #[test]
    fn a_head_splits_into_its_start_line_and_trimmed_fields() {
        let head = b"\r\nGET /a HTTP/1.1\r\nHost: x\r\nX-A:\t a: b \t\r\nEmpty:\r\n\r\nbody";
        let (split, fields) = split(head, LineEnds::Crlf).unwrap().unwrap();
        assert_eq!(&head[split.start_line.clone()], b"GET /a HTTP/1.1");
        assert_eq!(split.length, head.len() - 4);
        let expected = [("Host", "x"), ("X-A", "a: b"), ("Empty", "")];
        assert_eq!(fields, expected.map(|(n, v)| (n.to_string(), v.to_string())));
    }

    #[test]
    fn every_prefix_of_a_head_is_partial() {
        let head = b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n";
        for end in 0..head.len() {
            assert_eq!(split(&head[..end], LineEnds::Crlf), Ok(None), "{end}");
        }
        assert!(split(head, LineEnds::Crlf).unwrap().is_some());
    }

    #[test]
    fn line_ends_limits_and_colons() {
        let bare = b"HTTP/1.1 200 OK\nA: 1\n\n";
        assert_eq!(split(bare, LineEnds::Crlf), Err(SplitError::BareLineFeed));
        let (split_bare, fields) = split(bare, LineEnds::CrlfOrLf).unwrap().unwrap();
        assert_eq!((split_bare.length, fields.len()), (bare.len(), 1));
        assert_eq!(split(b"GET / HTTP/1.1\r\nno colon\r\n\r\n", LineEnds::Crlf), Err(SplitError::NoColon));
        let many: Vec<u8> = [&b"GET / HTTP/1.1\r\n"[..], &b"A: b\r\n".repeat(9), b"\r\n"].concat();
        assert_eq!(split(&many, LineEnds::Crlf), Err(SplitError::TooManyFields));
    }
}
