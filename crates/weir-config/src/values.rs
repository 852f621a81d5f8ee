//! Typed values inside the configuration file. Each one checks itself while the file is parsed, so a
//! bad value is reported with its line and field path, and the data plane never re-parses anything.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};

/// Reads a value from its string form, with an error naming what would be valid.
macro_rules! deserialize_from_str {
    ($ty:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(D::Error::custom)
            }
        }
    };
}

/// A duration written as `250ms`, `2s`, `1m30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub StdDuration);

impl FromStr for Duration {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        humantime::parse_duration(text.trim())
            .map(Duration)
            .map_err(|e| format!("invalid duration {text:?} ({e}); write it like \"250ms\", \"2s\" or \"1m\""))
    }
}
deserialize_from_str!(Duration);

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Duration(StdDuration::from_secs(secs))
    }
    pub const fn from_millis(millis: u64) -> Self {
        Duration(StdDuration::from_millis(millis))
    }
}

/// A size in bytes written as `1024`, `16KiB`, `1MiB`, `2GB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(split);
        let multiplier: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            _ => return Err(format!("invalid size {text:?}: units are B, KB, KiB, MB, MiB, GB, GiB")),
        };
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(multiplier))
            .map(ByteSize)
            .ok_or_else(|| format!("invalid size {text:?}: write it like \"16KiB\" or \"1MiB\""))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(text) => text.parse().map_err(D::Error::custom),
        }
    }
}

/// The largest compiled regex the configuration may hold, against patterns that explode in size.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A regular expression, compiled once when the file is loaded.
#[derive(Clone)]
pub struct Pattern(pub regex::Regex);

impl FromStr for Pattern {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        regex::RegexBuilder::new(text)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(Pattern)
            .map_err(|e| format!("invalid regular expression {text:?}: {e}"))
    }
}
deserialize_from_str!(Pattern);

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.0.as_str())
    }
}

/// An HTTP header name, stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderName(pub http::HeaderName);

impl FromStr for HeaderName {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        http::HeaderName::from_bytes(text.as_bytes())
            .map(HeaderName)
            .map_err(|_| format!("invalid header name {text:?}: use letters, digits and -_.!#$%&'*+^`|~"))
    }
}
deserialize_from_str!(HeaderName);

/// An HTTP header value: visible ASCII, spaces and tabs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderValue(pub http::HeaderValue);

impl FromStr for HeaderValue {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        http::HeaderValue::from_str(text)
            .map(HeaderValue)
            .map_err(|_| format!("invalid header value {text:?}: control characters are not allowed"))
    }
}
deserialize_from_str!(HeaderValue);

/// An HTTP method such as `GET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method(pub http::Method);

impl FromStr for Method {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let upper = text.to_ascii_uppercase();
        http::Method::from_bytes(upper.as_bytes())
            .map(Method)
            .map_err(|_| format!("invalid method {text:?}: use a token such as GET, POST or PUT"))
    }
}
deserialize_from_str!(Method);

/// An HTTP status code between 100 and 599.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCode(pub http::StatusCode);

impl<'de> Deserialize<'de> for StatusCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = u16::deserialize(deserializer)?;
        http::StatusCode::from_u16(code)
            .ok()
            .filter(|_| (100..600).contains(&code))
            .map(StatusCode)
            .ok_or_else(|| D::Error::custom(format!("invalid status {code}: use 100 to 599")))
    }
}

/// An IP network such as `10.0.0.0/8` or `::1/128`; a bare address means just that address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: IpAddr,
    pub prefix_len: u8,
}

impl Cidr {
    /// Whether `addr` lies inside this network. IPv4-mapped IPv6 addresses match IPv4 networks.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
            v4 => v4,
        };
        match (self.network, addr) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(net.to_bits().into(), ip.to_bits().into(), 32, self.prefix_len)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(net.to_bits(), ip.to_bits(), 128, self.prefix_len),
            _ => false,
        }
    }
}

fn prefix_eq(net: u128, ip: u128, width: u8, prefix_len: u8) -> bool {
    if prefix_len == 0 {
        return true;
    }
    let shift = u32::from(width - prefix_len);
    (net >> shift) == (ip >> shift)
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || format!("invalid network {text:?}: write an address or a CIDR like \"10.0.0.0/8\"");
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let network: IpAddr = addr.trim().parse().map_err(|_| invalid())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            Some(len) => len.trim().parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(invalid)?,
            None => max,
        };
        Ok(Cidr { network, prefix_len })
    }
}
deserialize_from_str!(Cidr);

/// A host to match: an exact name (`api.example.com`), a wildcard (`*.example.com`) or `*` for any.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Any,
    Exact(String),
    /// The suffix after the `*`, including the leading dot: `.example.com`.
    Suffix(String),
}

impl FromStr for HostPattern {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let host = text.trim().to_ascii_lowercase();
        let valid_name =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if host == "*" {
            Ok(HostPattern::Any)
        } else if let Some(rest) = host.strip_prefix("*.") {
            if valid_name(rest) {
                Ok(HostPattern::Suffix(format!(".{rest}")))
            } else {
                Err(format!("invalid host {text:?}: a wildcard looks like \"*.example.com\""))
            }
        } else if valid_name(&host) {
            Ok(HostPattern::Exact(host))
        } else {
            Err(format!(
                "invalid host {text:?}: use a name like \"api.example.com\", \"*.example.com\" or \"*\" (no port)"
            ))
        }
    }
}
deserialize_from_str!(HostPattern);

/// A URL path starting with `/`, free of spaces and control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UrlPath(pub String);

impl FromStr for UrlPath {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text.starts_with('/') && text.bytes().all(|b| b.is_ascii_graphic()) && !text.contains(['?', '#']) {
            Ok(UrlPath(text.to_string()))
        } else {
            Err(format!("invalid path {text:?}: it must start with '/' and hold no spaces, '?' or '#'"))
        }
    }
}
deserialize_from_str!(UrlPath);

/// An upstream endpoint's address: `host:port`, `1.2.3.4:80` or `[::1]:80`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub host: String,
    pub port: u16,
}

impl FromStr for Authority {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let invalid =
            || format!("invalid address {text:?}: write host:port, like \"10.0.0.1:8080\" or \"localhost:9000\"");
        if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
            return Ok(Authority { host: addr.ip().to_string(), port: addr.port() });
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(invalid)?;
        let port = port.parse::<u16>().map_err(|_| invalid())?;
        let valid_host = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid_host {
            return Err(invalid());
        }
        Ok(Authority { host: host.to_ascii_lowercase(), port })
    }
}
deserialize_from_str!(Authority);

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Reads a value written either as a number or as a string (`50` or `"50%"`, `200` or `"200-299"`).
macro_rules! deserialize_from_number_or_str {
    ($ty:ty, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct NumberOrStr;
                impl serde::de::Visitor<'_> for NumberOrStr {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<$ty, E> {
                        self.visit_str(&n.to_string())
                    }
                    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<$ty, E> {
                        self.visit_str(&n.to_string())
                    }
                    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<$ty, E> {
                        text.parse().map_err(E::custom)
                    }
                }
                deserializer.deserialize_any(NumberOrStr)
            }
        }
    };
}

/// A percentage from 0 to 100, written `50` or `"50%"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percent(pub u32);

impl FromStr for Percent {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let digits = text.trim().trim_end_matches('%').trim_end();
        digits.parse::<u32>().ok().filter(|n| *n <= 100).map(Percent).ok_or_else(|| {
            format!("invalid percentage {text:?}: write a whole number from 0 to 100, like 50 or \"50%\"")
        })
    }
}
deserialize_from_number_or_str!(Percent, "a percentage like 50 or \"50%\"");

/// HTTP statuses: one (`200`) or an inclusive range (`"200-399"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRange(pub std::ops::RangeInclusive<u16>);

impl FromStr for StatusRange {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || format!("invalid status range {text:?}: write a status like 200 or a range like \"200-399\"");
        let status = |s: &str| s.trim().parse::<u16>().ok().filter(|n| (100..600).contains(n));
        let (low, high) = match text.split_once('-') {
            Some((low, high)) => (status(low).ok_or_else(invalid)?, status(high).ok_or_else(invalid)?),
            None => {
                let one = status(text).ok_or_else(invalid)?;
                (one, one)
            }
        };
        if low > high {
            return Err(invalid());
        }
        Ok(StatusRange(low..=high))
    }
}
deserialize_from_number_or_str!(StatusRange, "a status like 200 or a range like \"200-399\"");
