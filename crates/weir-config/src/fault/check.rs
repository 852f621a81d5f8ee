//! Validation of the fault-injection sections. [`fault_problems`] checks one fault wherever it is
//! written: in the file, or in an experiment the admin API receives.

use std::net::SocketAddr;

use crate::file::{ConfigFile, Route};
use crate::validate::Checker;

use super::{Delay, Fault};

/// Longest delay a fault may inject.
const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Where a fault is written: what it may hold differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPlace {
    Route,
    Upstream,
}

/// What is wrong with one fault, as (field under the fault, message) pairs.
pub fn fault_problems(fault: &Fault, place: FaultPlace) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    let kinds = [fault.delay.is_some(), fault.abort.is_some(), fault.throttle.is_some()];
    if kinds.iter().filter(|set| **set).count() != 1 {
        problems.push(("", "set exactly one of delay, abort, throttle".to_string()));
    }
    if let Some(delay) = fault.delay {
        if let Delay::Uniform { min, max } = delay
            && min > max
        {
            problems.push(("delay", "min must not be above max".to_string()));
        }
        if delay.longest() > MAX_DELAY {
            problems.push(("delay", "a delay may be at most 1h".to_string()));
        }
    }
    if let Some(abort) = &fault.abort {
        if abort.reset && (abort.status.is_some() || abort.grpc_status.is_some()) {
            problems.push(("abort", "reset ends the connection: it takes no status or grpc_status".to_string()));
        }
        if !abort.reset && abort.status.is_none() && abort.grpc_status.is_none() {
            problems.push(("abort", "set status, grpc_status, or reset: true".to_string()));
        }
    }
    if fault.throttle.as_ref().is_some_and(|t| t.bytes_per_second.0 == 0) {
        problems.push(("throttle.bytes_per_second", "must be at least 1".to_string()));
    }
    problems.extend(place_problems(fault, place));
    problems
}

fn place_problems(fault: &Fault, place: FaultPlace) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    match place {
        FaultPlace::Route => {
            if fault.endpoint.is_some() {
                problems.push(("endpoint", "only an upstream's faults name an endpoint".to_string()));
            }
            for header in &fault.when.headers {
                let set = [header.exact.is_some(), header.regex.is_some(), header.present.is_some()];
                if set.iter().filter(|s| **s).count() != 1 {
                    problems.push(("when.headers", "set exactly one of exact, regex, present".to_string()));
                }
            }
        }
        FaultPlace::Upstream => {
            if fault.throttle.is_some() {
                problems.push(("throttle", "throttle a route's responses, not an upstream's".to_string()));
            }
            if !fault.when.is_empty() {
                problems
                    .push(("when", "conditions belong to a route's faults; an upstream's take endpoint".to_string()));
            }
            if let Some(endpoint) = &fault.endpoint
                && endpoint.parse::<SocketAddr>().is_err()
            {
                problems.push(("endpoint", format!("{endpoint:?} is not an address like 10.0.0.1:8080")));
            }
        }
    }
    problems
}

/// Checks every fault in the file, the route's header faults, and the `fault_injection` section.
pub(crate) fn check_file(checker: &mut Checker, file: &ConfigFile) {
    let settings = &file.fault_injection;
    if !(1..=1024).contains(&settings.max_experiments) {
        checker.fail("fault_injection.max_experiments".into(), "must be between 1 and 1024".into());
    }
    if settings.max_ttl.0.is_zero() {
        checker.fail("fault_injection.max_ttl".into(), "must be above zero".into());
    }
    if settings.state_file.as_ref().is_some_and(|path| path.as_os_str().is_empty()) {
        checker.fail("fault_injection.state_file".into(), "name a file, or leave state_file out".into());
    }
    for (name, upstream) in &file.upstreams {
        check_list(checker, &format!("upstreams.{name}.faults"), &upstream.faults, FaultPlace::Upstream);
    }
}

/// Checks a route's faults and header faults.
pub(crate) fn check_route(checker: &mut Checker, field: &str, route: &Route) {
    check_list(checker, &format!("{field}.faults"), &route.faults, FaultPlace::Route);
    let Some(header) = &route.header_faults else { return };
    if header.max_delay.0 > MAX_DELAY {
        checker.fail(format!("{field}.header_faults.max_delay"), "may be at most 1h".into());
    }
    if let Some(secret) = &header.secret
        && (secret.len() < 16 || !secret.bytes().all(|b| b.is_ascii_graphic()))
    {
        checker.fail(format!("{field}.header_faults.secret"), "use at least 16 visible ASCII characters".into());
    }
}

fn check_list(checker: &mut Checker, field: &str, faults: &[Fault], place: FaultPlace) {
    for (index, fault) in faults.iter().enumerate() {
        for (sub, message) in fault_problems(fault, place) {
            let at = if sub.is_empty() { format!("{field}[{index}]") } else { format!("{field}[{index}].{sub}") };
            checker.fail(at, message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{Abort, FaultPercent, Throttle};
    use crate::values::{ByteSize, StatusCode};

    fn abort(status: u16) -> Fault {
        Fault {
            delay: None,
            abort: Some(Abort {
                status: Some(StatusCode(http::StatusCode::from_u16(status).unwrap())),
                ..Default::default()
            }),
            throttle: None,
            percent: FaultPercent::default(),
            when: Default::default(),
            endpoint: None,
        }
    }

    #[test]
    fn a_fault_has_exactly_one_kind() {
        let mut two = abort(503);
        two.delay = Some(Delay::Fixed(std::time::Duration::from_millis(5)));
        assert_eq!(fault_problems(&two, FaultPlace::Route)[0].1, "set exactly one of delay, abort, throttle");
        assert!(fault_problems(&abort(503), FaultPlace::Route).is_empty());
    }

    #[test]
    fn places_refuse_what_belongs_elsewhere() {
        let mut throttled = abort(503);
        throttled.abort = None;
        throttled.throttle = Some(Throttle { bytes_per_second: ByteSize(10) });
        assert_eq!(fault_problems(&throttled, FaultPlace::Upstream)[0].0, "throttle");
        let mut pinned = abort(503);
        pinned.endpoint = Some("not an address".into());
        assert_eq!(fault_problems(&pinned, FaultPlace::Upstream)[0].0, "endpoint");
        assert_eq!(fault_problems(&pinned, FaultPlace::Route)[0].0, "endpoint");
        pinned.endpoint = Some("127.0.0.1:80".into());
        assert!(fault_problems(&pinned, FaultPlace::Upstream).is_empty());
    }

    #[test]
    fn aborts_and_ranges_are_coherent() {
        let mut reset = abort(503);
        reset.abort.as_mut().unwrap().reset = true;
        assert_eq!(fault_problems(&reset, FaultPlace::Route)[0].0, "abort");
        let mut backwards = abort(503);
        backwards.abort = None;
        backwards.delay =
            Some(Delay::Uniform { min: std::time::Duration::from_secs(2), max: std::time::Duration::from_secs(1) });
        assert_eq!(fault_problems(&backwards, FaultPlace::Route)[0].1, "min must not be above max");
    }
}
