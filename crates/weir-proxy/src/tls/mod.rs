//! TLS termination on listeners: the first stage of a connection on a TLS listener, between accept
//! and the HTTP server. A [`TlsListener`] holds the listener's rustls configuration (certificates by
//! SNI, ALPN, versions, client verification) behind an `ArcSwap`, so new certificates serve new
//! connections without a rebind, while the session cache and ticketer carry across rebuilds and
//! resumption keeps working. [`handshake`] runs one handshake and says what it settled.
//! [`upstream`] builds the client side for upstreams with `tls`.

mod build;
mod files;
pub mod handshake;
pub mod identity;
pub mod sni;
pub mod upstream;
pub mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use weir_config::{Config, ListenerTls};
use weir_telemetry::{Metrics, TlsMetrics};

use build::{Resumption, server_config};
pub use handshake::TlsInfo;
pub use identity::ClientIdentity;
pub use watch::TlsWatch;

/// Why a listener's TLS state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{field}: cannot read {}: {source}", .path.display())]
    Read {
        field: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{field}: {}: {what}", .path.display())]
    Invalid { field: String, path: PathBuf, what: String },
    #[error("{field}: {what}")]
    Settings { field: String, what: String },
}

impl TlsError {
    pub(crate) fn invalid(field: &str, path: &std::path::Path, what: String) -> TlsError {
        TlsError::Invalid { field: field.into(), path: path.into(), what }
    }
}

/// The process's crypto provider (aws-lc-rs), installed as the rustls default on first use. `weir`
/// calls this once at start-up, before anything builds a TLS configuration.
pub fn crypto_provider() -> &'static Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        // Another part of the process may have installed one first; use whichever is the default.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
    })
}

/// One TLS listener's serving state.
pub struct TlsListener {
    name: String,
    /// Where the settings sit in the configuration, such as `listeners[0].tls`, for errors.
    field: String,
    server: ArcSwap<ServerConfig>,
    /// The settings now serving, with a hash of their files' content as last read.
    settings: Mutex<(ListenerTls, u64)>,
    resumption: Resumption,
    metrics: TlsMetrics,
}

impl TlsListener {
    /// Reads the files and builds the listener's TLS configuration.
    pub fn build(index: usize, name: &str, tls: &ListenerTls, metrics: &Metrics) -> Result<TlsListener, TlsError> {
        let field = format!("listeners[{index}].tls");
        let resumption = Resumption::new(tls, &field)?;
        let (server, expiries) = server_config(&field, tls, &resumption)?;
        let metrics = metrics.tls_listener(name);
        expiries.iter().for_each(|(certificate, not_after)| metrics.certificate_loaded(certificate, *not_after));
        Ok(TlsListener {
            name: name.into(),
            server: ArcSwap::new(server),
            settings: Mutex::new((tls.clone(), build::files_hash(tls))),
            resumption,
            metrics,
            field,
        })
    }

    /// The configuration a new connection's handshake uses.
    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        self.server.load_full()
    }

    pub(crate) fn metrics(&self) -> &TlsMetrics {
        &self.metrics
    }

    /// How long a handshake may take.
    pub(crate) fn handshake_timeout(&self) -> std::time::Duration {
        lock(&self.settings).0.handshake_timeout.0
    }

    /// Builds the configuration for new settings without putting it in service.
    fn prepare(&self, tls: &ListenerTls) -> Result<Prepared, TlsError> {
        let (server, expiries) = server_config(&self.field, tls, &self.resumption)?;
        Ok(Prepared { server, expiries, settings: tls.clone() })
    }

    fn commit(&self, prepared: Prepared) {
        let hash = build::files_hash(&prepared.settings);
        *lock(&self.settings) = (prepared.settings, hash);
        self.server.store(prepared.server);
        for (certificate, not_after) in &prepared.expiries {
            self.metrics.certificate_loaded(certificate, *not_after);
        }
    }

    /// Reads the files again when their content changed, and serves them to new connections; on a
    /// failure the previous certificates keep serving, and the failure is logged and counted.
    fn reload_files(&self) {
        let settings = lock(&self.settings).0.clone();
        if build::files_hash(&settings) == lock(&self.settings).1 {
            return;
        }
        match self.prepare(&settings) {
            Ok(prepared) => {
                self.commit(prepared);
                self.metrics.reload_succeeded();
                tracing::info!(listener = %self.name, "TLS certificates reloaded");
            }
            Err(error) => {
                self.metrics.reload_failed();
                tracing::error!(listener = %self.name, %error, "TLS certificates not reloaded; the previous ones serve");
            }
        }
    }

    /// The files whose directories are watched, when the settings ask for it.
    fn watched_files(&self) -> Vec<PathBuf> {
        let settings = &lock(&self.settings).0;
        if settings.watch { settings.files().cloned().collect() } else { Vec::new() }
    }
}

/// A listener's new TLS configuration, built and waiting to be put in service.
struct Prepared {
    server: Arc<ServerConfig>,
    expiries: build::Expiries,
    settings: ListenerTls,
}

/// Every TLS listener's state, by listener name.
#[derive(Default)]
pub struct TlsListeners {
    by_name: Mutex<BTreeMap<String, Arc<TlsListener>>>,
    /// Held while settings are rebuilt, so a file reload never puts back settings that a
    /// configuration reload replaced while it was reading.
    rebuilding: Mutex<()>,
}

/// A reload's TLS state, built and checked, waiting to be put in service: the TLS state of every
/// TLS listener of the new configuration (kept, rebuilt around the same session cache, or new).
pub(crate) struct TlsPlan<'a> {
    _rebuilding: std::sync::MutexGuard<'a, ()>,
    by_name: BTreeMap<String, Arc<TlsListener>>,
    prepared: Vec<(Arc<TlsListener>, Prepared)>,
}

impl TlsPlan<'_> {
    /// The TLS state the listener called `name` will serve with, if it terminates TLS.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<TlsListener>> {
        self.by_name.get(name).cloned()
    }
}

impl TlsListeners {
    /// Builds the TLS state of every TLS listener; `weir validate` runs this to check the files.
    pub fn build(config: &Config, metrics: &Metrics) -> Result<TlsListeners, TlsError> {
        let mut by_name = BTreeMap::new();
        for (index, listener) in config.listeners.iter().enumerate() {
            if let Some(tls) = &listener.tls {
                by_name
                    .insert(listener.name.clone(), Arc::new(TlsListener::build(index, &listener.name, tls, metrics)?));
            }
        }
        Ok(TlsListeners { by_name: Mutex::new(by_name), rebuilding: Mutex::new(()) })
    }

    /// The TLS state of the listener called `name`, if it terminates TLS.
    pub fn get(&self, name: &str) -> Option<Arc<TlsListener>> {
        lock(&self.by_name).get(name).cloned()
    }

    /// Builds a reloaded configuration's TLS state without putting it in service: a listener
    /// whose settings changed gets a new rustls configuration around its session cache, a listener
    /// that turns TLS on gets new state. Fails, changing nothing, when any files do not load.
    pub(crate) fn plan(&self, config: &Config, metrics: &Metrics) -> Result<TlsPlan<'_>, TlsError> {
        let rebuilding = lock(&self.rebuilding);
        let current = lock(&self.by_name).clone();
        let (mut by_name, mut prepared) = (BTreeMap::new(), Vec::new());
        for (index, listener) in config.listeners.iter().enumerate() {
            let Some(tls) = &listener.tls else { continue };
            let state = match current.get(&listener.name) {
                Some(current) => {
                    if lock(&current.settings).0 != *tls {
                        prepared.push((current.clone(), current.prepare(tls)?));
                    }
                    current.clone()
                }
                None => Arc::new(TlsListener::build(index, &listener.name, tls, metrics)?),
            };
            by_name.insert(listener.name.clone(), state);
        }
        Ok(TlsPlan { _rebuilding: rebuilding, by_name, prepared })
    }

    /// Puts a planned TLS state in service: new connections get the new certificates.
    pub(crate) fn commit(&self, plan: TlsPlan<'_>) -> usize {
        let changed = plan.prepared.len();
        plan.prepared.into_iter().for_each(|(listener, prepared)| listener.commit(prepared));
        *lock(&self.by_name) = plan.by_name;
        changed
    }

    /// Re-reads every listener's files whose content changed.
    pub fn reload_files(&self) {
        let _rebuilding = lock(&self.rebuilding);
        let listeners: Vec<_> = lock(&self.by_name).values().cloned().collect();
        listeners.iter().for_each(|listener| listener.reload_files());
    }

    fn watched_files(&self) -> Vec<PathBuf> {
        lock(&self.by_name).values().flat_map(|listener| listener.watched_files()).collect()
    }
}

impl crate::server::Gateway {
    /// The TLS listeners' state, which certificate reloads replace.
    pub fn tls(&self) -> &TlsListeners {
        &self.tls
    }

    /// Watches the TLS files named now (the first call starts the watch).
    pub(crate) fn watch_tls_files(&self) {
        match self.tls_watch.get() {
            Some(watch) => watch.refresh(),
            None => {
                if let Some(watch) = TlsWatch::start(self.tls.clone()) {
                    let _ = self.tls_watch.set(watch);
                }
            }
        }
    }
}

/// A poisoned lock only means a reload panicked half-way; the settings it guards are whole.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
