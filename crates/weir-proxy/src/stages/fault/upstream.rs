//! Faults on calls to an upstream: decided per try, after the endpoint is picked, so an abort or a
//! delay meets the retry loop, the breaker, outlier detection and the balancer as a real failure
//! of that endpoint would.

use std::collections::HashMap;
use std::net::SocketAddr;

use weir_config::Config;
use weir_telemetry::Metrics;

use super::{Dice, Experiments, Fault, Injected, compile_fault};

/// The configured faults of every upstream that has some, by upstream name.
#[derive(Default)]
pub struct UpstreamFaults {
    by_upstream: HashMap<String, Vec<Fault>>,
}

impl UpstreamFaults {
    pub fn build(config: &Config, metrics: &Metrics) -> UpstreamFaults {
        let by_upstream = config
            .upstreams
            .iter()
            .filter(|(_, upstream)| !upstream.faults.is_empty())
            .map(|(name, upstream)| {
                let counters = metrics.fault_counters("upstream", name, "config");
                (name.clone(), upstream.faults.iter().map(|f| compile_fault(f, counters.clone())).collect())
            })
            .collect();
        UpstreamFaults { by_upstream }
    }

    /// The faults one try on `endpoint` of `upstream` gets.
    pub fn decide(
        &self,
        upstream: &str,
        endpoint: SocketAddr,
        grpc: bool,
        dice: &Dice,
        experiments: &Experiments,
    ) -> Injected {
        let mut injected = Injected::default();
        let running = experiments.running();
        if self.by_upstream.is_empty() && running.is_none() {
            return injected;
        }
        let now = tokio::time::Instant::now();
        let configured = self.by_upstream.get(upstream).into_iter().flatten();
        let aimed = running.iter().flat_map(|list| list.iter()).filter(|e| e.aims_at_upstream(upstream, now));
        for fault in configured.chain(aimed.map(|e| &e.fault)) {
            let eligible = fault.endpoint.is_none_or(|only| only == endpoint);
            if eligible && fault.applies(grpc) && dice.hits(fault.per_million) {
                injected.add(fault.action, dice, &fault.counters);
            }
        }
        injected
    }
}
