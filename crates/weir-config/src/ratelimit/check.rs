//! Validation of the `rate_limit` sections: names usable as policy names in response fields and
//! unique where a route applies them, bounds on bursts and key budgets, keys that can be built on
//! the route they are used on, and Redis configured for global rules.

use std::collections::HashSet;

use super::{KeyPart, LimitMode, RateLimitRule, RateLimits};
use crate::file::{ConfigFile, Route};
use crate::validate::Checker;

const MAX_BURST: u32 = 1_000_000;
const MAX_KEYS: usize = 100_000_000;
/// Requests one Redis round trip may take for a global rule, at most.
const MAX_LEASE: u32 = 10_000;

/// Checks the top-level section and its rules.
pub(crate) fn check_global(checker: &mut Checker, file: &ConfigFile) {
    let limits = &file.rate_limit;
    if !(1..=MAX_KEYS).contains(&limits.max_keys) {
        checker.fail("rate_limit.max_keys".into(), format!("must be between 1 and {MAX_KEYS}"));
    }
    if let Some(redis) = &limits.redis {
        for (name, value) in [("connect_timeout", redis.connect_timeout), ("timeout", redis.timeout)] {
            if value.0.is_zero() {
                checker.fail(format!("rate_limit.redis.{name}"), "must be longer than zero".into());
            }
        }
    }
    let mut names = HashSet::new();
    for (index, rule) in limits.rules.iter().enumerate() {
        let field = format!("rate_limit.rules[{index}]");
        check_rule(checker, limits, &field, rule, None);
        check_unique(checker, &field, rule, &mut names);
    }
}

/// Checks a route's own rules, whose names must differ from the global rules' too.
pub(crate) fn check_route(checker: &mut Checker, file: &ConfigFile, route_field: &str, route: &Route) {
    let limits = &file.rate_limit;
    let mut names: HashSet<String> = limits.rules.iter().map(RateLimitRule::display_name).collect();
    for (index, rule) in route.rate_limit.iter().enumerate() {
        let field = format!("{route_field}.rate_limit[{index}]");
        check_rule(checker, limits, &field, rule, Some(route));
        check_unique(checker, &field, rule, &mut names);
    }
}

fn check_unique(checker: &mut Checker, field: &str, rule: &RateLimitRule, names: &mut HashSet<String>) {
    let name = rule.display_name();
    if !names.insert(name.clone()) {
        checker.fail_at(
            format!("{field}.name"),
            "name",
            &name,
            format!("rule name {name:?} is used twice on a route (global rules count too): set a distinct name"),
        );
    }
}

fn check_rule(checker: &mut Checker, limits: &RateLimits, field: &str, rule: &RateLimitRule, route: Option<&Route>) {
    let name = rule.display_name();
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+' | b':'));
    if !name_ok {
        checker.fail(format!("{field}.name"), "use 1 to 64 letters, digits, '-', '_', '.', '+' or ':'".into());
    }
    if rule.key.is_empty() {
        checker.fail(format!("{field}.key"), "name at least one key part, e.g. client_ip".into());
    }
    if rule.burst.is_some_and(|b| !(1..=MAX_BURST).contains(&b)) {
        checker.fail(format!("{field}.burst"), format!("must be between 1 and {MAX_BURST}"));
    }
    if rule.max_keys.is_some_and(|k| !(1..=MAX_KEYS).contains(&k)) {
        checker.fail(format!("{field}.max_keys"), format!("must be between 1 and {MAX_KEYS}"));
    }
    if rule.mode == LimitMode::Local && rule.on_redis_error.is_some() {
        checker.fail(format!("{field}.on_redis_error"), "applies to global rules only: add mode: global".into());
    }
    if rule.mode == LimitMode::Local && rule.lease.is_some() {
        checker.fail(format!("{field}.lease"), "applies to global rules only: add mode: global".into());
    }
    if rule.lease.is_some_and(|lease| !(1..=MAX_LEASE).contains(&lease)) {
        checker.fail(format!("{field}.lease"), format!("must be between 1 and {MAX_LEASE}"));
    }
    if rule.mode == LimitMode::Global && limits.redis.is_none() {
        checker.fail(format!("{field}.mode"), "a global rule needs rate_limit.redis { address: host:port }".into());
    }
    if let Some(header) = &rule.exempt.header
        && (header.secret.len() < 16 || !header.secret.bytes().all(|b| b.is_ascii_graphic()))
    {
        checker.fail(format!("{field}.exempt.header.secret"), "use at least 16 visible ASCII characters".into());
    }
    for part in &rule.key {
        if let KeyPart::PathParam(param) = part {
            check_path_param(checker, field, param, route);
        }
    }
}

fn check_path_param(checker: &mut Checker, field: &str, param: &str, route: Option<&Route>) {
    let Some(route) = route else {
        checker.fail(format!("{field}.key"), "path:NAME keys need a route's path_template; use them on a route".into());
        return;
    };
    let template = route.matches.path_template.as_deref().unwrap_or_default();
    let found = template.split('/').any(|segment| {
        segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')).map(|s| s.trim_start_matches('*')) == Some(param)
    });
    if !found {
        checker.fail(
            format!("{field}.key"),
            format!("path:{param} needs a {{{param}}} parameter in the route's match.path_template"),
        );
    }
}
