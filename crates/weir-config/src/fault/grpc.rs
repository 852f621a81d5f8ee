//! gRPC status codes, written by number (`14`) or by name (`unavailable`).

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// The codes of the gRPC status, in number order.
const NAMES: [&str; 17] = [
    "ok",
    "cancelled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
];

/// A gRPC status code from 0 to 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcCode(pub u8);

impl FromStr for GrpcCode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let by_number = text.parse::<u8>().ok().filter(|n| usize::from(*n) < NAMES.len());
        let by_name = || NAMES.iter().position(|name| name.eq_ignore_ascii_case(text)).map(|n| n as u8);
        by_number.or_else(by_name).map(GrpcCode).ok_or_else(|| {
            format!("invalid gRPC status {text:?}: write a number from 0 to 16 or a name like unavailable")
        })
    }
}

impl<'de> Deserialize<'de> for GrpcCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CodeVisitor;
        impl Visitor<'_> for CodeVisitor {
            type Value = GrpcCode;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a gRPC status like 14 or \"unavailable\"")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<GrpcCode, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<GrpcCode, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<GrpcCode, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(CodeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_by_number_or_name() {
        assert_eq!("14".parse::<GrpcCode>(), Ok(GrpcCode(14)));
        assert_eq!("UNAVAILABLE".parse::<GrpcCode>(), Ok(GrpcCode(14)));
        assert_eq!("deadline_exceeded".parse::<GrpcCode>(), Ok(GrpcCode(4)));
        assert!("17".parse::<GrpcCode>().is_err());
        assert!("nope".parse::<GrpcCode>().is_err());
    }
}
