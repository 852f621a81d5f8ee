//! One local rate-limit decision: hashing a key and deciding on its bucket, for a key already
//! remembered and for keys spread over a large table.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use weir_ratelimit::{LocalLimiter, LocalMetrics, Quota};

fn decisions(c: &mut Criterion) {
    let limiter = LocalLimiter::new(Quota::new(1_000_000_000, 1_000_000_000, 100), 100_000, LocalMetrics::default());
    let start = std::time::Instant::now();
    let now = || start.elapsed().as_nanos() as u64;
    c.bench_function("local_decision_one_key", |b| {
        b.iter(|| limiter.check(limiter.hash_key(black_box("203.0.113.7")), now()))
    });
    let keys: Vec<String> = (0..50_000).map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)).collect();
    let mut i = 0;
    c.bench_function("local_decision_50k_keys", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            limiter.check(limiter.hash_key(black_box(keys[i].as_str())), now())
        })
    });
}

criterion_group!(benches, decisions);
criterion_main!(benches);
