//! The concurrency limit's fast path: admitting a request and releasing its slot when the limit is
//! not reached, for a fixed limit and an adaptive one (which also learns from the release).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use weir_resilience::concurrency::adaptive::{AdaptiveLimit, AdaptiveSettings};
use weir_resilience::concurrency::{ConcurrencyLimit, LimitSettings};

fn admit_and_release(c: &mut Criterion) {
    let settings = LimitSettings { max_in_flight: 1000, max_queue: 100, queue_timeout: Duration::from_millis(100) };
    let fixed = ConcurrencyLimit::new(settings);
    c.bench_function("concurrency_fixed_admit_release", |b| b.iter(|| drop(black_box(fixed.try_admit()))));
    let moves = AdaptiveSettings { initial: 1000, min: 1, max: 2000, tolerance: 2.0 };
    let adaptive = ConcurrencyLimit::adaptive(settings, AdaptiveLimit::new(moves));
    c.bench_function("concurrency_adaptive_admit_release", |b| b.iter(|| drop(black_box(adaptive.try_admit()))));
}

criterion_group!(benches, admit_and_release);
criterion_main!(benches);
