//! Checks serde cannot make: names that must be unique or must exist, options that exclude each other
//! and bounds on limits. A file that passes becomes a [`Config`].

use std::collections::HashSet;

use crate::error::Problem;
use crate::file::{ConfigFile, Listener, Route, ValueMatch};
use crate::load::Format;
use crate::locate::locate;
use crate::ratelimit::check as ratelimit;
use crate::upstream::{Balance, Upstream};
use crate::values::Duration;

/// A configuration that passed validation: every reference resolves and every option is coherent.
#[derive(Debug, Clone)]
pub struct Config {
    file: ConfigFile,
    /// The configuration as shown by the admin API: the source as JSON, secrets redacted.
    redacted: std::sync::Arc<serde_json::Value>,
}

impl Config {
    /// The source as JSON with secrets redacted (see [`crate::view`]).
    pub fn redacted(&self) -> &serde_json::Value {
        &self.redacted
    }
}

impl std::ops::Deref for Config {
    type Target = ConfigFile;
    fn deref(&self) -> &ConfigFile {
        &self.file
    }
}

/// Collects problems with their place in the source text.
pub(crate) struct Checker<'a> {
    text: &'a str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    pub(crate) fn fail(&mut self, field: String, message: String) {
        self.problems.push(Problem::new(field, message));
    }

    pub(crate) fn fail_at(&mut self, field: String, key: &str, value: &str, message: String) {
        let mut problem = Problem::new(field, message);
        problem.line = locate(self.text, key, value);
        self.problems.push(problem);
    }
}

pub(crate) fn validate(file: ConfigFile, text: &str, format: Format) -> Result<Config, Vec<Problem>> {
    let mut checker = Checker { text, problems: Vec::new() };
    check_server(&mut checker, &file);
    check_admin(&mut checker, &file);
    check_access_log(&mut checker, &file);
    crate::trace::check(&mut checker, file.tracing.as_ref());
    check_listeners(&mut checker, &file.listeners);
    ratelimit::check_global(&mut checker, &file);
    crate::fault::check::check_file(&mut checker, &file);
    for (name, upstream) in &file.upstreams {
        check_upstream(&mut checker, name, upstream);
    }
    let mut route_names = HashSet::new();
    for (index, route) in file.routes.iter().enumerate() {
        let field = route_field(index, route);
        if let Some(name) = &route.name
            && !route_names.insert(name.as_str())
        {
            checker.fail_at(format!("{field}.name"), "name", name, format!("route name {name:?} is used twice"));
        }
        check_route(&mut checker, &file, &field, route);
    }
    if !checker.problems.is_empty() {
        return Err(checker.problems);
    }
    Ok(Config { file, redacted: std::sync::Arc::new(crate::view::redacted_json(text, format)) })
}

fn route_field(index: usize, route: &Route) -> String {
    match &route.name {
        Some(name) => format!("routes[{index}] ({name})"),
        None => format!("routes[{index}]"),
    }
}

fn check_admin(checker: &mut Checker, file: &ConfigFile) {
    let Some(admin) = &file.admin else { return };
    if let Some(token) = &admin.token
        && (token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()))
    {
        checker.fail("admin.token".into(), "use at least 16 visible ASCII characters".into());
    }
    if !admin.address.ip().is_loopback() && admin.token.is_none() {
        checker.fail("admin".into(), format!("admin listens on {} beyond loopback: set admin.token", admin.address));
    }
    if admin.address.port() != 0 && file.listeners.iter().any(|l| l.address == admin.address) {
        checker.fail("admin.address".into(), format!("{} is also a listener's address", admin.address));
    }
}

fn check_access_log(checker: &mut Checker, file: &ConfigFile) {
    let Some(log) = &file.access_log else { return };
    if !(0.0..=1.0).contains(&log.sample_ratio) {
        checker.fail(
            "access_log.sample_ratio".into(),
            "must be between 0 and 1, such as 0.1 for one request in ten".into(),
        );
    }
    if !(1..=1_000_000).contains(&log.queue_lines) {
        checker.fail("access_log.queue_lines".into(), "must be between 1 and 1000000".into());
    }
    if log.path.as_ref().is_some_and(|path| path.as_os_str().is_empty()) {
        checker.fail("access_log.path".into(), "name a file, or leave path out for standard output".into());
    }
    let mut seen = HashSet::new();
    if let Some(twice) = log.fields.iter().find(|field| !seen.insert(**field)) {
        checker.fail("access_log.fields".into(), format!("{twice:?} is listed twice"));
    }
    for (field, names) in [("request_headers", &log.request_headers), ("response_headers", &log.response_headers)] {
        if names.len() > 32 {
            checker.fail(format!("access_log.{field}"), "at most 32 headers".into());
        }
    }
}

fn check_server(checker: &mut Checker, file: &ConfigFile) {
    if file.server.workers > 1024 {
        checker.fail("server.workers".into(), "at most 1024 workers; 0 means one per CPU core".into());
    }
}

fn check_listeners(checker: &mut Checker, listeners: &[Listener]) {
    if listeners.is_empty() {
        checker.fail("listeners".into(), "at least one listener is needed".into());
    }
    let mut names = HashSet::new();
    let mut addresses = HashSet::new();
    for (index, listener) in listeners.iter().enumerate() {
        let field = format!("listeners[{index}]");
        if !names.insert(listener.name.as_str()) {
            checker.fail_at(
                format!("{field}.name"),
                "name",
                &listener.name,
                format!("listener name {:?} is used twice", listener.name),
            );
        }
        if listener.address.port() != 0 && !addresses.insert(listener.address) {
            checker.fail(format!("{field}.address"), format!("address {} is used by two listeners", listener.address));
        }
        check_listener_limits(checker, &field, listener);
        if let Some(tls) = &listener.tls {
            crate::tls::check(checker, &format!("{field}.tls"), tls);
        }
    }
}

fn check_listener_limits(checker: &mut Checker, field: &str, listener: &Listener) {
    if listener.protocols.is_empty() {
        checker.fail(format!("{field}.protocols"), "name at least one of http1, h2c".into());
    }
    let head = listener.max_head_size.0;
    if !(1024..=1024 * 1024).contains(&head) {
        checker.fail(format!("{field}.max_head_size"), "must be between 1KiB and 1MiB".into());
    }
    if !(1..=1000).contains(&listener.max_headers) {
        checker.fail(format!("{field}.max_headers"), "must be between 1 and 1000".into());
    }
    if listener.max_uri_length.0 == 0 || listener.max_uri_length.0 > head {
        checker.fail(format!("{field}.max_uri_length"), "must be above 0 and at most max_head_size".into());
    }
    check_positive(checker, &format!("{field}.header_read_timeout"), listener.header_read_timeout);
    check_positive(checker, &format!("{field}.idle_timeout"), listener.idle_timeout);
    if listener.max_connections == 0 {
        checker.fail(format!("{field}.max_connections"), "must be at least 1".into());
    }
}

fn check_upstream(checker: &mut Checker, name: &str, upstream: &Upstream) {
    let field = format!("upstreams.{name}");
    crate::tls::check_upstream(checker, &field, upstream);
    crate::protocol::check_protocol(checker, &field, upstream);
    let valid_name =
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid_name {
        checker.fail(field.clone(), "upstream names use letters, digits, '-', '_' and '.'".into());
    }
    check_positive(checker, &format!("{field}.connect_timeout"), upstream.connect_timeout);
    if upstream.endpoints.is_empty() {
        checker.fail(format!("{field}.endpoints"), "at least one endpoint is needed".into());
    }
    for (index, endpoint) in upstream.endpoints.iter().enumerate() {
        if !(1..=10_000).contains(&endpoint.weight) {
            checker.fail(format!("{field}.endpoints[{index}].weight"), "must be between 1 and 10000".into());
        }
    }
    check_balance(checker, &field, upstream);
    check_pool(checker, &field, upstream);
    check_health_check(checker, &field, upstream);
    check_outlier_detection(checker, &field, upstream);
    if let Some(dns) = &upstream.dns {
        check_positive(checker, &format!("{field}.dns.refresh"), dns.refresh);
    }
    if let Some(breaker) = &upstream.breaker {
        check_breaker(checker, &format!("{field}.breaker"), breaker);
    }
    if let Some(limit) = &upstream.concurrency {
        crate::resilience::check_concurrency(checker, &format!("{field}.concurrency"), limit);
    }
}

fn check_breaker(checker: &mut Checker, field: &str, breaker: &crate::upstream::Breaker) {
    check_positive(checker, &format!("{field}.window"), breaker.window);
    check_positive(checker, &format!("{field}.open_for"), breaker.open_for);
    if breaker.max_open_for < breaker.open_for {
        checker.fail(format!("{field}.max_open_for"), "must be at least open_for".into());
    }
    if breaker.failure_rate.0 == 0 && breaker.slow_call_rate.0 == 0 {
        checker.fail(field.into(), "set failure_rate or slow_call_rate, or the breaker never opens".into());
    }
    for (name, value) in [("min_calls", breaker.min_calls), ("half_open_probes", breaker.half_open_probes)] {
        if value == 0 {
            checker.fail(format!("{field}.{name}"), "must be at least 1".into());
        }
    }
}

fn check_balance(checker: &mut Checker, field: &str, upstream: &Upstream) {
    match (upstream.balance, &upstream.hash_key) {
        (Balance::ConsistentHash, None) => checker.fail(
            format!("{field}.hash_key"),
            "balance: consistent_hash needs a hash_key (client_ip, path, { header: name } or { cookie: name })".into(),
        ),
        (balance, Some(_)) if balance != Balance::ConsistentHash => {
            checker.fail(format!("{field}.hash_key"), "hash_key is only used with balance: consistent_hash".into())
        }
        _ => {}
    }
}

fn check_pool(checker: &mut Checker, field: &str, upstream: &Upstream) {
    let pool = &upstream.pool;
    check_positive(checker, &format!("{field}.pool.idle_timeout"), pool.idle_timeout);
    check_positive(checker, &format!("{field}.pool.acquire_timeout"), pool.acquire_timeout);
    if pool.max_connections == 0 {
        checker.fail(format!("{field}.pool.max_connections"), "must be at least 1".into());
    }
}

fn check_health_check(checker: &mut Checker, field: &str, upstream: &Upstream) {
    let Some(check) = &upstream.health_check else { return };
    let field = format!("{field}.health_check");
    check_positive(checker, &format!("{field}.interval"), check.interval);
    check_positive(checker, &format!("{field}.timeout"), check.timeout);
    for (name, threshold) in
        [("healthy_threshold", check.healthy_threshold), ("unhealthy_threshold", check.unhealthy_threshold)]
    {
        if threshold == 0 {
            checker.fail(format!("{field}.{name}"), "must be at least 1".into());
        }
    }
    if check.expected_statuses.is_empty() {
        checker
            .fail(format!("{field}.expected_statuses"), "list at least one status or range, like \"200-399\"".into());
    }
}

fn check_outlier_detection(checker: &mut Checker, field: &str, upstream: &Upstream) {
    let outlier = &upstream.outlier_detection;
    let field = format!("{field}.outlier_detection");
    check_positive(checker, &format!("{field}.base_ejection_time"), outlier.base_ejection_time);
    if outlier.max_ejection_time < outlier.base_ejection_time {
        checker.fail(format!("{field}.max_ejection_time"), "must be at least base_ejection_time".into());
    }
    if outlier.failure_percentage.0 > 0 && outlier.failure_percentage_window == 0 {
        checker.fail(format!("{field}.failure_percentage_window"), "must be at least 1".into());
    }
}

fn check_route(checker: &mut Checker, file: &ConfigFile, field: &str, route: &Route) {
    check_action(checker, file, field, route);
    check_positive(checker, &format!("{field}.timeout"), route.timeout);
    crate::tls::check_route_identity(checker, file, field, route);
    for listener in &route.listeners {
        if !file.listeners.iter().any(|l| &l.name == listener) {
            let known: Vec<_> = file.listeners.iter().map(|l| l.name.as_str()).collect();
            checker.fail_at(
                format!("{field}.listeners"),
                "",
                listener,
                format!("no listener named {listener:?}; listeners are: {}", known.join(", ")),
            );
        }
    }
    check_match(checker, field, route);
    check_rewrite(checker, field, route);
    ratelimit::check_route(checker, file, field, route);
    check_retry(checker, field, route);
    check_fallback(checker, file, field, route);
    if let Some(limit) = &route.concurrency {
        crate::resilience::check_concurrency(checker, &format!("{field}.concurrency"), limit);
    }
    crate::fault::check::check_route(checker, field, route);
}

fn check_fallback(checker: &mut Checker, file: &ConfigFile, field: &str, route: &Route) {
    let Some(fallback) = &route.fallback else { return };
    let field = format!("{field}.fallback");
    match (&fallback.upstream, &fallback.direct_response) {
        (Some(_), Some(_)) | (None, None) => {
            checker.fail(field.clone(), "set either upstream or direct_response".into());
        }
        (Some(upstream), None) if !file.upstreams.contains_key(upstream) => {
            checker.fail(format!("{field}.upstream"), format!("no upstream named {upstream:?}"));
        }
        _ => {}
    }
    let has_breaker = route.upstream.as_ref().and_then(|u| file.upstreams.get(u)).is_some_and(|u| u.breaker.is_some());
    if !has_breaker {
        checker
            .fail(field, "a fallback serves while the upstream's breaker is open: give the upstream a breaker".into());
    }
}

fn check_retry(checker: &mut Checker, field: &str, route: &Route) {
    let Some(retry) = &route.retry else { return };
    let field = format!("{field}.retry");
    if !(1..=10).contains(&retry.attempts) {
        checker.fail(format!("{field}.attempts"), "must be between 1 and 10 (tries in all, the first included)".into());
    }
    if retry.on.is_empty() {
        checker.fail(format!("{field}.on"), "list at least one condition, like connect_failure or 503".into());
    }
    if let Some(per_try) = retry.per_try_timeout {
        check_positive(checker, &format!("{field}.per_try_timeout"), per_try);
    }
    check_positive(checker, &format!("{field}.backoff.base"), retry.backoff.base);
    if retry.backoff.max < retry.backoff.base {
        checker.fail(format!("{field}.backoff.max"), "must be at least backoff.base".into());
    }
    if route.direct_response.is_some() {
        checker.fail(field, "a direct_response route sends nothing upstream, so it cannot retry".into());
    }
}

fn check_action(checker: &mut Checker, file: &ConfigFile, field: &str, route: &Route) {
    match (&route.upstream, &route.direct_response) {
        (Some(_), Some(_)) => checker.fail(field.into(), "set either upstream or direct_response, not both".into()),
        (None, None) => checker.fail(field.into(), "set upstream (to proxy) or direct_response (to answer)".into()),
        (Some(upstream), None) if !file.upstreams.contains_key(upstream) => {
            let known: Vec<_> = file.upstreams.keys().map(String::as_str).collect();
            let hint =
                if known.is_empty() { "none is defined".to_string() } else { format!("defined: {}", known.join(", ")) };
            checker.fail_at(
                format!("{field}.upstream"),
                "upstream",
                upstream,
                format!("no upstream named {upstream:?} ({hint})"),
            );
        }
        _ => {}
    }
}

fn check_match(checker: &mut Checker, field: &str, route: &Route) {
    crate::protocol::check_grpc_match(checker, field, route);
    let m = &route.matches;
    let path_kinds = [m.path.is_some(), m.path_prefix.is_some(), m.path_template.is_some(), m.path_regex.is_some()];
    if path_kinds.iter().filter(|set| **set).count() > 1 {
        checker
            .fail(format!("{field}.match"), "use at most one of path, path_prefix, path_template, path_regex".into());
    }
    if let Some(template) = &m.path_template
        && let Err(message) = check_template(template)
    {
        checker.fail_at(format!("{field}.match.path_template"), "path_template", template, message);
    }
    for (index, header) in m.headers.iter().enumerate() {
        check_value_match(checker, &format!("{field}.match.headers[{index}]"), header);
    }
    for (index, query) in m.query.iter().enumerate() {
        check_value_match(checker, &format!("{field}.match.query[{index}]"), query);
    }
}

fn check_value_match<N>(checker: &mut Checker, field: &str, condition: &ValueMatch<N>) {
    let set = [condition.exact.is_some(), condition.regex.is_some(), condition.present.is_some()];
    if set.iter().filter(|s| **s).count() != 1 {
        checker.fail(field.into(), "set exactly one of exact, regex, present".into());
    }
}

/// A template is `/`-separated segments, each literal, `{name}`, or (last only) `{*name}`.
fn check_template(template: &str) -> Result<(), String> {
    let invalid = |why: &str| Err(format!("invalid path template {template:?}: {why}"));
    let Some(rest) = template.strip_prefix('/') else { return invalid("it must start with '/'") };
    let segments: Vec<&str> = rest.split('/').collect();
    let mut names = HashSet::new();
    for (index, segment) in segments.iter().enumerate() {
        let Some(inner) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            if segment.contains(['{', '}']) || !segment.bytes().all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
            {
                return invalid("a segment is either literal text or a whole {parameter}");
            }
            continue;
        };
        let (catch_all, name) = match inner.strip_prefix('*') {
            Some(name) => (true, name),
            None => (false, inner),
        };
        if catch_all && index + 1 != segments.len() {
            return invalid("{*name} may only be the last segment");
        }
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return invalid("parameter names use letters, digits and '_'");
        }
        if !names.insert(name) {
            return invalid("a parameter name is used twice");
        }
    }
    Ok(())
}

fn check_rewrite(checker: &mut Checker, field: &str, route: &Route) {
    let rewrite = &route.rewrite;
    if let Some(regex) = &rewrite.path_regex
        && !regex.replacement.bytes().all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
    {
        checker.fail(
            format!("{field}.rewrite.path_regex.replacement"),
            "a replacement path holds no spaces, control characters, '?' or '#'".into(),
        );
    }
    let kinds =
        [rewrite.path.is_some(), rewrite.replace_prefix.is_some(), rewrite.strip_prefix, rewrite.path_regex.is_some()];
    if kinds.iter().filter(|set| **set).count() > 1 {
        checker.fail(
            format!("{field}.rewrite"),
            "use at most one of path, replace_prefix, strip_prefix, path_regex".into(),
        );
    }
    if (rewrite.replace_prefix.is_some() || rewrite.strip_prefix) && route.matches.path_prefix.is_none() {
        checker.fail(format!("{field}.rewrite"), "replace_prefix and strip_prefix need match.path_prefix".into());
    }
    let rewrites = kinds.iter().any(|k| *k) || rewrite.host.is_some();
    if route.direct_response.is_some() && (rewrites || !route.request_headers.is_empty()) {
        checker.fail(
            format!("{field}.rewrite"),
            "a direct_response route sends nothing upstream, so it cannot rewrite the request".into(),
        );
    }
}

fn check_positive(checker: &mut Checker, field: &str, duration: Duration) {
    if duration.0.is_zero() {
        checker.fail(field.into(), "must be longer than zero".into());
    }
}
