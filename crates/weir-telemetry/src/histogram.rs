//! A request-duration histogram that records with atomic adds only. prometheus-client's own
//! histogram takes a mutex per observation; on a busy route every worker would meet on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds in seconds: 0.5 ms doubling to about 16 s, then everything else.
const BOUNDS: [f64; 16] = {
    let mut bounds = [0.0005; 16];
    let mut i = 1;
    while i < 16 {
        bounds[i] = bounds[i - 1] * 2.0;
        i += 1;
    }
    bounds
};

/// Counts per bucket (not cumulative; the last cell is above every bound), the count, and the sum
/// in nanoseconds.
#[derive(Debug, Default)]
struct Cells {
    buckets: [AtomicU64; BOUNDS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// Request durations; clones share their cells.
#[derive(Debug, Clone, Default)]
pub struct DurationHistogram {
    cells: Arc<Cells>,
}

impl DurationHistogram {
    pub fn observe(&self, elapsed: std::time::Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = BOUNDS.iter().position(|bound| seconds <= *bound).unwrap_or(BOUNDS.len());
        self.cells.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.cells.sum_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.cells.count.fetch_add(1, Ordering::Relaxed);
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // Per-bucket counts: the encoder accumulates them into `le` buckets itself.
        let buckets: Vec<(f64, u64)> = BOUNDS
            .iter()
            .chain(std::iter::once(&f64::INFINITY))
            .zip(&self.cells.buckets)
            .map(|(bound, cell)| (*bound, cell.load(Ordering::Relaxed)))
            .collect();
        let in_buckets = buckets.iter().map(|(_, n)| n).sum();
        // A scrape racing observations must never show a count below its +Inf bucket.
        let count = self.cells.count.load(Ordering::Relaxed).max(in_buckets);
        let sum = self.cells.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}
