//! Fault-injection metrics: faults injected by where (`target_type` `route` or `upstream`, and the
//! route's or upstream's name), by `kind` (`delay`, `abort`, `reset`, `throttle`) and by `source`
//! (`config`, `header`, `experiment`); and run-time experiments active, started and ended.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The kinds of fault, in [`FaultCounters::injected`] index order.
pub const FAULT_KINDS: [&str; 4] = ["delay", "abort", "reset", "throttle"];

/// The names of every set of kinds, by the set's bits (bit n: kind n of [`FAULT_KINDS`]), as the
/// access log writes them.
const KIND_SETS: [&str; 16] = [
    "",
    "delay",
    "abort",
    "delay,abort",
    "reset",
    "delay,reset",
    "abort,reset",
    "delay,abort,reset",
    "throttle",
    "delay,throttle",
    "abort,throttle",
    "delay,abort,throttle",
    "reset,throttle",
    "delay,reset,throttle",
    "abort,reset,throttle",
    "delay,abort,reset,throttle",
];

/// The kinds in the set `bits` as one name, like `delay,abort`; `None` for no kind.
pub fn fault_kinds_name(bits: u8) -> Option<&'static str> {
    KIND_SETS.get(usize::from(bits)).copied().filter(|name| !name.is_empty())
}

/// How an experiment's life is counted, in [`ExperimentMetrics::event`] index order.
pub const EXPERIMENT_EVENTS: [&str; 3] = ["started", "expired", "deleted"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InjectedLabels {
    target_type: String,
    target: String,
    kind: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: String,
}

/// The fault families, registered once.
pub(crate) struct FaultFamilies {
    injected: Family<InjectedLabels, Counter>,
    experiments: ExperimentMetrics,
}

impl FaultFamilies {
    pub(crate) fn register(registry: &mut Registry) -> FaultFamilies {
        let injected = Family::default();
        registry.register(
            "faults_injected",
            "Faults injected, by target, kind and source (config, header, experiment)",
            injected.clone(),
        );
        let active = Gauge::default();
        registry.register("fault_experiments_active", "Fault experiments running now", active.clone());
        let events = Family::<EventLabel, Counter>::default();
        registry.register("fault_experiments", "Fault experiments started and ended, by event", events.clone());
        let events = EXPERIMENT_EVENTS.map(|event| events.get_or_create(&EventLabel { event: event.into() }).clone());
        FaultFamilies { injected, experiments: ExperimentMetrics { active, events } }
    }

    pub(crate) fn counters(&self, target_type: &str, target: &str, source: &str) -> FaultCounters {
        FaultCounters(FAULT_KINDS.map(|kind| {
            let labels = InjectedLabels {
                target_type: target_type.into(),
                target: target.into(),
                kind: kind.into(),
                source: source.into(),
            };
            self.injected.get_or_create(&labels).clone()
        }))
    }

    pub(crate) fn experiments(&self) -> ExperimentMetrics {
        self.experiments.clone()
    }
}

/// The injected-fault counters of one target and source, one per kind.
#[derive(Clone, Debug)]
pub struct FaultCounters([Counter; 4]);

impl FaultCounters {
    /// Counts a fault of the kind at `kind` in [`FAULT_KINDS`].
    pub fn injected(&self, kind: usize) {
        if let Some(counter) = self.0.get(kind) {
            counter.inc();
        }
    }
}

/// The experiment series.
#[derive(Clone, Debug)]
pub struct ExperimentMetrics {
    pub active: Gauge,
    events: [Counter; 3],
}

impl ExperimentMetrics {
    /// Counts an event at `event` in [`EXPERIMENT_EVENTS`].
    pub fn event(&self, event: usize) {
        if let Some(counter) = self.events.get(event) {
            counter.inc();
        }
    }
}
