//! A concurrency limit: at most `limit` requests in flight, a bounded queue of waiters behind them,
//! and a queue timeout. A request that finds the queue full, or waits longer than the queue timeout,
//! is shed. The route and upstream concurrency stages of weir-proxy each hold one.
//!
//! The fast path is one atomic load (is anyone queued?) and one compare-and-swap on the in-flight
//! count; the queue (a [`tokio::sync::Notify`], woken in arrival order) is only touched when the
//! limit is reached. While anyone is queued, new arrivals queue behind them rather than overtake.
//!
//! With an [`adaptive::AdaptiveLimit`] the limit moves with the latency the permits report on
//! release (a release that finds the learner busy skips its sample rather than wait); without one it
//! stays where it was set and no clock is read.

pub mod adaptive;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use adaptive::{AdaptiveLimit, AdaptiveSettings};

/// How a limit is set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitSettings {
    /// Requests in flight at once (the starting point when adaptive).
    pub max_in_flight: usize,
    /// Requests waiting for a slot at once; more are shed.
    pub max_queue: usize,
    /// Longest wait in the queue before a request is shed.
    pub queue_timeout: Duration,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The limit was reached and the queue was full.
    QueueFull,
    /// The request waited the whole queue timeout (or to its own deadline).
    QueueTimeout,
}

/// One limit and its queue, shared by every request it covers.
#[derive(Debug)]
pub struct ConcurrencyLimit {
    in_flight: AtomicUsize,
    queued: AtomicUsize,
    limit: AtomicUsize,
    settings: LimitSettings,
    freed: Notify,
    adaptive: Option<Mutex<AdaptiveLimit>>,
}

impl ConcurrencyLimit {
    /// A fixed limit.
    pub fn new(settings: LimitSettings) -> ConcurrencyLimit {
        ConcurrencyLimit {
            in_flight: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            limit: AtomicUsize::new(settings.max_in_flight.max(1)),
            settings,
            freed: Notify::new(),
            adaptive: None,
        }
    }

    /// A fixed limit, or an adaptive one when `adaptive` is given.
    pub fn with(settings: LimitSettings, adaptive: Option<AdaptiveSettings>) -> ConcurrencyLimit {
        match adaptive {
            Some(moves) => ConcurrencyLimit::adaptive(settings, AdaptiveLimit::new(moves)),
            None => ConcurrencyLimit::new(settings),
        }
    }

    /// A limit that starts at `adaptive`'s initial value and follows latency.
    pub fn adaptive(settings: LimitSettings, adaptive: AdaptiveLimit) -> ConcurrencyLimit {
        let mut limit = ConcurrencyLimit::new(settings);
        limit.limit = AtomicUsize::new(adaptive.limit());
        limit.adaptive = Some(Mutex::new(adaptive));
        limit
    }

    /// Admits a request now, after a wait in the queue, or not at all. The wait ends at the queue
    /// timeout or at `deadline`, whichever comes first.
    pub async fn acquire(&self, deadline: Option<Instant>) -> Result<Permit<'_>, Shed> {
        if let Some(permit) = self.try_admit() {
            return Ok(permit);
        }
        self.enqueue()?;
        let _queued = Dequeue(&self.queued);
        let timeout = Instant::now() + self.settings.queue_timeout;
        let until = deadline.map_or(timeout, |d| d.min(timeout));
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(permit) = self.try_acquire() {
                return Ok(permit);
            }
            if tokio::time::timeout_at(until, freed).await.is_err() {
                return Err(Shed::QueueTimeout);
            }
        }
    }

    /// The fast path: a slot, if one is free and nobody is queued for it.
    pub fn try_admit(&self) -> Option<Permit<'_>> {
        if self.queued.load(Ordering::Acquire) != 0 {
            return None;
        }
        self.try_acquire()
    }

    /// Takes a slot if one is free.
    fn try_acquire(&self) -> Option<Permit<'_>> {
        let limit = self.limit.load(Ordering::Relaxed);
        let taken = self.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1));
        // Only an adaptive limit times its requests: a fixed one skips the clock read.
        let started = self.adaptive.is_some().then(Instant::now);
        taken.ok().map(|before| Permit { limit: self, started, in_flight: before + 1 })
    }

    fn enqueue(&self) -> Result<(), Shed> {
        let max = self.settings.max_queue;
        let joined = self.queued.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1));
        joined.map(drop).map_err(|_| Shed::QueueFull)
    }

    fn release(&self, permit: &Permit<'_>) {
        // A release that finds another one learning skips its sample rather than wait: the averages
        // lose nothing that matters, and no request ever blocks on the lock.
        if let (Some(adaptive), Some(started)) = (&self.adaptive, permit.started)
            && let Ok(mut adaptive) = adaptive.try_lock()
        {
            adaptive.sample(started.elapsed(), permit.in_flight);
            self.limit.store(adaptive.limit(), Ordering::Relaxed);
        }
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.queued.load(Ordering::Acquire) > 0 {
            self.freed.notify_one();
        }
    }

    /// Requests admitted and not yet released.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// The limit now.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }
}

/// Leaves the queue however the wait ends.
struct Dequeue<'a>(&'a AtomicUsize);

impl Drop for Dequeue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A slot in the limit, given back (and, for an adaptive limit, timed) when dropped.
#[derive(Debug)]
pub struct Permit<'a> {
    limit: &'a ConcurrencyLimit,
    /// When it was admitted, for an adaptive limit.
    started: Option<Instant>,
    /// Requests in flight when this one was admitted, itself included.
    in_flight: usize,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.limit.release(self);
    }
}

#[cfg(test)]
mod tests;
