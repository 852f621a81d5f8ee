use std::sync::Mutex;
use std::time::SystemTime;

use super::*;
use crate::span::HttpFields;

/// A stand-in collector: records when each call came and answers as told.
#[derive(Clone, Default)]
struct FakeCollector {
    calls: Arc<Mutex<Vec<Instant>>>,
    /// Calls that fail before the rest succeed.
    failures: Arc<Mutex<u32>>,
    hang: bool,
    called: Arc<tokio::sync::Notify>,
}

impl FakeCollector {
    /// Waits until `n` calls have come (made or failed).
    async fn wait_for_calls(&self, n: usize) -> Vec<Instant> {
        loop {
            let notified = self.called.notified();
            let calls = self.calls.lock().unwrap().clone();
            if calls.len() >= n {
                return calls;
            }
            notified.await;
        }
    }
}

impl Export for FakeCollector {
    fn export(&mut self, _message: Vec<u8>) -> impl Future<Output = Result<(), ExportError>> + Send {
        self.calls.lock().unwrap().push(Instant::now());
        let fail = {
            let mut failures = self.failures.lock().unwrap();
            let fail = *failures > 0;
            *failures = failures.saturating_sub(1);
            fail
        };
        let (hang, called) = (self.hang, self.called.clone());
        async move {
            called.notify_waiters();
            if hang {
                std::future::pending::<()>().await;
            }
            if fail { Err(ExportError::NoStatus) } else { Ok(()) }
        }
    }
}

fn settings(batch_size: usize, queue_size: usize) -> BatchSettings {
    BatchSettings {
        batch_size,
        batch_delay: Duration::from_secs(1),
        queue_size,
        export_timeout: Duration::from_secs(10),
    }
}

fn start(settings: BatchSettings, fake: &FakeCollector) -> (Arc<SpanQueue>, BatchTask, TraceMetrics) {
    let metrics = TraceMetrics::unregistered();
    let (queue, task) = BatchTask::start(settings, Encoder::new("test", &[]), fake.clone(), metrics.clone());
    (queue, task, metrics)
}

fn span() -> Box<SpanData> {
    Box::new(SpanData {
        trace_id: [1; 16],
        span_id: [2; 8],
        parent_span_id: None,
        trace_state: None,
        start: SystemTime::now(),
        arrived: std::time::Instant::now(),
        duration: Duration::ZERO,
        http: HttpFields::default(),
    })
}

#[tokio::test(start_paused = true)]
async fn full_batches_go_at_once_and_a_partial_one_after_the_delay() {
    let fake = FakeCollector::default();
    let (queue, task, metrics) = start(settings(4, 100), &fake);
    let started = Instant::now();
    for _ in 0..9 {
        queue.push(span());
    }
    assert!(task.shutdown(Duration::from_secs(60)).await);
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3, "4 + 4 + 1 spans");
    assert_eq!(metrics.exported.get(), 9);
    assert_eq!(calls[0], started);
    assert_eq!(calls[1], started);
}

#[tokio::test(start_paused = true)]
async fn a_lone_span_waits_the_batch_delay() {
    let fake = FakeCollector::default();
    let (queue, task, metrics) = start(settings(4, 100), &fake);
    let started = Instant::now();
    queue.push(span());
    assert_eq!(fake.wait_for_calls(1).await[0], started + Duration::from_secs(1));
    assert!(task.shutdown(Duration::from_secs(1)).await);
    assert_eq!(metrics.exported.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn failed_exports_are_counted_and_backed_off() {
    let fake = FakeCollector { failures: Arc::new(Mutex::new(3)), ..FakeCollector::default() };
    let (queue, task, metrics) = start(settings(1, 100), &fake);
    for _ in 0..4 {
        queue.push(span());
    }
    let calls = fake.wait_for_calls(4).await;
    let gaps: Vec<_> = calls.windows(2).map(|pair| pair[1] - pair[0]).collect();
    assert_eq!(gaps, [Duration::from_millis(100), Duration::from_millis(200), Duration::from_millis(400)]);
    assert_eq!(metrics.export_errors.get(), 3);
    assert!(task.shutdown(Duration::from_secs(1)).await);
    assert_eq!(metrics.dropped[EXPORT_FAILED].get(), 3);
    assert_eq!(metrics.exported.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_drops_and_counts_without_waiting() {
    let fake = FakeCollector { hang: true, ..FakeCollector::default() };
    let (queue, task, metrics) = start(settings(1, 2), &fake);
    // The batch task has not run yet: two spans fit, the third is dropped on the spot.
    for _ in 0..3 {
        queue.push(span());
    }
    assert_eq!(metrics.dropped[QUEUE_FULL].get(), 1);
    assert!(!task.shutdown(Duration::from_secs(1)).await, "a hanging collector cannot be flushed to");
    assert_eq!(metrics.dropped[SHUTDOWN].get(), 1, "one span in the hanging export, one queued");
    queue.push(span());
    assert_eq!(metrics.dropped[SHUTDOWN].get(), 2);
}

#[tokio::test(start_paused = true)]
async fn shutdown_exports_what_is_queued_without_waiting_the_delay() {
    let fake = FakeCollector::default();
    let (queue, task, metrics) =
        start(BatchSettings { batch_delay: Duration::from_secs(3600), ..settings(2, 100) }, &fake);
    let started = Instant::now();
    for _ in 0..5 {
        queue.push(span());
    }
    tokio::task::yield_now().await;
    assert!(task.shutdown(Duration::from_secs(1)).await);
    assert_eq!(metrics.exported.get(), 5);
    assert!(fake.calls.lock().unwrap().iter().all(|at| *at == started));
}
