//! Reloads: one path for every trigger (SIGHUP, `POST /reload`, the file watcher). Read the file,
//! parse and validate it, build a new [`Snapshot`] around the clusters and rate-limit buckets that
//! can be kept, start the fresh clusters, swap. Requests in flight finish on the snapshot they
//! loaded; a file that fails any step changes nothing, and the failure is logged, counted and kept
//! for the admin API.

pub mod diff;
pub mod registry;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use weir_config::{Config, ConfigError, Format, parse_str};

use crate::server::Gateway;
use crate::snapshot::{Snapshot, SnapshotError};
use crate::stages::rate_limit::carry::LimiterRegistry;
pub use diff::ConfigDiff;
use registry::ClusterRegistry;

/// What asked for a reload; the file watcher skips content it has seen already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Watch,
    Signal,
    Admin,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Watch => "file_watch",
            Trigger::Signal => "sighup",
            Trigger::Admin => "admin",
        }
    }
}

/// What a reload did.
#[derive(Debug)]
pub enum Reloaded {
    /// The new configuration is serving; this is what changed.
    Applied(Box<ConfigDiff>),
    /// The watcher saw the same content again; nothing was done.
    Unchanged,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("weir was started without a configuration file to reload from")]
    NoSource,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("{0}")]
    NeedsRestart(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Listener(#[from] crate::listeners::BindError),
    #[error("the reload stopped before it finished")]
    Interrupted,
}

/// The reload side of the gateway: the serving configuration and what carries across reloads.
pub struct ReloadState {
    source: Mutex<Option<PathBuf>>,
    config: ArcSwap<Config>,
    /// Held for a whole reload, so reloads apply one at a time.
    applying: Mutex<Applying>,
    last_error: Mutex<Option<String>>,
}

struct Applying {
    registry: ClusterRegistry,
    /// Rate-limit rules' local limiters, so unchanged rules keep their buckets.
    limiters: LimiterRegistry,
    /// The content hash of the file as last read, applied or not.
    last_seen: Option<u64>,
    /// The server runs, so a reload starts its new clusters (before that, the server starts them all).
    serving: bool,
}

impl ReloadState {
    pub(crate) fn new(config: Config, registry: ClusterRegistry, limiters: LimiterRegistry) -> ReloadState {
        ReloadState {
            source: Mutex::new(None),
            config: ArcSwap::from_pointee(config),
            applying: Mutex::new(Applying { registry, limiters, last_seen: None, serving: false }),
            last_error: Mutex::new(None),
        }
    }

    /// The configuration now serving.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The file reloads read; the watcher watches its directory. The file's content now counts as
    /// seen, so the watcher does not reload what is already serving.
    pub fn set_source(&self, path: PathBuf) {
        if let Ok(text) = std::fs::read_to_string(&path) {
            lock(&self.applying).last_seen = Some(content_hash(&text));
        }
        *lock(&self.source) = Some(path);
    }

    pub fn source(&self) -> Option<PathBuf> {
        lock(&self.source).clone()
    }

    /// Why the last reload failed, until one succeeds.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }
}

impl Gateway {
    /// Reloads from the configuration file on a blocking thread (parsing, resolving and compiling
    /// thousands of routes must not hold up a runtime worker).
    pub async fn reload(self: &Arc<Self>, trigger: Trigger) -> Result<Reloaded, ReloadError> {
        let gateway = self.clone();
        let result = tokio::task::spawn_blocking(move || gateway.reload_file(trigger))
            .await
            .unwrap_or(Err(ReloadError::Interrupted));
        // Removed listeners' sockets are closed by the time the reload answers.
        self.listeners().stopped().await;
        self.record(trigger, &result);
        result
    }

    /// Applies a configuration given whole (tests and embedders); counted like any reload.
    pub fn apply(&self, config: Config) -> Result<ConfigDiff, ReloadError> {
        let mut applying = lock(&self.reload_state().applying);
        let result = self.swap_in(&mut applying, config);
        drop(applying);
        let result = result.map(|diff| Reloaded::Applied(Box::new(diff)));
        self.record(Trigger::Admin, &result);
        result.map(|reloaded| match reloaded {
            Reloaded::Applied(diff) => *diff,
            Reloaded::Unchanged => ConfigDiff::default(),
        })
    }

    /// What reloading the configuration file would change, without changing anything.
    pub fn diff_source(&self) -> Result<ConfigDiff, ReloadError> {
        let path = self.reload_state().source().ok_or(ReloadError::NoSource)?;
        let (_, config) = read_config(&path)?;
        Ok(ConfigDiff::between(&self.reload_state().config(), &config))
    }

    /// Starts the serving snapshot's clusters, once, as the server begins; later reloads start
    /// the clusters they add. Needs a Tokio runtime.
    pub(crate) fn start_clusters(&self) {
        let mut applying = lock(&self.reload_state().applying);
        if !applying.serving {
            self.snapshot().start();
            applying.serving = true;
        }
    }

    fn reload_file(&self, trigger: Trigger) -> Result<Reloaded, ReloadError> {
        let path = self.reload_state().source().ok_or(ReloadError::NoSource)?;
        let mut applying = lock(&self.reload_state().applying);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        let hash = content_hash(&text);
        if trigger == Trigger::Watch && applying.last_seen == Some(hash) {
            return Ok(Reloaded::Unchanged);
        }
        applying.last_seen = Some(hash);
        let config = parse_file(&path, &text)?;
        self.swap_in(&mut applying, config).map(|diff| Reloaded::Applied(Box::new(diff)))
    }

    fn swap_in(&self, applying: &mut Applying, config: Config) -> Result<ConfigDiff, ReloadError> {
        let diff = ConfigDiff::between(&self.reload_state().config(), &config);
        if let Some(reason) = diff.needs_restart() {
            return Err(ReloadError::NeedsRestart(reason));
        }
        let set = applying.registry.build(&config)?;
        let mut limiters = applying.limiters.rebuild();
        let experiments = self.snapshot().faults.experiments.clone();
        let snapshot =
            Snapshot::build_with_clusters(&config, self.metrics(), set.clusters, &mut limiters, experiments)?;
        let limiters = limiters.finish();
        // Certificates are read and checked, and new listeners bound, before anything is swapped.
        let tls = self.tls().plan(&config, self.metrics())?;
        let listeners = self.listeners().plan(&config, &tls, self.metrics())?;
        let listeners_changed = listeners.changes_anything();
        // Nothing fails from here on.
        snapshot.faults.experiments.configure(&config.fault_injection);
        let tls_changed = self.tls().commit(tls) > 0;
        if applying.serving {
            set.fresh.iter().for_each(|cluster| cluster.start());
        }
        listeners.retire(&self.snapshot());
        self.replace_snapshot(snapshot);
        self.listeners().commit(listeners);
        self.reload_state().config.store(Arc::new(config));
        applying.registry = set.registry;
        applying.limiters = limiters;
        if applying.serving && (tls_changed || listeners_changed) {
            self.watch_tls_files();
        }
        Ok(diff)
    }

    fn record(&self, trigger: Trigger, result: &Result<Reloaded, ReloadError>) {
        let trigger = trigger.as_str();
        match result {
            Ok(Reloaded::Applied(diff)) => {
                self.metrics().reloads().succeeded();
                *lock(&self.reload_state().last_error) = None;
                let (routes, upstreams) = (&diff.routes, &diff.upstreams);
                tracing::info!(
                    trigger,
                    routes_added = routes.added.len(),
                    routes_removed = routes.removed.len(),
                    routes_changed = routes.changed.len(),
                    upstreams_added = upstreams.added.len(),
                    upstreams_removed = upstreams.removed.len(),
                    upstreams_changed = upstreams.changed.len(),
                    tls_changed = diff.tls_changed.len(),
                    "configuration reloaded"
                );
            }
            Ok(Reloaded::Unchanged) => tracing::debug!(trigger, "configuration file unchanged; nothing to reload"),
            Err(error) => {
                self.metrics().reloads().failed();
                *lock(&self.reload_state().last_error) = Some(error.to_string());
                tracing::error!(trigger, %error, "reload refused; the previous configuration keeps serving");
            }
        }
    }
}

/// Reads and validates a configuration file, with a hash of its content.
pub fn read_config(path: &Path) -> Result<(u64, Config), ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    Ok((content_hash(&text), parse_file(path, &text)?))
}

fn parse_file(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let format = Format::from_path(path).ok_or_else(|| ConfigError::UnknownFormat { path: path.to_path_buf() })?;
    parse_str(text, format, &path.display().to_string())
}

fn content_hash(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// A poisoned lock only means a reload panicked half-way; what it guards is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
