//! What the admin API shows of the configuration in force, rendered once per snapshot: `/routes`
//! lists each route as weir runs it (defaults filled in, listeners and endpoints spelled out) and
//! `/config` is the file as JSON with its secrets redacted ([`weir_config::view`]).

use bytes::Bytes;
use serde_json::{Map, Value, json};
use weir_config::values::HostPattern;
use weir_config::{Config, Route, ValueMatch};

/// The JSON bodies of `/routes` and `/config`, and the configured faults `/faults` lists.
pub struct AdminViews {
    pub routes: Bytes,
    pub config: Bytes,
    pub faults: Value,
}

impl AdminViews {
    pub fn render(config: &Config) -> AdminViews {
        let routes: Vec<Value> =
            config.routes.iter().enumerate().map(|(index, route)| route_view(config, index, route)).collect();
        AdminViews {
            routes: Bytes::from(pretty(&json!({ "routes": routes }))),
            config: Bytes::from(pretty(config.redacted())),
            faults: configured_faults(config.redacted()),
        }
    }
}

/// Every fault the file configures, as written: `[{"target_type", "target", "fault"}]`. Read from
/// the redacted source, so header-fault secrets never show.
fn configured_faults(source: &Value) -> Value {
    let mut listed = Vec::new();
    let routes = source.get("routes").and_then(Value::as_array).into_iter().flatten().enumerate();
    for (index, route) in routes {
        let name = route.get("name").and_then(Value::as_str).map_or_else(|| format!("routes[{index}]"), str::to_string);
        for fault in route.get("faults").and_then(Value::as_array).into_iter().flatten() {
            listed.push(json!({ "target_type": "route", "target": name, "fault": fault }));
        }
    }
    for (name, upstream) in source.get("upstreams").and_then(Value::as_object).into_iter().flatten() {
        for fault in upstream.get("faults").and_then(Value::as_array).into_iter().flatten() {
            listed.push(json!({ "target_type": "upstream", "target": name, "fault": fault }));
        }
    }
    Value::Array(listed)
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(value).unwrap_or_default();
    text.push(b'\n');
    text
}

fn route_view(config: &Config, index: usize, route: &Route) -> Value {
    let listeners: Vec<&str> = match route.listeners.as_slice() {
        [] => config.listeners.iter().map(|l| l.name.as_str()).collect(),
        chosen => chosen.iter().map(String::as_str).collect(),
    };
    let mut view = json!({
        "name": route.name.clone().unwrap_or_else(|| format!("routes[{index}]")),
        "listeners": listeners,
        "match": match_view(route),
        "timeout_ms": u64::try_from(route.timeout.0.as_millis()).unwrap_or(u64::MAX),
        "max_body_size": route.max_body_size.map(|size| size.0),
    });
    if let Some(upstream) = &route.upstream {
        let endpoints: Vec<Value> = config.upstreams[upstream]
            .endpoints
            .iter()
            .map(|e| json!({ "address": e.address.to_string(), "weight": e.weight }))
            .collect();
        view["upstream"] = json!({ "name": upstream, "endpoints": endpoints });
    }
    if let Some(direct) = &route.direct_response {
        view["direct_response"] = json!({ "status": direct.status.0.as_u16() });
    }
    view
}

fn match_view(route: &Route) -> Value {
    let m = &route.matches;
    let mut view = Map::new();
    let hosts: Vec<String> = m.host.iter().map(host_text).collect();
    view.insert("host".into(), json!(if hosts.is_empty() { vec!["*".to_string()] } else { hosts }));
    let (kind, path) = if let Some(grpc) = &m.grpc {
        (if grpc.method.is_some() { "path" } else { "path_prefix" }, grpc.path())
    } else if let Some(path) = &m.path {
        ("path", path.0.clone())
    } else if let Some(template) = &m.path_template {
        ("path_template", template.clone())
    } else if let Some(pattern) = &m.path_regex {
        ("path_regex", pattern.0.as_str().to_string())
    } else {
        ("path_prefix", m.path_prefix.as_ref().map_or("/".to_string(), |p| p.0.clone()))
    };
    view.insert(kind.into(), json!(path));
    if !m.method.is_empty() {
        view.insert("method".into(), json!(m.method.iter().map(|method| method.0.as_str()).collect::<Vec<_>>()));
    }
    if !m.headers.is_empty() {
        view.insert(
            "headers".into(),
            json!(m.headers.iter().map(|h| condition(h.name.0.as_str(), h)).collect::<Vec<_>>()),
        );
    }
    if !m.query.is_empty() {
        view.insert("query".into(), json!(m.query.iter().map(|q| condition(&q.name, q)).collect::<Vec<_>>()));
    }
    if let Some(grpc) = &m.grpc {
        view.insert("grpc".into(), json!({ "service": grpc.service, "method": grpc.method }));
    }
    Value::Object(view)
}

fn condition<N>(name: &str, test: &ValueMatch<N>) -> Value {
    match (&test.exact, &test.regex, test.present) {
        (Some(exact), _, _) => json!({ "name": name, "exact": exact }),
        (None, Some(pattern), _) => json!({ "name": name, "regex": pattern.0.as_str() }),
        (None, None, present) => json!({ "name": name, "present": present.unwrap_or(true) }),
    }
}

fn host_text(host: &HostPattern) -> String {
    match host {
        HostPattern::Any => "*".to_string(),
        HostPattern::Exact(name) => name.clone(),
        HostPattern::Suffix(suffix) => format!("*{suffix}"),
    }
}
