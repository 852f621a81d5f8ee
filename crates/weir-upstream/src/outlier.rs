//! Passive outlier detection: what weir learns about an endpoint from the answers it gives. Each
//! finished attempt is counted; an endpoint that fails too often in a row, or too large a share of a
//! window of requests, is ejected from the rotation for a while. Counting is a few atomic operations
//! per attempt; the ejection itself (rare) is decided by the cluster.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::StatusCode;

/// How an attempt on an endpoint ended, as far as the endpoint's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered with this status.
    Response(StatusCode),
    /// No connection could be made (refused, unreachable, connect timeout, handshake failure).
    ConnectFailure,
    /// The connection broke before a complete response head arrived.
    Reset,
    /// No response head within the time allowed.
    Timeout,
    /// The attempt failed for a reason of the gateway's or the client's own (a body over the route's
    /// limit, a client that went away): never counted against the endpoint.
    Local,
}

impl Outcome {
    /// Whether the endpoint failed: any 5xx or 429, and every gateway error. Drives the latency penalty.
    pub fn is_failure(self) -> bool {
        match self {
            Outcome::Response(status) => status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
            Outcome::ConnectFailure | Outcome::Reset | Outcome::Timeout => true,
            Outcome::Local => false,
        }
    }

    fn is_5xx(self) -> bool {
        match self {
            Outcome::Response(status) => status.is_server_error(),
            Outcome::ConnectFailure | Outcome::Reset | Outcome::Timeout => true,
            Outcome::Local => false,
        }
    }

    fn is_gateway_error(self) -> bool {
        match self {
            Outcome::Response(status) => matches!(status.as_u16(), 502..=504),
            Outcome::ConnectFailure | Outcome::Reset | Outcome::Timeout => true,
            Outcome::Local => false,
        }
    }
}

/// The rules, as configured. A threshold of 0 turns its rule off.
#[derive(Debug, Clone, Copy)]
pub struct OutlierSettings {
    pub consecutive_5xx: u32,
    pub consecutive_gateway_errors: u32,
    /// Eject when at least this percentage of a window of `failure_window` attempts failed (0: off).
    pub failure_percentage: u32,
    pub failure_window: u32,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

impl OutlierSettings {
    /// No rule: endpoints are never ejected for their answers.
    pub const OFF: OutlierSettings = OutlierSettings {
        consecutive_5xx: 0,
        consecutive_gateway_errors: 0,
        failure_percentage: 0,
        failure_window: 0,
        base_ejection_time: Duration::from_secs(30),
        max_ejection_time: Duration::from_secs(300),
        max_ejection_percent: 0,
    };

    /// How long the `times`-th ejection (1 for the first) lasts: the base time, once more for each
    /// earlier ejection, up to the maximum.
    pub fn ejection_time(&self, times: u32) -> Duration {
        self.base_ejection_time.saturating_mul(times.max(1)).min(self.max_ejection_time.max(self.base_ejection_time))
    }
}

/// Why an endpoint was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EjectReason {
    Consecutive5xx,
    ConsecutiveGatewayErrors,
    FailurePercentage,
}

impl EjectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EjectReason::Consecutive5xx => "consecutive_5xx",
            EjectReason::ConsecutiveGatewayErrors => "consecutive_gateway_errors",
            EjectReason::FailurePercentage => "failure_percentage",
        }
    }
}

/// An endpoint's running counts.
#[derive(Debug, Default)]
pub struct OutlierCounters {
    consecutive_5xx: AtomicU32,
    consecutive_gateway_errors: AtomicU32,
    window_total: AtomicU32,
    window_failed: AtomicU32,
}

impl OutlierCounters {
    /// Counts one outcome; says whether a rule now calls for ejection.
    pub fn record(&self, outcome: Outcome, rules: &OutlierSettings) -> Option<EjectReason> {
        if outcome == Outcome::Local {
            return None;
        }
        let gateway = bump_or_reset(&self.consecutive_gateway_errors, outcome.is_gateway_error());
        let fivexx = bump_or_reset(&self.consecutive_5xx, outcome.is_5xx());
        if rules.consecutive_gateway_errors > 0 && gateway == rules.consecutive_gateway_errors {
            return Some(EjectReason::ConsecutiveGatewayErrors);
        }
        if rules.consecutive_5xx > 0 && fivexx == rules.consecutive_5xx {
            return Some(EjectReason::Consecutive5xx);
        }
        self.record_in_window(outcome.is_failure(), rules)
    }

    /// Starts counting afresh, as when an endpoint comes back from an ejection.
    pub fn reset(&self) {
        for counter in
            [&self.consecutive_5xx, &self.consecutive_gateway_errors, &self.window_total, &self.window_failed]
        {
            counter.store(0, Ordering::Relaxed);
        }
    }

    /// A tumbling window of `failure_window` attempts: judged when full, then started again.
    fn record_in_window(&self, failed: bool, rules: &OutlierSettings) -> Option<EjectReason> {
        if rules.failure_percentage == 0 || rules.failure_window == 0 {
            return None;
        }
        if failed {
            self.window_failed.fetch_add(1, Ordering::Relaxed);
        }
        let total = self.window_total.fetch_add(1, Ordering::Relaxed) + 1;
        if total < rules.failure_window {
            return None;
        }
        let failed = self.window_failed.swap(0, Ordering::Relaxed);
        self.window_total.store(0, Ordering::Relaxed);
        (u64::from(failed) * 100 >= u64::from(rules.failure_percentage) * u64::from(total))
            .then_some(EjectReason::FailurePercentage)
    }
}

fn bump_or_reset(counter: &AtomicU32, hit: bool) -> u32 {
    if hit {
        counter.fetch_add(1, Ordering::Relaxed).saturating_add(1)
    } else {
        counter.store(0, Ordering::Relaxed);
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: OutlierSettings = OutlierSettings {
        consecutive_5xx: 5,
        consecutive_gateway_errors: 3,
        failure_percentage: 50,
        failure_window: 10,
        ..OutlierSettings::OFF
    };

    fn status(code: u16) -> Outcome {
        Outcome::Response(StatusCode::from_u16(code).unwrap())
    }

    #[test]
    fn consecutive_gateway_errors_eject_and_a_success_resets_the_run() {
        let counters = OutlierCounters::default();
        assert_eq!(counters.record(Outcome::ConnectFailure, &RULES), None);
        assert_eq!(counters.record(status(502), &RULES), None);
        assert_eq!(counters.record(status(200), &RULES), None);
        assert_eq!(counters.record(Outcome::Timeout, &RULES), None);
        assert_eq!(counters.record(Outcome::Reset, &RULES), None);
        assert_eq!(counters.record(status(503), &RULES), Some(EjectReason::ConsecutiveGatewayErrors));
    }

    #[test]
    fn consecutive_5xx_counts_every_server_error() {
        let counters = OutlierCounters::default();
        let verdicts: Vec<_> =
            [500, 501, 500, 507, 500].iter().map(|code| counters.record(status(*code), &RULES)).collect();
        assert_eq!(verdicts, [None, None, None, None, Some(EjectReason::Consecutive5xx)]);
    }

    #[test]
    fn local_failures_never_count() {
        let counters = OutlierCounters::default();
        for _ in 0..100 {
            assert_eq!(counters.record(Outcome::Local, &RULES), None);
        }
    }

    #[test]
    fn a_window_with_half_failures_ejects() {
        let counters = OutlierCounters::default();
        let mut verdicts = Vec::new();
        for i in 0..10 {
            verdicts.push(counters.record(if i % 2 == 0 { status(429) } else { status(200) }, &RULES));
        }
        assert_eq!(verdicts.iter().filter(|v| v.is_some()).count(), 1);
        assert_eq!(verdicts[9], Some(EjectReason::FailurePercentage));
        // The next window starts clean: four failures out of ten do not eject.
        let verdicts: Vec<_> =
            (0..10).map(|i| counters.record(if i < 4 { status(429) } else { status(200) }, &RULES)).collect();
        assert!(verdicts.iter().all(Option::is_none));
    }

    #[test]
    fn ejections_grow_up_to_the_maximum() {
        let rules = OutlierSettings {
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(100),
            ..RULES
        };
        assert_eq!(rules.ejection_time(1), Duration::from_secs(30));
        assert_eq!(rules.ejection_time(3), Duration::from_secs(90));
        assert_eq!(rules.ejection_time(4), Duration::from_secs(100));
    }
}
