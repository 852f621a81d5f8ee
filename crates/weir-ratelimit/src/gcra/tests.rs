use super::*;

const SECOND: u64 = 1_000_000_000;
const MILLI: u64 = 1_000_000;

/// Sends `n` requests at `now`, returning how many were allowed and the last decision.
fn send(tat: &mut u64, now: u64, quota: &Quota, n: u32) -> (u32, Decision) {
    let mut allowed = 0;
    let mut last = None;
    for _ in 0..n {
        let (decision, next) = decide(*tat, now, quota);
        *tat = next;
        allowed += u32::from(decision.allowed);
        last = Some(decision);
    }
    (allowed, last.expect("n > 0"))
}

#[test]
fn a_full_bucket_allows_exactly_the_burst_at_once() {
    let quota = Quota::new(10, SECOND, 5);
    let mut tat = 0;
    let now = 1000 * SECOND;
    let (allowed, last) = send(&mut tat, now, &quota, 8);
    assert_eq!(allowed, 5);
    assert!(!last.allowed);
    // The sixth would pass one interval (100 ms) later.
    assert_eq!(last.retry_after, 100 * MILLI);
    assert_eq!(last.reset_after, 500 * MILLI);
}

#[test]
fn remaining_counts_down_through_a_burst() {
    let quota = Quota::new(10, SECOND, 3);
    let mut tat = 0;
    let remaining: Vec<u32> = (0..3).map(|_| send(&mut tat, SECOND, &quota, 1).1.remaining).collect();
    assert_eq!(remaining, [2, 1, 0]);
}

#[test]
fn steady_traffic_at_the_rate_is_always_allowed() {
    let quota = Quota::new(100, SECOND, 1);
    let mut tat = 0;
    for i in 0..10_000 {
        let (decision, next) = decide(tat, SECOND + i * 10 * MILLI, &quota);
        assert!(decision.allowed, "request {i} refused");
        tat = next;
    }
}

#[test]
fn traffic_above_the_rate_passes_at_the_rate_over_time() {
    let quota = Quota::new(100, SECOND, 10);
    let mut tat = 0;
    let mut allowed = 0;
    // 1000 requests per second over 9.999 s: the burst, then one per 10 ms interval.
    for i in 0..10_000 {
        let (decision, next) = decide(tat, SECOND + i * MILLI, &quota);
        allowed += u64::from(decision.allowed);
        tat = next;
    }
    assert_eq!(allowed, 10 + 999);
}

#[test]
fn the_bucket_refills_one_request_per_interval() {
    let quota = Quota::new(2, SECOND, 4);
    let mut tat = 0;
    let start = 50 * SECOND;
    assert_eq!(send(&mut tat, start, &quota, 10).0, 4);
    // Half a second later one interval has passed: one request.
    assert_eq!(send(&mut tat, start + SECOND / 2, &quota, 10).0, 1);
    // Four intervals after that request the bucket is whole again, and not a moment before.
    assert!(!is_full(tat, start + SECOND / 2 + 2 * SECOND - 1));
    assert!(is_full(tat, start + SECOND / 2 + 2 * SECOND));
    assert_eq!(send(&mut tat, start + 3 * SECOND, &quota, 10).0, 4);
}

#[test]
fn retry_after_is_the_wait_for_the_next_allowed_request() {
    let quota = Quota::new(1, 60 * SECOND, 2);
    let mut tat = 0;
    let start = 10 * SECOND;
    send(&mut tat, start, &quota, 2);
    let (_, refused) = send(&mut tat, start + 15 * SECOND, &quota, 1);
    assert!(!refused.allowed);
    assert_eq!(refused.retry_after, 45 * SECOND);
    // Waiting exactly that long is enough.
    assert!(decide(tat, start + 60 * SECOND, &quota).0.allowed);
    assert!(!decide(tat, start + 60 * SECOND - 1, &quota).0.allowed);
}

#[test]
fn a_refused_request_costs_nothing() {
    let quota = Quota::new(1, SECOND, 1);
    let (first, tat) = decide(0, SECOND, &quota);
    assert!(first.allowed);
    let (refused, after) = decide(tat, SECOND, &quota);
    assert!(!refused.allowed);
    assert_eq!(after, tat);
}

#[test]
fn quotas_never_have_a_zero_interval() {
    let quota = Quota::new(u64::MAX, 1, 1);
    assert_eq!(quota.interval(), 1);
    assert_eq!(Quota::new(6000, 60 * SECOND, 1).interval(), 10 * MILLI);
}
