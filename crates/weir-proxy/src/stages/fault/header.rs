//! Faults a request asks for in its headers, on routes that enable them (`header_faults`):
//!
//! - `x-weir-fault-delay`: a duration (`250ms`) or milliseconds (`250`), at most `max_delay`;
//! - `x-weir-fault-abort`: an HTTP status (`503`) or `reset`;
//! - `x-weir-fault-abort-grpc`: a gRPC status for gRPC requests (`14` or `unavailable`);
//! - `x-weir-fault-throttle`: response bytes per second (`1024`, `16KiB`);
//! - `x-weir-fault-percent`: the share of such requests that get them (default 100).
//!
//! With a secret configured, only requests carrying it get their faults. On these routes the fault
//! headers and the secret never go upstream.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use weir_config::fault::{FaultPercent, GrpcCode};
use weir_config::values::{ByteSize, Duration as ConfigDuration};
use weir_telemetry::FaultCounters;

use super::{Abort, Action, Delay, Dice, Injected};

const DELAY: HeaderName = HeaderName::from_static("x-weir-fault-delay");
const ABORT: HeaderName = HeaderName::from_static("x-weir-fault-abort");
const ABORT_GRPC: HeaderName = HeaderName::from_static("x-weir-fault-abort-grpc");
const THROTTLE: HeaderName = HeaderName::from_static("x-weir-fault-throttle");
const PERCENT: HeaderName = HeaderName::from_static("x-weir-fault-percent");

/// Why a fault header was refused; each is the whole message the client gets.
pub const BAD_DELAY: &str = "x-weir-fault-delay: write a duration like 250ms, within the route's max_delay";
pub const BAD_ABORT: &str = "x-weir-fault-abort: write a status from 200 to 599, or reset";
pub const BAD_ABORT_GRPC: &str = "x-weir-fault-abort-grpc: write a gRPC status like 14 or unavailable";
pub const BAD_THROTTLE: &str = "x-weir-fault-throttle: write bytes per second, at least 1, like 1024 or 16KiB";
pub const BAD_PERCENT: &str = "x-weir-fault-percent: write a number from 0 to 100";

/// A route's header-controlled faults.
pub struct HeaderFaults {
    pub secret: Option<Box<[u8]>>,
    pub secret_header: HeaderName,
    pub max_delay: Duration,
    pub counters: FaultCounters,
}

impl HeaderFaults {
    /// Adds the faults the request asks for to `injected`, and takes the fault headers (and the
    /// secret) out of the request. A malformed header is the client's error: its message.
    pub fn decide(
        &self,
        headers: &mut HeaderMap,
        grpc: bool,
        dice: &Dice,
        injected: &mut Injected,
    ) -> Result<(), &'static str> {
        let asked = [&DELAY, &ABORT, &ABORT_GRPC, &THROTTLE, &PERCENT].map(|name| headers.remove(name));
        let presented = headers.remove(&self.secret_header);
        if asked.iter().all(Option::is_none) || !self.authorized(presented.as_ref()) {
            return Ok(());
        }
        let [delay, abort, abort_grpc, throttle, percent] = asked;
        let per_million = match &percent {
            Some(value) => parse::<FaultPercent>(value).ok_or(BAD_PERCENT)?.per_million(),
            None => 1_000_000,
        };
        let actions = [
            delay.map(|v| self.delay(&v)).transpose()?,
            abort_action(abort.as_ref(), abort_grpc.as_ref(), grpc)?,
            throttle
                .map(|v| parse::<ByteSize>(&v).filter(|b| b.0 > 0).map(|b| Action::Throttle(b.0)).ok_or(BAD_THROTTLE))
                .transpose()?,
        ];
        for action in actions.into_iter().flatten() {
            if dice.hits(per_million) {
                injected.add(action, dice, &self.counters);
            }
        }
        Ok(())
    }

    fn authorized(&self, presented: Option<&HeaderValue>) -> bool {
        let Some(secret) = &self.secret else { return true };
        let Some(presented) = presented.map(HeaderValue::as_bytes) else { return false };
        presented.len() == secret.len()
            && presented.iter().zip(secret.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    fn delay(&self, value: &HeaderValue) -> Result<Action, &'static str> {
        let text = value.to_str().map_err(|_| BAD_DELAY)?;
        let delay = match text.trim().parse::<u64>() {
            Ok(millis) => Duration::from_millis(millis),
            Err(_) => text.parse::<ConfigDuration>().map_err(|_| BAD_DELAY)?.0,
        };
        (delay <= self.max_delay).then_some(Action::Delay(Delay::Fixed(delay))).ok_or(BAD_DELAY)
    }
}

/// The abort the headers ask for: `x-weir-fault-abort` for every request, or for gRPC requests
/// `x-weir-fault-abort-grpc` when sent.
fn abort_action(
    abort: Option<&HeaderValue>,
    grpc_code: Option<&HeaderValue>,
    grpc: bool,
) -> Result<Option<Action>, &'static str> {
    let code = grpc_code.map(|v| parse::<GrpcCode>(v).map(|c| c.0).ok_or(BAD_ABORT_GRPC)).transpose()?;
    let http = match abort {
        Some(value) if value.as_bytes().eq_ignore_ascii_case(b"reset") => return Ok(Some(Action::Abort(Abort::Reset))),
        Some(value) => {
            let status =
                value.to_str().ok().and_then(|s| s.trim().parse::<u16>().ok()).filter(|s| (200..600).contains(s));
            Some(status.and_then(|s| http::StatusCode::from_u16(s).ok()).ok_or(BAD_ABORT)?)
        }
        None => None,
    };
    let abort = Abort::Status { http, grpc: code };
    Ok((http.is_some() || code.is_some()).then_some(abort).filter(|a| a.applies(grpc)).map(Action::Abort))
}

fn parse<T: std::str::FromStr>(value: &HeaderValue) -> Option<T> {
    value.to_str().ok()?.parse().ok()
}
