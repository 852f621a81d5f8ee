//! A route's fault stage: its configured faults, its header faults, and the experiments aimed at
//! it, decided once per request before any other stage.

use http::request::Parts;
use std::net::IpAddr;
use weir_config::Route as RouteConfig;
use weir_telemetry::Metrics;

use super::header::HeaderFaults;
use super::{Dice, Experiments, Fault, Injected, compile_fault};

/// One route's faults; the default has none.
#[derive(Default)]
pub struct RouteFaults {
    configured: Vec<Fault>,
    header: Option<HeaderFaults>,
}

/// What deciding needs besides the route: the shared random source and the running experiments.
pub struct Deciding<'a> {
    pub dice: &'a Dice,
    pub experiments: &'a Experiments,
    pub route: &'a str,
    pub client: &'a (dyn Fn(&Parts) -> IpAddr + Sync),
    pub grpc: bool,
}

impl RouteFaults {
    pub fn build(route: &RouteConfig, name: &str, metrics: &Metrics) -> RouteFaults {
        let counters = metrics.fault_counters("route", name, "config");
        let configured = route.faults.iter().map(|fault| compile_fault(fault, counters.clone())).collect();
        let header = route.header_faults.as_ref().map(|header| HeaderFaults {
            secret: header.secret.as_ref().map(|s| s.as_bytes().into()),
            secret_header: header.secret_header.0.clone(),
            max_delay: header.max_delay.0,
            counters: metrics.fault_counters("route", name, "header"),
        });
        RouteFaults { configured, header }
    }

    /// The faults this request gets; a malformed fault header is refused with its message.
    pub fn decide(&self, parts: &mut Parts, at: &Deciding<'_>) -> Result<Injected, &'static str> {
        let mut injected = Injected::default();
        if let Some(header) = &self.header {
            header.decide(&mut parts.headers, at.grpc, at.dice, &mut injected)?;
        }
        let experiments = at.experiments.running();
        if self.configured.is_empty() && experiments.is_none() {
            return Ok(injected);
        }
        let client = (at.client)(parts);
        let now = tokio::time::Instant::now();
        let aimed = experiments.iter().flat_map(|list| list.iter()).filter(|e| e.aims_at_route(at.route, now));
        for fault in self.configured.iter().chain(aimed.map(|e| &e.fault)) {
            let eligible = fault.when.as_ref().is_none_or(|when| when.passes(parts, client));
            if eligible && fault.applies(at.grpc) && at.dice.hits(fault.per_million) {
                injected.add(fault.action, at.dice, &fault.counters);
            }
        }
        Ok(injected)
    }
}
