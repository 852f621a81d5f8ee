//! The breaker's state machine under paused time.

use super::*;

const SETTINGS: BreakerSettings = BreakerSettings {
    failure_rate: 50,
    slow_call_rate: 0,
    slow_call_duration: Duration::from_secs(1),
    window: Duration::from_secs(10),
    min_calls: 10,
    open_for: Duration::from_secs(5),
    max_open_for: Duration::from_secs(30),
    half_open_probes: 2,
};

fn call(breaker: &CircuitBreaker, result: CallResult) -> Result<(), Refused> {
    let permit = breaker.admit(Instant::now())?;
    breaker.record(permit, result, Duration::from_millis(1), Instant::now());
    Ok(())
}

fn trip(breaker: &CircuitBreaker) {
    while breaker.state() != BreakerState::Open {
        call(breaker, CallResult::Failure).unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn it_opens_only_past_the_minimum_calls_and_the_rate() {
    let breaker = CircuitBreaker::new(SETTINGS);
    for _ in 0..9 {
        call(&breaker, CallResult::Failure).unwrap();
    }
    assert_eq!(breaker.state(), BreakerState::Closed, "nine calls are under min_calls");
    let breaker = CircuitBreaker::new(SETTINGS);
    for i in 0..40 {
        let result = if i % 3 == 0 { CallResult::Failure } else { CallResult::Success };
        call(&breaker, result).unwrap();
    }
    assert_eq!(breaker.state(), BreakerState::Closed, "a third failing is under 50%");
    for _ in 0..40 {
        let _ = call(&breaker, CallResult::Failure);
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(breaker.trips_total(), 1);
}

#[tokio::test(start_paused = true)]
async fn open_refuses_with_the_time_left_then_probes_close_it() {
    let breaker = CircuitBreaker::new(SETTINGS);
    assert!(!breaker.is_refusing(Instant::now()));
    trip(&breaker);
    assert!(breaker.is_refusing(Instant::now()));
    assert_eq!(call(&breaker, CallResult::Success), Err(Refused { retry_after: Duration::from_secs(5) }));
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(call(&breaker, CallResult::Success), Err(Refused { retry_after: Duration::from_secs(3) }));
    tokio::time::advance(Duration::from_secs(3)).await;
    assert!(!breaker.is_refusing(Instant::now()), "time for probes");
    let first = breaker.admit(Instant::now()).unwrap();
    let second = breaker.admit(Instant::now()).unwrap();
    assert_eq!((first, second), (Permit::Probe, Permit::Probe));
    assert!(breaker.admit(Instant::now()).is_err(), "only two probes at a time");
    breaker.record(first, CallResult::Success, Duration::ZERO, Instant::now());
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    breaker.record(second, CallResult::Success, Duration::ZERO, Instant::now());
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_for_longer_up_to_the_cap() {
    let breaker = CircuitBreaker::new(SETTINGS);
    trip(&breaker);
    let mut waits = Vec::new();
    for _ in 0..4 {
        let Err(refused) = call(&breaker, CallResult::Success) else { panic!("open") };
        waits.push(refused.retry_after.as_secs());
        tokio::time::advance(refused.retry_after).await;
        call(&breaker, CallResult::Failure).unwrap();
        assert_eq!(breaker.state(), BreakerState::Open);
    }
    assert_eq!(waits, vec![5, 10, 20, 30]);
}

#[tokio::test(start_paused = true)]
async fn closing_forgets_the_old_window_and_the_trips() {
    let breaker = CircuitBreaker::new(SETTINGS);
    trip(&breaker);
    tokio::time::advance(Duration::from_secs(5)).await;
    call(&breaker, CallResult::Success).unwrap();
    call(&breaker, CallResult::Success).unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
    call(&breaker, CallResult::Failure).unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed, "the failures before the trip are forgotten");
    trip(&breaker);
    let Err(refused) = call(&breaker, CallResult::Success) else { panic!("open") };
    assert_eq!(refused.retry_after, Duration::from_secs(5), "a new first trip");
}

#[tokio::test(start_paused = true)]
async fn old_failures_leave_the_window() {
    let breaker = CircuitBreaker::new(SETTINGS);
    for _ in 0..8 {
        call(&breaker, CallResult::Failure).unwrap();
    }
    tokio::time::advance(Duration::from_secs(11)).await;
    for _ in 0..8 {
        call(&breaker, CallResult::Success).unwrap();
    }
    call(&breaker, CallResult::Failure).unwrap();
    call(&breaker, CallResult::Failure).unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed, "2 of 10 in the window");
}

#[tokio::test(start_paused = true)]
async fn slow_calls_open_it_too() {
    let breaker = CircuitBreaker::new(BreakerSettings { failure_rate: 0, slow_call_rate: 50, ..SETTINGS });
    for _ in 0..10 {
        let permit = breaker.admit(Instant::now()).unwrap();
        breaker.record(permit, CallResult::Success, Duration::from_secs(2), Instant::now());
    }
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn ignored_results_and_released_probes_count_for_nothing() {
    let breaker = CircuitBreaker::new(SETTINGS);
    for _ in 0..100 {
        call(&breaker, CallResult::Ignored).unwrap();
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    trip(&breaker);
    tokio::time::advance(Duration::from_secs(5)).await;
    let probe = breaker.admit(Instant::now()).unwrap();
    breaker.release(probe);
    let again = breaker.admit(Instant::now()).unwrap();
    breaker.record(again, CallResult::Ignored, Duration::ZERO, Instant::now());
    assert_eq!(breaker.admit(Instant::now()), Ok(Permit::Probe));
}
