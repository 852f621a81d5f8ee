//! A route's retry policy: which failures are worth another try, how many tries, how long each may
//! take, how long to wait between them, and the budget that bounds them all.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::budget::RetryBudget;

/// How a try failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    ConnectFailure,
    Reset,
    Timeout,
    /// The upstream answered with this status.
    Status(u16),
    /// The upstream answered with this gRPC status (in the response head: a trailers-only answer).
    Grpc(u8),
}

/// The failures a policy retries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryConditions {
    pub connect_failure: bool,
    pub reset: bool,
    pub timeout: bool,
    pub server_errors: bool,
    pub statuses: Vec<u16>,
    /// gRPC codes, one bit each.
    pub grpc_codes: u32,
}

impl RetryConditions {
    pub fn matches(&self, failure: Failure) -> bool {
        match failure {
            Failure::ConnectFailure => self.connect_failure,
            Failure::Reset => self.reset,
            Failure::Timeout => self.timeout,
            Failure::Status(status) => (self.server_errors && status >= 500) || self.statuses.contains(&status),
            Failure::Grpc(code) => code < 32 && self.grpc_codes & (1 << code) != 0,
        }
    }

    /// Whether any condition looks at the response head (so responses must be checked at all).
    pub fn looks_at_responses(&self) -> bool {
        self.server_errors || !self.statuses.is_empty() || self.grpc_codes != 0
    }
}

/// A compiled retry policy with its budget.
#[derive(Debug)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    pub on: RetryConditions,
    pub per_try_timeout: Option<Duration>,
    pub backoff: Backoff,
    pub non_idempotent: bool,
    /// Largest request body held for replay.
    pub max_replay_body: u64,
    pub budget: RetryBudget,
}

/// How long `Retry-After` may ask weir to wait before a retry; longer, and the answer goes to the
/// client instead.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Reads `Retry-After` as delay-seconds (the HTTP-date form is not worth a retry's wait).
pub fn retry_after(value: &[u8]) -> Option<Duration> {
    if value.is_empty() || value.len() > 6 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_match_what_they_name() {
        let on = RetryConditions {
            connect_failure: true,
            statuses: vec![503],
            grpc_codes: 1 << 14,
            ..RetryConditions::default()
        };
        assert!(on.matches(Failure::ConnectFailure));
        assert!(!on.matches(Failure::Reset));
        assert!(on.matches(Failure::Status(503)));
        assert!(!on.matches(Failure::Status(500)));
        assert!(on.matches(Failure::Grpc(14)));
        assert!(!on.matches(Failure::Grpc(13)));
        let any_5xx = RetryConditions { server_errors: true, ..RetryConditions::default() };
        assert!(any_5xx.matches(Failure::Status(500)) && !any_5xx.matches(Failure::Status(429)));
    }

    #[test]
    fn retry_after_takes_seconds_only() {
        assert_eq!(retry_after(b"2"), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after(b"-1"), None);
    }
}
