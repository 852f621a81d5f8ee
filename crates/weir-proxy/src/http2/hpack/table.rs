//! HPACK's static and dynamic tables (RFC 7541 section 2.3 and appendix A).

use std::collections::VecDeque;

use bytes::Bytes;
use http::HeaderName;

/// A pseudo-header field (RFC 9113 section 8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pseudo {
    Method,
    Scheme,
    Authority,
    Path,
    Status,
    Protocol,
}

/// A field's name as decoded: kept valid or not, so that decoding goes on (the table must stay in
/// step with the peer's) and the request is refused afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Name {
    Pseudo(Pseudo),
    Header(HeaderName),
    /// Not a lowercase token, or a pseudo-header this server does not know; its length.
    Invalid(usize),
}

impl Name {
    /// The name of `bytes` as it arrived in a literal.
    pub(crate) fn parse(bytes: &[u8]) -> Name {
        match bytes {
            b":method" => Name::Pseudo(Pseudo::Method),
            b":scheme" => Name::Pseudo(Pseudo::Scheme),
            b":authority" => Name::Pseudo(Pseudo::Authority),
            b":path" => Name::Pseudo(Pseudo::Path),
            b":status" => Name::Pseudo(Pseudo::Status),
            b":protocol" => Name::Pseudo(Pseudo::Protocol),
            _ => HeaderName::from_lowercase(bytes).map_or(Name::Invalid(bytes.len()), Name::Header),
        }
    }

    /// The name's length as the table counts it.
    pub(crate) fn len(&self) -> usize {
        match self {
            Name::Pseudo(Pseudo::Method | Pseudo::Scheme | Pseudo::Status) => 7,
            Name::Pseudo(Pseudo::Authority) => 10,
            Name::Pseudo(Pseudo::Path) => 5,
            Name::Pseudo(Pseudo::Protocol) => 9,
            Name::Header(name) => name.as_str().len(),
            Name::Invalid(len) => *len,
        }
    }
}

/// A decoded field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) name: Name,
    pub(crate) value: Bytes,
}

const fn pseudo(pseudo: Pseudo, value: &'static str) -> Field {
    Field { name: Name::Pseudo(pseudo), value: Bytes::from_static(value.as_bytes()) }
}

const fn header(name: &'static str) -> Field {
    Field { name: Name::Header(HeaderName::from_static(name)), value: Bytes::from_static(b"") }
}

/// The static table; index 1 is its first entry.
pub(crate) static STATIC: [Field; 61] = [
    pseudo(Pseudo::Authority, ""),
    pseudo(Pseudo::Method, "GET"),
    pseudo(Pseudo::Method, "POST"),
    pseudo(Pseudo::Path, "/"),
    pseudo(Pseudo::Path, "/index.html"),
    pseudo(Pseudo::Scheme, "http"),
    pseudo(Pseudo::Scheme, "https"),
    pseudo(Pseudo::Status, "200"),
    pseudo(Pseudo::Status, "204"),
    pseudo(Pseudo::Status, "206"),
    pseudo(Pseudo::Status, "304"),
    pseudo(Pseudo::Status, "400"),
    pseudo(Pseudo::Status, "404"),
    pseudo(Pseudo::Status, "500"),
    header("accept-charset"),
    Field {
        name: Name::Header(HeaderName::from_static("accept-encoding")),
        value: Bytes::from_static(b"gzip, deflate"),
    },
    header("accept-language"),
    header("accept-ranges"),
    header("accept"),
    header("access-control-allow-origin"),
    header("age"),
    header("allow"),
    header("authorization"),
    header("cache-control"),
    header("content-disposition"),
    header("content-encoding"),
    header("content-language"),
    header("content-length"),
    header("content-location"),
    header("content-range"),
    header("content-type"),
    header("cookie"),
    header("date"),
    header("etag"),
    header("expect"),
    header("expires"),
    header("from"),
    header("host"),
    header("if-match"),
    header("if-modified-since"),
    header("if-none-match"),
    header("if-range"),
    header("if-unmodified-since"),
    header("last-modified"),
    header("link"),
    header("location"),
    header("max-forwards"),
    header("proxy-authenticate"),
    header("proxy-authorization"),
    header("range"),
    header("referer"),
    header("refresh"),
    header("retry-after"),
    header("server"),
    header("set-cookie"),
    header("strict-transport-security"),
    header("transfer-encoding"),
    header("user-agent"),
    header("vary"),
    header("via"),
    header("www-authenticate"),
];

/// What an entry costs in the dynamic table besides its name and value (RFC 7541 section 4.1).
const ENTRY_OVERHEAD: usize = 32;

/// The dynamic table: newest entry first.
#[derive(Debug)]
pub(crate) struct Dynamic {
    entries: VecDeque<(Field, usize)>,
    size: usize,
    max_size: usize,
}

impl Dynamic {
    pub(crate) fn new(max_size: usize) -> Dynamic {
        Dynamic { entries: VecDeque::new(), size: 0, max_size }
    }

    /// The entry at `index` counted from 1 over both tables.
    pub(crate) fn get(&self, index: usize) -> Option<&Field> {
        match index {
            0 => None,
            1..=61 => STATIC.get(index - 1),
            _ => self.entries.get(index - 62).map(|(field, _)| field),
        }
    }

    /// Adds a field, evicting the oldest entries to make room.
    pub(crate) fn insert(&mut self, field: Field) {
        let size = field.name.len() + field.value.len() + ENTRY_OVERHEAD;
        self.evict_to(self.max_size.saturating_sub(size));
        if size <= self.max_size {
            self.size += size;
            self.entries.push_front((field, size));
        }
    }

    pub(crate) fn resize(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict_to(max_size);
    }

    fn evict_to(&mut self, size: usize) {
        while self.size > size {
            let Some((_, evicted)) = self.entries.pop_back() else { break };
            self.size -= evicted;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, value: &'static str) -> Field {
        Field { name: Name::parse(name.as_bytes()), value: Bytes::from_static(value.as_bytes()) }
    }

    #[test]
    fn static_entries_are_where_the_rfc_puts_them() {
        let table = Dynamic::new(4096);
        assert_eq!(table.get(2), Some(&field(":method", "GET")));
        assert_eq!(table.get(8), Some(&field(":status", "200")));
        assert_eq!(table.get(16), Some(&field("accept-encoding", "gzip, deflate")));
        assert_eq!(table.get(38), Some(&field("host", "")));
        assert_eq!(table.get(61), Some(&field("www-authenticate", "")));
        assert_eq!(table.get(0), None);
        assert_eq!(table.get(62), None);
    }

    #[test]
    fn the_newest_entry_comes_first_and_the_oldest_is_evicted() {
        // Each entry below is 32 + 1 + 1 bytes.
        let mut table = Dynamic::new(34 * 2);
        table.insert(field("a", "1"));
        table.insert(field("b", "2"));
        assert_eq!(table.get(62), Some(&field("b", "2")));
        assert_eq!(table.get(63), Some(&field("a", "1")));
        table.insert(field("c", "3"));
        assert_eq!(table.get(62), Some(&field("c", "3")));
        assert_eq!(table.get(63), Some(&field("b", "2")));
        assert_eq!(table.get(64), None);
        table.resize(34);
        assert_eq!(table.get(63), None);
        table.resize(0);
        assert_eq!(table.get(62), None);
    }

    #[test]
    fn an_entry_larger_than_the_table_empties_it() {
        let mut table = Dynamic::new(40);
        table.insert(field("a", "1"));
        table.insert(field("long-name", "long-value"));
        assert_eq!(table.get(62), None);
    }

    #[test]
    fn names_are_lowercase_tokens_or_known_pseudo_headers() {
        assert_eq!(Name::parse(b":path"), Name::Pseudo(Pseudo::Path));
        assert_eq!(Name::parse(b"x-custom"), Name::Header(HeaderName::from_static("x-custom")));
        assert_eq!(Name::parse(b"X-Custom"), Name::Invalid(8));
        assert_eq!(Name::parse(b":other"), Name::Invalid(6));
        assert_eq!(Name::parse(b"bad name"), Name::Invalid(8));
        assert_eq!(Name::parse(b""), Name::Invalid(0));
    }
}
