//! Run-time fault experiments: a fault aimed at a route or an upstream, started through the admin
//! API with a required time-to-live, ended by itself when that passes (or when deleted). No reload
//! is involved: the registry lives beside the snapshots and every snapshot's requests read it.
//!
//! Requests see a running experiment through one atomic load while none run, and one `ArcSwap`
//! load while some do. A request checks each experiment's expiry itself, so one that has ended
//! injects nothing even before the reaper removes it and logs its end.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio::time::Instant;
use weir_config::fault::{ExperimentSpec, FaultInjection, FaultPlace, fault_problems};
use weir_telemetry::{ExperimentMetrics, Metrics};
use weir_upstream::BalanceRng;

use super::persist::{self, Saved};
use super::{Fault, compile_fault};

/// What an experiment aims at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Route(Arc<str>),
    Upstream(Arc<str>),
}

/// A running experiment.
pub struct Experiment {
    pub id: String,
    pub target: Target,
    pub fault: Fault,
    pub persist: bool,
    pub started: SystemTime,
    pub expires: SystemTime,
    expires_at: Instant,
    /// The experiment as it was posted: listed back, and kept in the state file.
    pub document: serde_json::Value,
}

impl Experiment {
    /// Whether the experiment injects into the route named `name` at `now`.
    pub fn aims_at_route(&self, name: &str, now: Instant) -> bool {
        matches!(&self.target, Target::Route(route) if route.as_ref() == name) && now < self.expires_at
    }

    /// Whether the experiment injects into calls to the upstream named `name` at `now`.
    pub fn aims_at_upstream(&self, name: &str, now: Instant) -> bool {
        matches!(&self.target, Target::Upstream(upstream) if upstream.as_ref() == name) && now < self.expires_at
    }

    /// Time left before it ends by itself.
    pub fn remaining(&self) -> Duration {
        self.expires_at.saturating_duration_since(Instant::now())
    }
}

/// Why an experiment was not started, or not found.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("the experiment is not valid JSON of the documented shape: {0}")]
    Malformed(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} experiments are running, the most fault_injection.max_experiments allows")]
    TooMany(usize),
    #[error("no experiment with id {0:?}")]
    NotFound(String),
}

/// The limits the configuration sets, replaced on reload.
struct Limits {
    max_experiments: usize,
    max_ttl: Duration,
    state_file: Option<PathBuf>,
}

/// The process's experiments.
pub struct Experiments {
    running: AtomicUsize,
    list: ArcSwap<Vec<Arc<Experiment>>>,
    /// Held while the list changes, so changes apply one at a time.
    limits: Mutex<Limits>,
    wake: Notify,
    ids: BalanceRng,
    metrics: Arc<Metrics>,
    events: ExperimentMetrics,
}

const STARTED: usize = 0;
const EXPIRED: usize = 1;
const DELETED: usize = 2;

impl Experiments {
    pub fn new(settings: &FaultInjection, metrics: Arc<Metrics>) -> Arc<Experiments> {
        let events = metrics.fault_experiments();
        Arc::new(Experiments {
            running: AtomicUsize::new(0),
            list: ArcSwap::from_pointee(Vec::new()),
            limits: Mutex::new(limits_of(settings)),
            wake: Notify::new(),
            ids: BalanceRng::from_entropy(),
            metrics,
            events,
        })
    }

    /// Takes the limits of a newly loaded configuration; running experiments carry on.
    pub fn configure(&self, settings: &FaultInjection) {
        *self.lock() = limits_of(settings);
    }

    /// The running experiments, or `None` when there are none (the common case, one atomic load).
    pub fn running(&self) -> Option<Arc<Vec<Arc<Experiment>>>> {
        (self.running.load(Ordering::Acquire) > 0).then(|| self.list.load_full())
    }

    /// Every experiment not yet removed, oldest first.
    pub fn list(&self) -> Arc<Vec<Arc<Experiment>>> {
        self.list.load_full()
    }

    /// Starts the experiment `document` describes. `known` says whether its target exists.
    pub fn start(&self, document: &[u8], known: impl Fn(&Target) -> bool) -> Result<Arc<Experiment>, ExperimentError> {
        let value: serde_json::Value =
            serde_json::from_slice(document).map_err(|e| ExperimentError::Malformed(e.to_string()))?;
        let spec = ExperimentSpec::from_json(value.clone()).map_err(|e| ExperimentError::Malformed(e.to_string()))?;
        let target = target_of(&spec)?;
        if !known(&target) {
            let (kind, name) = describe(&target);
            return Err(ExperimentError::Invalid(format!("no {kind} named {name:?} is configured")));
        }
        let limits = self.lock();
        if spec.ttl.0.is_zero() || spec.ttl.0 > limits.max_ttl {
            return Err(ExperimentError::Invalid(format!(
                "ttl must be above zero and at most {} (fault_injection.max_ttl)",
                humantime::format_duration(limits.max_ttl)
            )));
        }
        if spec.persist && limits.state_file.is_none() {
            return Err(ExperimentError::Invalid(
                "persist needs fault_injection.state_file in the configuration".into(),
            ));
        }
        let id = format!("{:016x}", self.ids.next_u64());
        self.admit(limits, spec, target, id, value, SystemTime::now())
    }

    /// Adds a checked experiment, started at `started`.
    fn admit(
        &self,
        limits: std::sync::MutexGuard<'_, Limits>,
        spec: ExperimentSpec,
        target: Target,
        id: String,
        document: serde_json::Value,
        started: SystemTime,
    ) -> Result<Arc<Experiment>, ExperimentError> {
        let fault = &spec.fault;
        let place = if matches!(target, Target::Route(_)) { FaultPlace::Route } else { FaultPlace::Upstream };
        if let Some((field, message)) = fault_problems(fault, place).into_iter().next() {
            let at = if field.is_empty() { String::new() } else { format!("{field}: ") };
            return Err(ExperimentError::Invalid(format!("{at}{message}")));
        }
        let current = self.list.load_full();
        if current.len() >= limits.max_experiments {
            return Err(ExperimentError::TooMany(current.len()));
        }
        let counters = {
            let (kind, name) = describe(&target);
            self.metrics.fault_counters(kind, name, "experiment")
        };
        let expires = started + spec.ttl.0;
        let remaining = expires.duration_since(SystemTime::now()).unwrap_or_default();
        let experiment = Arc::new(Experiment {
            id,
            fault: compile_fault(fault, counters),
            target,
            persist: spec.persist,
            started,
            expires,
            expires_at: Instant::now() + remaining,
            document,
        });
        let mut next = current.as_ref().clone();
        next.push(experiment.clone());
        self.replace(next, &limits);
        let (kind, name) = describe(&experiment.target);
        tracing::info!(
            experiment = %experiment.id, target_type = kind, target = name, ttl = ?spec.ttl.0,
            name = spec.name.as_deref().unwrap_or(""), "fault experiment started"
        );
        self.events.event(STARTED);
        self.wake.notify_one();
        Ok(experiment)
    }

    /// Ends an experiment before its time.
    pub fn delete(&self, id: &str) -> Result<(), ExperimentError> {
        let limits = self.lock();
        let current = self.list.load_full();
        let Some(gone) = current.iter().find(|e| e.id == id).cloned() else {
            return Err(ExperimentError::NotFound(id.to_string()));
        };
        self.replace(current.iter().filter(|e| e.id != id).cloned().collect(), &limits);
        self.ended(&gone, DELETED);
        Ok(())
    }

    /// Removes experiments whose time is up; returns when the next one is due.
    fn reap(&self, now: Instant) -> Option<Instant> {
        let limits = self.lock();
        let current = self.list.load_full();
        let (ended, left): (Vec<_>, Vec<_>) = current.iter().cloned().partition(|e| e.expires_at <= now);
        if !ended.is_empty() {
            self.replace(left.clone(), &limits);
            ended.iter().for_each(|e| self.ended(e, EXPIRED));
        }
        left.iter().map(|e| e.expires_at).min()
    }

    /// Ends experiments as their time comes, logging each end. Runs until the task is dropped.
    pub async fn reap_forever(self: Arc<Self>) {
        loop {
            let woken = self.wake.notified();
            match self.reap(Instant::now()) {
                Some(next) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(next) => {}
                        _ = woken => {}
                    }
                }
                None => woken.await,
            }
        }
    }

    /// Starts the experiments kept in the state file whose time is not up. A file that cannot be
    /// read is reported and left alone.
    pub fn restore(&self, known: impl Fn(&Target) -> bool) {
        let Some(path) = self.lock().state_file.clone() else { return };
        let saved = match persist::load(&path) {
            Ok(saved) => saved,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "fault experiments: state file not read");
                return;
            }
        };
        for Saved { id, started, document } in saved {
            let restored = ExperimentSpec::from_json(document.clone())
                .map_err(|e| ExperimentError::Malformed(e.to_string()))
                .and_then(|spec| {
                    let target = target_of(&spec)?;
                    if !known(&target) || started + spec.ttl.0 <= SystemTime::now() {
                        return Err(ExperimentError::Invalid("its target is gone or its time is up".into()));
                    }
                    self.admit(self.lock(), spec, target, id.clone(), document, started)
                });
            if let Err(error) = restored {
                tracing::info!(experiment = %id, %error, "fault experiment not restored");
            }
        }
    }

    fn ended(&self, experiment: &Experiment, event: usize) {
        let (kind, name) = describe(&experiment.target);
        let how = if event == EXPIRED { "expired" } else { "deleted" };
        tracing::info!(experiment = %experiment.id, target_type = kind, target = name, how, "fault experiment ended");
        self.events.event(event);
    }

    /// Puts `next` in service, and rewrites the state file when a kept experiment came or went.
    fn replace(&self, next: Vec<Arc<Experiment>>, limits: &Limits) {
        let before = self.list.swap(Arc::new(next));
        let after = self.list.load();
        self.running.store(after.len(), Ordering::Release);
        self.events.active.set(after.len() as i64);
        let kept_changed = before.iter().filter(|e| e.persist).count() != after.iter().filter(|e| e.persist).count();
        if let (true, Some(path)) = (kept_changed, &limits.state_file) {
            let kept = after.iter().filter(|e| e.persist).map(|e| Saved {
                id: e.id.clone(),
                started: e.started,
                document: e.document.clone(),
            });
            if let Err(error) = persist::save(path, kept.collect()) {
                tracing::warn!(path = %path.display(), %error, "fault experiments: state file not written");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Limits> {
        self.limits.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn limits_of(settings: &FaultInjection) -> Limits {
    Limits {
        max_experiments: settings.max_experiments,
        max_ttl: settings.max_ttl.0,
        state_file: settings.state_file.clone(),
    }
}

fn target_of(spec: &ExperimentSpec) -> Result<Target, ExperimentError> {
    match (&spec.route, &spec.upstream) {
        (Some(route), None) => Ok(Target::Route(route.as_str().into())),
        (None, Some(upstream)) => Ok(Target::Upstream(upstream.as_str().into())),
        _ => Err(ExperimentError::Invalid("name exactly one target: route or upstream".into())),
    }
}

/// The target's type and name, as labelled in metrics and logs.
pub fn describe(target: &Target) -> (&'static str, &str) {
    match target {
        Target::Route(name) => ("route", name),
        Target::Upstream(name) => ("upstream", name),
    }
}
