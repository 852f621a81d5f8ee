//! Deadlines carried by requests: gRPC's `grpc-timeout` (RFC-less but specified in the gRPC HTTP/2
//! protocol: up to 8 digits and a unit) and a plain header holding milliseconds. weir takes the
//! smaller of an incoming deadline and the route's timeout, counts from the request's arrival, and
//! passes what is left upstream in the same form.

use std::time::Duration;

/// Reads a `grpc-timeout` value such as `500m` or `2S`.
pub fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(amount.checked_mul(3600)?),
        b"M" => Duration::from_secs(amount.checked_mul(60)?),
        b"S" => Duration::from_secs(amount),
        b"m" => Duration::from_millis(amount),
        b"u" => Duration::from_micros(amount),
        b"n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Writes a `grpc-timeout` value: the finest unit whose count fits in 8 digits, rounded down.
pub fn format_grpc_timeout(timeout: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = timeout.as_nanos();
    for (unit, per) in [("n", 1u128), ("u", 1_000), ("m", 1_000_000), ("S", 1_000_000_000), ("M", 60_000_000_000)] {
        if nanos / per <= MAX {
            return format!("{}{unit}", nanos / per);
        }
    }
    format!("{}H", (nanos / 3_600_000_000_000).min(MAX))
}

/// Reads a deadline header holding whole milliseconds.
pub fn parse_millis(value: &[u8]) -> Option<Duration> {
    if value.is_empty() || value.len() > 12 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok().map(Duration::from_millis)
}

/// The budget a request has: the route's timeout, or less when the client asked for less.
pub fn budget(route_timeout: Duration, incoming: impl IntoIterator<Item = Duration>) -> Duration {
    incoming.into_iter().fold(route_timeout, Duration::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_grpc_timeout(b"500m"), Some(Duration::from_millis(500)));
        assert_eq!(parse_grpc_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout(b"250u"), Some(Duration::from_micros(250)));
        assert_eq!(parse_grpc_timeout(b"99999999n"), Some(Duration::from_nanos(99_999_999)));
    }

    #[test]
    fn malformed_grpc_timeouts_are_ignored() {
        for bad in [&b""[..], b"m", b"500", b"123456789m", b"-5m", b"5x", b"5 m", b"1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn grpc_timeouts_are_written_in_the_finest_unit_that_fits() {
        assert_eq!(format_grpc_timeout(Duration::from_millis(42)), "42000000n");
        assert_eq!(format_grpc_timeout(Duration::from_millis(420)), "420000u");
        assert_eq!(format_grpc_timeout(Duration::from_secs(5)), "5000000u");
        assert_eq!(format_grpc_timeout(Duration::from_secs(1000)), "1000000m");
        assert_eq!(format_grpc_timeout(Duration::from_secs(200_000)), "200000S");
        for written in ["42000000n", "420000u", "1000000m"] {
            assert!(parse_grpc_timeout(written.as_bytes()).is_some());
        }
    }

    #[test]
    fn the_smallest_deadline_wins() {
        let route = Duration::from_secs(15);
        assert_eq!(budget(route, []), route);
        assert_eq!(budget(route, [Duration::from_millis(500), Duration::from_secs(2)]), Duration::from_millis(500));
        assert_eq!(budget(Duration::from_millis(100), [Duration::from_secs(2)]), Duration::from_millis(100));
        assert_eq!(parse_millis(b"1500"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_millis(b"15x"), None);
    }
}
