//! An adaptive concurrency limit that follows latency, as a gradient: it compares the latency of
//! recent requests (a short average) with the latency the upstream usually has (a long average).
//! While they agree, the limit grows by about its square root at a time; when recent latency rises
//! past `tolerance` times the usual, the limit is multiplied by the ratio (never by less than one
//! half), so a queue building up upstream is drained. The limit stays within `min..=max`.
//!
//! Nothing here ever refuses traffic to take a measurement: the long average is the baseline, so
//! there is no "minimum latency" probe window that drops the limit on purpose. The long average
//! follows the short one when the short is much lower (the upstream became faster), so a baseline
//! taken while the upstream was overloaded does not hold the limit down.

use std::time::Duration;

/// How an adaptive limit moves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveSettings {
    pub initial: usize,
    pub min: usize,
    pub max: usize,
    /// How much slower than usual recent requests may be before the limit shrinks (at least 1).
    pub tolerance: f64,
}

/// Weight of a new sample in the short average (about the last 10 requests).
const SHORT_WEIGHT: f64 = 2.0 / 11.0;
/// Weight of a new sample in the long average (about the last 500 requests).
const LONG_WEIGHT: f64 = 2.0 / 501.0;
/// Share of each step the limit moves, so one odd sample cannot swing it.
const SMOOTHING: f64 = 0.2;

/// The limit and the latency averages it follows.
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    settings: AdaptiveSettings,
    limit: f64,
    short: Option<f64>,
    long: Option<f64>,
}

impl AdaptiveLimit {
    pub fn new(settings: AdaptiveSettings) -> AdaptiveLimit {
        let min = settings.min.max(1);
        let settings = AdaptiveSettings { min, max: settings.max.max(min), ..settings };
        let limit = settings.initial.clamp(settings.min, settings.max) as f64;
        AdaptiveLimit { settings, limit, short: None, long: None }
    }

    /// The limit now, in whole requests.
    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    /// Learns from one finished request: how long it took, and how many requests were in flight when
    /// it was admitted (itself included).
    pub fn sample(&mut self, latency: Duration, in_flight: usize) {
        let rtt = latency.as_secs_f64().max(1e-6);
        let short = average(self.short, rtt, SHORT_WEIGHT);
        let mut long = average(self.long, rtt, LONG_WEIGHT);
        if long > 2.0 * short {
            long = 0.95 * long + 0.05 * short;
        }
        (self.short, self.long) = (Some(short), Some(long));
        let gradient = (self.settings.tolerance.max(1.0) * long / short).clamp(0.5, 1.0);
        // A limit that is not being used says nothing about capacity: only shrink then.
        let used = in_flight as f64 * 2.0 >= self.limit;
        if gradient >= 1.0 && !used {
            return;
        }
        let target = self.limit * gradient + self.limit.sqrt();
        let next = self.limit * (1.0 - SMOOTHING) + target * SMOOTHING;
        let next = if gradient < 1.0 { next.min(self.limit) } else { next };
        self.limit = next.clamp(self.settings.min as f64, self.settings.max as f64);
    }
}

fn average(previous: Option<f64>, sample: f64, weight: f64) -> f64 {
    previous.map_or(sample, |avg| avg * (1.0 - weight) + sample * weight)
}
