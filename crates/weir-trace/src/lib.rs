//! weir's distributed tracing. On the request path, [`Tracer::begin`] reads the caller's W3C
//! `traceparent`, decides whether the request is sampled (the caller's flag, or the ratio for a
//! request that starts a trace) and gives a [`RequestSpan`]: a child of the caller's span, whose
//! `traceparent` weir sends upstream. Sampled spans end into a bounded queue that a batch task
//! drains to an OpenTelemetry collector over OTLP/gRPC or OTLP/HTTP ([`export`]); the request path
//! never waits on the collector.
//!
//! The OTLP messages are written by a small protobuf writer ([`proto`], [`otlp`]) rather than
//! generated code, which keeps gRPC and protobuf crates out of the build.

pub mod context;
pub mod export;
pub mod ids;
pub mod otlp;
pub mod proto;
pub mod sampler;
pub mod span;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, Uri};
use weir_telemetry::TraceMetrics;

pub use context::Parent;
pub use export::BatchSettings;
pub use span::{HttpFields, RequestSpan, SpanData, SpanEnd};

use export::{BatchTask, Export, GrpcExporter, HttpExporter, OtlpExporter, SpanQueue};
use otlp::Encoder;
use sampler::Sampler;

/// What a tracer is started with, compiled from the configuration's `tracing` section.
#[derive(Debug, Clone)]
pub struct TracerSettings {
    /// The collector's endpoint, `http://host:port`.
    pub endpoint: Uri,
    /// OTLP/HTTP (protobuf) instead of OTLP/gRPC.
    pub http_protobuf: bool,
    pub service_name: String,
    pub resource: Vec<(String, String)>,
    /// The share of requests that start a trace which are sampled.
    pub sampling_ratio: f64,
    pub batch: BatchSettings,
}

/// The process's tracer: the sampler, the queue sampled spans end into, and the batch task.
pub struct Tracer {
    sampler: Sampler,
    queue: Arc<SpanQueue>,
    task: Mutex<Option<BatchTask>>,
    flush_deadline: Duration,
}

impl Tracer {
    /// Starts the exporter's batch task, exporting to the collector; needs a Tokio runtime.
    pub fn start(settings: TracerSettings, metrics: TraceMetrics) -> Tracer {
        let exporter = match settings.http_protobuf {
            true => OtlpExporter::Http(HttpExporter::new(&settings.endpoint)),
            false => OtlpExporter::Grpc(GrpcExporter::new(&settings.endpoint)),
        };
        Tracer::with_exporter(settings, metrics, exporter)
    }

    /// Starts the batch task with batches going to `exporter` (benchmarks use a stand-in).
    pub fn with_exporter<E: Export>(settings: TracerSettings, metrics: TraceMetrics, exporter: E) -> Tracer {
        let encoder = Encoder::new(&settings.service_name, &settings.resource);
        let flush_deadline = settings.batch.export_timeout;
        let (queue, task) = BatchTask::start(settings.batch, encoder, exporter, metrics);
        Tracer { sampler: Sampler::new(settings.sampling_ratio), queue, task: Mutex::new(Some(task)), flush_deadline }
    }

    /// The span of a request that arrived at `arrived` with these trace-context headers. Only a
    /// sampled request's span allocates.
    pub fn begin(
        &self,
        traceparent: Option<&HeaderValue>,
        tracestate: Option<&HeaderValue>,
        arrived: Instant,
    ) -> RequestSpan {
        let parent = traceparent.and_then(|value| Parent::from_traceparent(value.as_bytes()));
        let (trace_id, span_id) = ids::with_thread_ids(|ids| {
            let trace_id = parent.map_or_else(|| ids.trace_id(), |p| p.trace_id);
            (trace_id, ids.span_id())
        });
        if !self.sampler.sample(parent.as_ref(), &trace_id) {
            return RequestSpan::unsampled(trace_id, span_id, parent.is_some());
        }
        let now = SystemTime::now();
        let data = SpanData {
            trace_id,
            span_id,
            parent_span_id: parent.map(|p| p.span_id),
            trace_state: parent.and(tracestate.cloned()),
            start: now.checked_sub(arrived.elapsed()).unwrap_or(now),
            arrived,
            duration: Duration::ZERO,
            http: HttpFields::default(),
        };
        RequestSpan::sampled(data, self.queue.clone())
    }

    /// Exports the spans still queued, within the export timeout; later spans are dropped and
    /// counted. Returns `false` if the deadline passed first.
    pub async fn shutdown(&self) -> bool {
        let task = self.task.lock().expect("tracer task lock").take();
        match task {
            Some(task) => task.shutdown(self.flush_deadline).await,
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use export::ExportError;

    struct Nowhere;

    impl Export for Nowhere {
        async fn export(&mut self, _message: Vec<u8>) -> Result<(), ExportError> {
            Ok(())
        }
    }

    fn tracer(ratio: f64) -> Tracer {
        let settings = TracerSettings {
            endpoint: "http://127.0.0.1:4317".parse().unwrap(),
            http_protobuf: false,
            service_name: "test".into(),
            resource: Vec::new(),
            sampling_ratio: ratio,
            batch: BatchSettings {
                batch_size: 8,
                batch_delay: Duration::from_millis(1),
                queue_size: 8,
                export_timeout: Duration::from_secs(1),
            },
        };
        Tracer::with_exporter(settings, TraceMetrics::unregistered(), Nowhere)
    }

    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";

    fn header(flags: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("{CALLER}-{flags}")).unwrap()
    }

    #[tokio::test]
    async fn an_unsampled_caller_gets_a_propagated_span_that_records_nothing() {
        let tracer = tracer(1.0);
        let mut span = tracer.begin(Some(&header("00")), None, Instant::now());
        assert!(!span.is_recording() && span.fields().is_none(), "no span data for an unsampled request");
        let sent = span.traceparent().unwrap();
        let sent = sent.to_str().unwrap();
        assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && sent.ends_with("-00"), "{sent}");
        assert!(!sent.contains("00f067aa0ba902b7"), "weir's own span id goes upstream");
        assert!(span.continues_caller());
    }

    #[tokio::test]
    async fn a_sampled_caller_is_recorded_with_its_tracestate_whatever_the_ratio() {
        let tracer = tracer(0.0);
        let state = HeaderValue::from_static("vendor=1");
        let mut span = tracer.begin(Some(&header("01")), Some(&state), Instant::now());
        assert!(span.fields().is_some());
        assert!(span.traceparent().unwrap().to_str().unwrap().ends_with("-01"));
        let end = span.into_end();
        let Some((data, _)) = &end.0 else { panic!("a sampled span records") };
        assert_eq!(data.parent_span_id, Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]));
        assert_eq!(data.trace_state.as_ref().unwrap(), "vendor=1");
    }

    #[tokio::test]
    async fn a_malformed_caller_starts_a_new_trace_without_its_tracestate() {
        let tracer = tracer(1.0);
        let state = HeaderValue::from_static("vendor=1");
        let bad = HeaderValue::from_static("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01");
        let span = tracer.begin(Some(&bad), Some(&state), Instant::now());
        assert!(!span.continues_caller());
        let end = span.into_end();
        let Some((data, _)) = &end.0 else { panic!("ratio 1 samples every root") };
        assert_eq!((data.parent_span_id, &data.trace_state), (None, &None));
        assert!(RequestSpan::off().traceparent().is_none());
    }
}
