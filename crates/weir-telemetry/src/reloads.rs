//! Configuration reloads: how many succeeded and failed, and when the serving configuration was
//! last loaded, so an alert can fire on a file that has not applied for a while.

use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// `weir_config_reloads_total{result}` and `weir_config_last_reload_success_timestamp_seconds`.
#[derive(Clone)]
pub struct ReloadMetrics {
    success: Counter,
    failure: Counter,
    last_success: Gauge<f64, AtomicU64>,
}

impl ReloadMetrics {
    pub(crate) fn register(registry: &mut Registry) -> ReloadMetrics {
        let results = Family::<ResultLabel, Counter>::default();
        registry.register("config_reloads", "Configuration reloads attempted, by result", results.clone());
        let last_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "When the serving configuration was loaded (Unix time), at start-up or by the last good reload",
            last_success.clone(),
        );
        // One statement per handle: a family's read guard lives to the end of its statement.
        let success = results.get_or_create(&ResultLabel { result: "success" }).clone();
        let failure = results.get_or_create(&ResultLabel { result: "failure" }).clone();
        let metrics = ReloadMetrics { success, failure, last_success };
        metrics.last_success.set(unix_now());
        metrics
    }

    /// A new configuration is serving.
    pub fn succeeded(&self) {
        self.success.inc();
        self.last_success.set(unix_now());
    }

    /// A reload was refused; the previous configuration keeps serving.
    pub fn failed(&self) {
        self.failure.inc();
    }
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use crate::Metrics;

    #[test]
    fn reload_results_are_counted_apart() {
        let metrics = Metrics::new();
        metrics.reloads().succeeded();
        metrics.reloads().failed();
        metrics.reloads().failed();
        let text = metrics.encode();
        assert!(text.contains("weir_config_reloads_total{result=\"success\"} 1"), "{text}");
        assert!(text.contains("weir_config_reloads_total{result=\"failure\"} 2"), "{text}");
        assert!(text.contains("weir_config_last_reload_success_timestamp_seconds 1"), "{text}");
    }
}
