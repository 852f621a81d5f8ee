//! The response fields of the IETF httpapi RateLimit draft (draft-ietf-httpapi-ratelimit-headers):
//! `RateLimit-Policy: "name";q=<count>;w=<seconds>` states a rule's quota per window, and
//! `RateLimit: "name";r=<remaining>;t=<seconds>` the key's state now. `t` is the time until the
//! key's burst is whole again, or, once nothing remains, until the next request would pass. Both
//! are Structured Field lists, so several rules append one line each.

use http::{HeaderName, HeaderValue};
use weir_config::ratelimit::Rate;
use weir_ratelimit::Decision;

pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// A rule's `RateLimit-Policy` member; built once per configuration load.
pub fn policy(name: &str, rate: &Rate) -> HeaderValue {
    let value = format!("\"{name}\";q={};w={}", rate.count, rate.period.as_secs());
    HeaderValue::from_str(&value).expect("validated rule names are valid in a header")
}

/// A rule's `RateLimit` member for one decision.
pub fn state(name: &str, decision: &Decision) -> HeaderValue {
    let wait = if decision.remaining == 0 && !decision.allowed { decision.retry_after } else { decision.reset_after };
    let value = format!("\"{name}\";r={};t={}", decision.remaining, seconds_up(wait));
    HeaderValue::from_str(&value).expect("validated rule names are valid in a header")
}

/// Whole seconds, rounded up: a client that waits this long is not refused again for waiting too
/// little.
pub fn seconds_up(nanos: u64) -> u64 {
    nanos.div_ceil(1_000_000_000)
}
