use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, advance};

use super::adaptive::{AdaptiveLimit, AdaptiveSettings};
use super::{ConcurrencyLimit, LimitSettings, Shed};

fn settings(max_in_flight: usize, max_queue: usize) -> LimitSettings {
    LimitSettings { max_in_flight, max_queue, queue_timeout: Duration::from_millis(100) }
}

#[tokio::test(start_paused = true)]
async fn admits_up_to_the_limit_then_sheds_when_the_queue_is_full() {
    let limit = ConcurrencyLimit::new(settings(2, 0));
    let a = limit.acquire(None).await.unwrap();
    let _b = limit.acquire(None).await.unwrap();
    assert_eq!(limit.acquire(None).await.unwrap_err(), Shed::QueueFull);
    assert_eq!(limit.in_flight(), 2);
    drop(a);
    assert_eq!(limit.in_flight(), 1);
    assert!(limit.acquire(None).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_is_admitted_when_a_slot_frees() {
    let limit = Arc::new(ConcurrencyLimit::new(settings(1, 1)));
    let first = limit.acquire(None).await.unwrap();
    let waiter = tokio::spawn({
        let limit = limit.clone();
        async move { limit.acquire(None).await.map(drop) }
    });
    while limit.queued() == 0 {
        tokio::task::yield_now().await;
    }
    // The queue is full now: a third request is shed at once.
    assert_eq!(limit.acquire(None).await.unwrap_err(), Shed::QueueFull);
    advance(Duration::from_millis(50)).await;
    drop(first);
    assert_eq!(waiter.await.unwrap(), Ok(()));
    assert_eq!((limit.queued(), limit.in_flight()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_is_shed_at_the_queue_timeout_or_its_deadline() {
    let limit = ConcurrencyLimit::new(settings(1, 4));
    let _held = limit.acquire(None).await.unwrap();
    let started = Instant::now();
    assert_eq!(limit.acquire(None).await.unwrap_err(), Shed::QueueTimeout);
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    let started = Instant::now();
    let deadline = started + Duration::from_millis(30);
    assert_eq!(limit.acquire(Some(deadline)).await.unwrap_err(), Shed::QueueTimeout);
    assert_eq!(started.elapsed(), Duration::from_millis(30));
    assert_eq!(limit.queued(), 0);
}

#[tokio::test(start_paused = true)]
async fn queued_requests_are_served_in_arrival_order_before_new_ones() {
    let limit = Arc::new(ConcurrencyLimit::new(settings(1, 2)));
    let held = limit.acquire(None).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for n in 0..2 {
        let (shared, tx) = (limit.clone(), tx.clone());
        tokio::spawn(async move {
            let _permit = shared.acquire(None).await.unwrap();
            tx.send(n).unwrap();
            advance(Duration::from_millis(1)).await;
        });
        while limit.queued() <= n {
            tokio::task::yield_now().await;
        }
    }
    drop(held);
    assert_eq!((rx.recv().await, rx.recv().await), (Some(0), Some(1)));
}

fn adaptive(initial: usize, min: usize, max: usize) -> ConcurrencyLimit {
    let moves = AdaptiveSettings { initial, min, max, tolerance: 1.5 };
    ConcurrencyLimit::adaptive(settings(initial, 0), AdaptiveLimit::new(moves))
}

/// Runs `rounds` rounds of as many concurrent requests as the limit allows, each taking `latency`.
async fn saturate(limit: &ConcurrencyLimit, rounds: usize, latency: Duration) {
    for _ in 0..rounds {
        let mut permits = Vec::new();
        while let Ok(permit) = limit.acquire(None).await {
            permits.push(permit);
        }
        advance(latency).await;
        drop(permits);
    }
}

#[tokio::test(start_paused = true)]
async fn an_adaptive_limit_grows_while_latency_is_flat_up_to_its_max() {
    let limit = adaptive(10, 5, 200);
    saturate(&limit, 3, Duration::from_millis(20)).await;
    let grown = limit.limit();
    assert!(grown > 10, "the limit grew: {grown}");
    saturate(&limit, 50, Duration::from_millis(20)).await;
    assert_eq!(limit.limit(), 200);
}

#[tokio::test(start_paused = true)]
async fn an_adaptive_limit_shrinks_when_latency_rises_down_to_its_min() {
    let limit = adaptive(50, 5, 200);
    saturate(&limit, 10, Duration::from_millis(20)).await;
    let before = limit.limit();
    saturate(&limit, 1, Duration::from_millis(200)).await;
    let after = limit.limit();
    assert!(after < before, "latency rose tenfold, so the limit fell: {before} -> {after}");
    saturate(&limit, 30, Duration::from_secs(2)).await;
    assert_eq!(limit.limit(), 5);
}

#[tokio::test(start_paused = true)]
async fn an_idle_adaptive_limit_does_not_grow() {
    let limit = adaptive(20, 1, 200);
    for _ in 0..100 {
        let permit = limit.acquire(None).await.unwrap();
        advance(Duration::from_millis(10)).await;
        drop(permit);
    }
    assert_eq!(limit.limit(), 20);
}
