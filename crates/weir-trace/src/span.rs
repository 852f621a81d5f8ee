//! The gateway's span for one request. [`RequestSpan`] is made when a request arrives, carries the
//! context weir propagates upstream, and, only when the request is sampled, a boxed [`SpanData`]
//! the request path fills in as it learns the route, the upstream and the answer. An unsampled
//! span holds ids and a flag and allocates nothing. Once the context has gone upstream, the
//! response body carries only a [`SpanEnd`]; the span ends when that is dropped (the response body
//! finished or was abandoned), and a sampled one goes to the export queue then.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Version};

use crate::context::{SpanId, TraceId, traceparent};
use crate::export::SpanQueue;

/// What a sampled request's span records, encoded as OTLP only on the exporter's task.
#[derive(Debug, Clone)]
pub struct SpanData {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// The caller's span, when the request came with a valid `traceparent`.
    pub parent_span_id: Option<SpanId>,
    /// The caller's `tracestate`, passed through unchanged.
    pub trace_state: Option<HeaderValue>,
    /// Wall-clock time of the request's arrival.
    pub start: SystemTime,
    /// The request's arrival on the monotonic clock, which the duration is measured from.
    pub arrived: Instant,
    /// Arrival to the end of the response body (set when the span ends).
    pub duration: Duration,
    pub http: HttpFields,
}

/// The request and its answer, as the HTTP semantic conventions name them (plus weir's own).
#[derive(Debug, Clone, Default)]
pub struct HttpFields {
    pub method: Option<Method>,
    pub target: Option<PathAndQuery>,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The host the client asked for, with its port if it gave one.
    pub host: Option<HeaderValue>,
    pub version: Version,
    pub client: Option<SocketAddr>,
    pub user_agent: Option<HeaderValue>,
    pub route: Option<Arc<str>>,
    pub upstream: Option<Box<str>>,
    /// The endpoint of the last attempt.
    pub endpoint: Option<SocketAddr>,
    pub attempts: u32,
    pub status: u16,
    /// The reason weir refused the request, when it did.
    pub refusal: Option<&'static str>,
}

/// The ids weir propagates for a request, sampled or not.
#[derive(Debug, Clone, Copy)]
struct Propagated {
    trace_id: TraceId,
    span_id: SpanId,
    sampled: bool,
    /// The caller sent a valid `traceparent` (so its `tracestate` belongs to this trace).
    has_parent: bool,
}

/// One request's span; see the module documentation.
pub struct RequestSpan {
    context: Option<Propagated>,
    recording: SpanEnd,
}

/// What is left of a span once its context has been propagated: the recorded data and the queue it
/// ends into (nothing for an unsampled span). Two pointers wide, for the response body to carry.
#[derive(Default)]
pub struct SpanEnd(pub(crate) Option<(Box<SpanData>, Arc<SpanQueue>)>);

impl RequestSpan {
    /// The span of a gateway without tracing: it propagates nothing and records nothing.
    pub const fn off() -> RequestSpan {
        RequestSpan { context: None, recording: SpanEnd(None) }
    }

    pub(crate) fn unsampled(trace_id: TraceId, span_id: SpanId, has_parent: bool) -> RequestSpan {
        let context = Propagated { trace_id, span_id, sampled: false, has_parent };
        RequestSpan { context: Some(context), recording: SpanEnd(None) }
    }

    pub(crate) fn sampled(data: SpanData, queue: Arc<SpanQueue>) -> RequestSpan {
        let context = Propagated {
            trace_id: data.trace_id,
            span_id: data.span_id,
            sampled: true,
            has_parent: data.parent_span_id.is_some(),
        };
        RequestSpan { context: Some(context), recording: SpanEnd(Some((Box::new(data), queue))) }
    }

    /// The `traceparent` to send upstream, naming this span; `None` when tracing is off.
    pub fn traceparent(&self) -> Option<HeaderValue> {
        self.context.map(|c| traceparent(&c.trace_id, &c.span_id, c.sampled))
    }

    /// Whether the caller's `traceparent` was valid, so its `tracestate` may travel on.
    pub fn continues_caller(&self) -> bool {
        self.context.is_some_and(|c| c.has_parent)
    }

    /// The trace id, when tracing is on.
    pub fn trace_id(&self) -> Option<TraceId> {
        self.context.map(|c| c.trace_id)
    }

    /// The span's fields to fill in; `None` when the request is not sampled.
    pub fn fields(&mut self) -> Option<&mut HttpFields> {
        self.recording.0.as_mut().map(|(data, _)| &mut data.http)
    }

    pub fn is_recording(&self) -> bool {
        self.recording.0.is_some()
    }

    /// Keeps only what ending the span needs.
    pub fn into_end(self) -> SpanEnd {
        self.recording
    }

    /// Ends the span now (dropping it does the same).
    pub fn end(self) {}
}

impl SpanEnd {
    /// Ends the span now (dropping it does the same).
    pub fn end(self) {}
}

impl Drop for SpanEnd {
    fn drop(&mut self) {
        if let Some((mut data, queue)) = self.0.take() {
            data.duration = data.arrived.elapsed();
            queue.push(data);
        }
    }
}
