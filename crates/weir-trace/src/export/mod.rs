//! Getting finished spans to the collector without touching the request path: a request only
//! `try_send`s its span into a bounded queue (a full queue drops the span and counts it); one task
//! on the Tokio runtime takes spans off the queue in batches (up to `batch_size`, or what arrived
//! within `batch_delay` of the first), encodes them and exports each batch with a timeout. A failed
//! export drops its batch, counts the error and waits a growing backoff before the next call, so a
//! collector outage costs a bounded queue and a few counters. Shutdown exports what is queued
//! within a deadline. Batches go over OTLP/gRPC ([`GrpcExporter`]) or OTLP/HTTP ([`HttpExporter`]).

mod grpc;
mod http_protobuf;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use weir_telemetry::TraceMetrics;

pub use grpc::{ExportError, GrpcExporter};
pub use http_protobuf::HttpExporter;

use crate::otlp::Encoder;
use crate::span::SpanData;

const QUEUE_FULL: usize = 0;
const EXPORT_FAILED: usize = 1;
const SHUTDOWN: usize = 2;

/// The first wait after a failed export; it doubles per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where batches go: the collector ([`GrpcExporter`]), or a stand-in in tests.
pub trait Export: Send + Sync + 'static {
    /// Sends one encoded `ExportTraceServiceRequest`.
    fn export(&mut self, message: Vec<u8>) -> impl Future<Output = Result<(), ExportError>> + Send;
}

impl Export for GrpcExporter {
    fn export(&mut self, message: Vec<u8>) -> impl Future<Output = Result<(), ExportError>> + Send {
        GrpcExporter::export(self, message)
    }
}

/// The two OTLP transports.
pub enum OtlpExporter {
    Grpc(GrpcExporter),
    Http(HttpExporter),
}

impl Export for OtlpExporter {
    async fn export(&mut self, message: Vec<u8>) -> Result<(), ExportError> {
        match self {
            OtlpExporter::Grpc(grpc) => grpc.export(message).await,
            OtlpExporter::Http(http) => http.export(message).await,
        }
    }
}

/// `host:port` of an endpoint, with `default_port` when it names none.
fn authority(endpoint: &http::Uri, default_port: u16) -> String {
    endpoint.authority().map_or_else(String::new, |a| match a.port() {
        Some(_) => a.as_str().to_string(),
        None => format!("{}:{default_port}", a.host()),
    })
}

/// How the batch task batches and exports.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    pub batch_size: usize,
    pub batch_delay: Duration,
    pub queue_size: usize,
    pub export_timeout: Duration,
}

/// The sending end, held by every sampled span.
pub struct SpanQueue {
    sender: mpsc::Sender<Box<SpanData>>,
    metrics: TraceMetrics,
}

impl SpanQueue {
    /// Hands a finished span to the batch task, or drops and counts it; never waits.
    pub fn push(&self, span: Box<SpanData>) {
        match self.sender.try_send(span) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.dropped[QUEUE_FULL].inc();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.metrics.dropped[SHUTDOWN].inc();
            }
        }
    }
}

/// The running batch task, and the switch that makes it flush and stop.
pub struct BatchTask {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// To count the spans still queued if the flush runs out of time.
    queue: mpsc::WeakSender<Box<SpanData>>,
    metrics: TraceMetrics,
}

impl BatchTask {
    /// Starts the task on the current Tokio runtime; returns the queue spans go into.
    pub fn start<E: Export>(
        settings: BatchSettings,
        encoder: Encoder,
        exporter: E,
        metrics: TraceMetrics,
    ) -> (Arc<SpanQueue>, BatchTask) {
        let (sender, receiver) = mpsc::channel(settings.queue_size.max(1));
        let (stop, stopping) = watch::channel(false);
        let batcher = Batcher { settings, encoder, exporter, metrics: metrics.clone(), backoff: None };
        let task = tokio::spawn(batcher.run(receiver, stopping));
        let batch_task = BatchTask { stop, task, queue: sender.downgrade(), metrics: metrics.clone() };
        (Arc::new(SpanQueue { sender, metrics }), batch_task)
    }

    /// Exports what is queued, waiting at most `deadline`; `false` if the deadline passed first (the
    /// spans still queued then are counted as dropped; a batch in the middle of its export is not).
    pub async fn shutdown(self, deadline: Duration) -> bool {
        let _ = self.stop.send(true);
        let mut task = self.task;
        match tokio::time::timeout(deadline, &mut task).await {
            Ok(_) => true,
            Err(_) => {
                if let Some(queue) = self.queue.upgrade() {
                    let queued = queue.max_capacity() - queue.capacity();
                    self.metrics.dropped[SHUTDOWN].inc_by(queued as u64);
                }
                // Once the aborted task is gone, the queue is closed: later spans count as dropped.
                task.abort();
                let _ = task.await;
                false
            }
        }
    }
}

struct Batcher<E> {
    settings: BatchSettings,
    encoder: Encoder,
    exporter: E,
    metrics: TraceMetrics,
    /// The wait before the next export, after failures.
    backoff: Option<Duration>,
}

impl<E: Export> Batcher<E> {
    async fn run(mut self, mut queue: mpsc::Receiver<Box<SpanData>>, mut stopping: watch::Receiver<bool>) {
        let mut batch = Vec::with_capacity(self.settings.batch_size);
        loop {
            let stopped = self.fill(&mut queue, &mut stopping, &mut batch).await;
            if stopped {
                break;
            }
            self.export(&mut batch).await;
            if let Some(wait) = self.backoff {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = stopping.wait_for(|stop| *stop) => break,
                }
            }
        }
        self.flush(queue, batch).await;
    }

    /// Waits for a first span, then gathers more until the batch is full or the delay has passed.
    /// Returns `true` when shutdown began (the batch keeps what it gathered).
    async fn fill(
        &self,
        queue: &mut mpsc::Receiver<Box<SpanData>>,
        stopping: &mut watch::Receiver<bool>,
        batch: &mut Vec<SpanData>,
    ) -> bool {
        let mut deadline = None;
        while batch.len() < self.settings.batch_size {
            let flush_at = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                span = queue.recv() => match span {
                    Some(span) => batch.push(*span),
                    None => return true,
                },
                () = flush_at => return false,
                _ = stopping.wait_for(|stop| *stop) => return true,
            }
            deadline.get_or_insert_with(|| Instant::now() + self.settings.batch_delay);
        }
        false
    }

    /// Exports the batch (emptying it), counting the outcome and adjusting the backoff.
    async fn export(&mut self, batch: &mut Vec<SpanData>) {
        if batch.is_empty() {
            return;
        }
        let count = batch.len() as u64;
        let message = self.encoder.request(batch);
        batch.clear();
        let sent = tokio::time::timeout(self.settings.export_timeout, self.exporter.export(message)).await;
        match sent.unwrap_or(Err(ExportError::Timeout(self.settings.export_timeout))) {
            Ok(()) => {
                self.metrics.exported.inc_by(count);
                self.backoff = None;
            }
            Err(error) => {
                self.metrics.export_errors.inc();
                self.metrics.dropped[EXPORT_FAILED].inc_by(count);
                let wait = self.backoff.map_or(FIRST_BACKOFF, |wait| (wait * 2).min(MAX_BACKOFF));
                tracing::warn!(%error, spans = count, retry_in = ?wait, "trace export failed; spans dropped");
                self.backoff = Some(wait);
            }
        }
    }

    /// Shutdown: no more spans are accepted; what is queued is exported batch by batch.
    async fn flush(mut self, mut queue: mpsc::Receiver<Box<SpanData>>, mut batch: Vec<SpanData>) {
        queue.close();
        while let Some(span) = queue.recv().await {
            batch.push(*span);
            if batch.len() >= self.settings.batch_size {
                self.export(&mut batch).await;
            }
        }
        self.export(&mut batch).await;
    }
}

#[cfg(test)]
mod tests;
