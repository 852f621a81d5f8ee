//! Field names as they come off the wire. The common ones are recognised by comparing a word at a
//! time, whatever their case, without the general parse (which lowercases into a scratch buffer and
//! then matches every standard name); any other name goes through [`HeaderName::from_bytes`].

use http::header::{self, HeaderName, InvalidHeaderName};

/// Longest name the table holds, in words.
const WORDS: usize = 4;

/// A common field name: its lower-case bytes as little-endian words, and the case bit (0x20) of
/// each letter, so that `(wire | case) == lower` holds exactly for the case variants of the name
/// (a byte that is not a letter must match as it is).
struct Known {
    name: HeaderName,
    lower: [u64; WORDS],
    case: [u64; WORDS],
}

const fn known(name: HeaderName, text: &str) -> Known {
    let bytes = text.as_bytes();
    assert!(bytes.len() <= WORDS * 8);
    let (mut lower, mut case) = ([0u64; WORDS], [0u64; WORDS]);
    let mut i = 0;
    while i < bytes.len() {
        let shift = (i % 8) * 8;
        lower[i / 8] |= (bytes[i] as u64) << shift;
        if bytes[i].is_ascii_lowercase() {
            case[i / 8] |= 0x20 << shift;
        }
        i += 1;
    }
    Known { name, lower, case }
}

macro_rules! table {
    ($($name:expr => $text:literal),* $(,)?) => {
        [$(known($name, $text)),*]
    };
}

static LEN_3: [Known; 2] = table![header::AGE => "age", header::VIA => "via"];
static LEN_4: [Known; 4] =
    table![header::HOST => "host", header::DATE => "date", header::ETAG => "etag", header::VARY => "vary"];
static LEN_5: [Known; 2] = table![header::ALLOW => "allow", header::RANGE => "range"];
static LEN_6: [Known; 6] = table![
    header::ACCEPT => "accept", header::COOKIE => "cookie", header::SERVER => "server",
    header::ORIGIN => "origin", header::EXPECT => "expect", header::PRAGMA => "pragma",
];
static LEN_7: [Known; 5] = table![
    header::REFERER => "referer", header::EXPIRES => "expires", header::UPGRADE => "upgrade",
    header::TRAILER => "trailer", header::WARNING => "warning",
];
static LEN_8: [Known; 3] =
    table![header::LOCATION => "location", header::IF_MATCH => "if-match", header::IF_RANGE => "if-range"];
static LEN_9: [Known; 2] =
    table![header::FORWARDED => "forwarded", HeaderName::from_static("x-real-ip") => "x-real-ip"];
static LEN_10: [Known; 3] = table![
    header::CONNECTION => "connection", header::USER_AGENT => "user-agent", header::SET_COOKIE => "set-cookie",
];
static LEN_11: [Known; 2] =
    table![header::RETRY_AFTER => "retry-after", HeaderName::from_static("traceparent") => "traceparent"];
static LEN_12: [Known; 2] =
    table![header::CONTENT_TYPE => "content-type", HeaderName::from_static("x-request-id") => "x-request-id"];
static LEN_13: [Known; 6] = table![
    header::CACHE_CONTROL => "cache-control", header::LAST_MODIFIED => "last-modified",
    header::AUTHORIZATION => "authorization", header::ACCEPT_RANGES => "accept-ranges",
    header::IF_NONE_MATCH => "if-none-match", header::CONTENT_RANGE => "content-range",
];
static LEN_14: [Known; 2] =
    table![header::CONTENT_LENGTH => "content-length", header::ACCEPT_CHARSET => "accept-charset"];
static LEN_15: [Known; 3] = table![
    header::ACCEPT_ENCODING => "accept-encoding", header::ACCEPT_LANGUAGE => "accept-language",
    HeaderName::from_static("x-forwarded-for") => "x-forwarded-for",
];
static LEN_16: [Known; 4] = table![
    header::CONTENT_ENCODING => "content-encoding", header::CONTENT_LANGUAGE => "content-language",
    header::WWW_AUTHENTICATE => "www-authenticate", HeaderName::from_static("x-forwarded-host") => "x-forwarded-host",
];
static LEN_17: [Known; 3] = table![
    header::TRANSFER_ENCODING => "transfer-encoding", header::IF_MODIFIED_SINCE => "if-modified-since",
    HeaderName::from_static("x-forwarded-proto") => "x-forwarded-proto",
];
static LEN_19: [Known; 1] = table![header::CONTENT_DISPOSITION => "content-disposition"];
static LEN_25: [Known; 1] = table![header::STRICT_TRANSPORT_SECURITY => "strict-transport-security"];
static LEN_27: [Known; 1] = table![header::ACCESS_CONTROL_ALLOW_ORIGIN => "access-control-allow-origin"];

/// The common names of one length.
fn of_length(len: usize) -> &'static [Known] {
    match len {
        3 => &LEN_3,
        4 => &LEN_4,
        5 => &LEN_5,
        6 => &LEN_6,
        7 => &LEN_7,
        8 => &LEN_8,
        9 => &LEN_9,
        10 => &LEN_10,
        11 => &LEN_11,
        12 => &LEN_12,
        13 => &LEN_13,
        14 => &LEN_14,
        15 => &LEN_15,
        16 => &LEN_16,
        17 => &LEN_17,
        19 => &LEN_19,
        25 => &LEN_25,
        27 => &LEN_27,
        _ => &[],
    }
}

/// The field name `bytes` spell, in any case; an error when they are not a token.
pub fn field_name(bytes: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
    let candidates = of_length(bytes.len());
    if !candidates.is_empty() {
        let words = as_words(bytes);
        let same = |known: &&Known| (0..WORDS).all(|i| words[i] | known.case[i] == known.lower[i]);
        if let Some(known) = candidates.iter().find(same) {
            return Ok(known.name.clone());
        }
    }
    HeaderName::from_bytes(bytes)
}

/// `bytes` (at most [`WORDS`] words long) as little-endian words, zero after its end.
fn as_words(bytes: &[u8]) -> [u64; WORDS] {
    let mut padded = [0u8; WORDS * 8];
    padded[..bytes.len()].copy_from_slice(bytes);
    std::array::from_fn(|i| u64::from_le_bytes(padded[i * 8..i * 8 + 8].try_into().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_known() -> impl Iterator<Item = &'static Known> {
        (0..=WORDS * 8).flat_map(of_length)
    }

    #[test]
    fn every_known_name_is_found_in_any_case_and_sits_under_its_length() {
        let mut count = 0;
        for known in every_known() {
            let text = known.name.as_str();
            assert_eq!(of_length(text.len()).iter().filter(|k| k.name == known.name).count(), 1, "{text}");
            for variant in [text.to_string(), text.to_ascii_uppercase(), capitalised(text)] {
                assert_eq!(field_name(variant.as_bytes()).unwrap(), known.name, "{variant}");
            }
            count += 1;
        }
        assert!(count >= 40, "{count}");
    }

    #[test]
    fn near_misses_fall_back_to_the_general_parse() {
        // `_` where `-` is, a letter one off, a control byte where the case bit would hide it.
        assert_eq!(field_name(b"content_length").unwrap().as_str(), "content_length");
        assert_eq!(field_name(b"content-lengti").unwrap().as_str(), "content-lengti");
        assert!(field_name(b"content\r-length").is_err());
        assert!(field_name(b"content\rlength").is_err());
        assert!(field_name(b"Host ").is_err());
        assert!(field_name(b"").is_err());
        assert_eq!(field_name(b"X-Custom-Name").unwrap().as_str(), "x-custom-name");
        let long = "x-".repeat(40);
        assert_eq!(field_name(long.as_bytes()).unwrap().as_str(), long);
    }

    fn capitalised(text: &str) -> String {
        text.split('-').map(|part| part[..1].to_ascii_uppercase() + &part[1..]).collect::<Vec<_>>().join("-")
    }
}
