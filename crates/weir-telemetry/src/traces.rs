//! The span exporter's own series: spans exported, spans dropped (and why), and failed export calls.
//! The exporter runs beside the request path; these tell an operator whether traces are complete.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Why a finished span never reached the collector, as labelled.
pub const SPAN_DROP_REASONS: [&str; 3] = ["queue_full", "export_failed", "shutdown"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// `weir_trace_spans_exported_total`, `weir_trace_spans_dropped_total{reason}` and
/// `weir_trace_export_errors_total`.
#[derive(Clone)]
pub struct TraceMetrics {
    pub exported: Counter,
    /// One handle per [`SPAN_DROP_REASONS`] entry, in that order.
    pub dropped: [Counter; 3],
    pub export_errors: Counter,
}

impl TraceMetrics {
    pub(crate) fn register(registry: &mut Registry) -> TraceMetrics {
        let exported = Counter::default();
        registry.register("trace_spans_exported", "Spans the collector accepted", exported.clone());
        let dropped = Family::<ReasonLabel, Counter>::default();
        registry.register("trace_spans_dropped", "Sampled spans that were never exported, by reason", dropped.clone());
        let export_errors = Counter::default();
        registry.register("trace_export_errors", "Export calls that failed or timed out", export_errors.clone());
        let dropped = SPAN_DROP_REASONS.map(|reason| dropped.get_or_create(&ReasonLabel { reason }).clone());
        TraceMetrics { exported, dropped, export_errors }
    }

    /// Handles registered nowhere, for tests and benchmarks of the exporter alone.
    pub fn unregistered() -> TraceMetrics {
        TraceMetrics::register(&mut Registry::default())
    }
}
