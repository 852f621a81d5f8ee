//! Reloading certificates when their files change: the directories holding the certificate, key
//! and CA files are watched (not the files: editors and cert-manager write a new file and rename it
//! over the old one, Kubernetes swaps a symlink). Every change leads each TLS listener to re-read
//! its files, and it puts them in service only when their content differs and they load.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;

use super::{TlsListeners, lock};

/// Events closer together than this are one change (a write, a rename and a chmod).
const DEBOUNCE: Duration = Duration::from_millis(200);

type FileWatcher = Debouncer<notify::RecommendedWatcher, RecommendedCache>;

/// The watch over the TLS files' directories; dropping it stops watching.
pub struct TlsWatch {
    watcher: Mutex<FileWatcher>,
    watched: Mutex<BTreeSet<PathBuf>>,
    listeners: Arc<TlsListeners>,
}

impl TlsWatch {
    /// Starts watching the directories of every listener's files. Needs a Tokio runtime. `None`
    /// when no listener asks for watching or the platform's watcher cannot start (logged).
    pub fn start(listeners: Arc<TlsListeners>) -> Option<TlsWatch> {
        if listeners.watched_files().is_empty() {
            return None;
        }
        // One pending reload is enough: a reload reads the files as they are when it runs.
        let (changed, mut pending) = mpsc::channel::<()>(1);
        let watcher = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| match result {
            Ok(events) if !events.is_empty() => {
                let _ = changed.try_send(());
            }
            Ok(_) => {}
            Err(errors) => tracing::warn!(?errors, "watching the TLS files' directories failed"),
        })
        .inspect_err(|error| tracing::warn!(%error, "cannot watch the TLS files; they reload with the configuration"))
        .ok()?;
        let reloading = listeners.clone();
        tokio::spawn(async move {
            while pending.recv().await.is_some() {
                let listeners = reloading.clone();
                let _ = tokio::task::spawn_blocking(move || listeners.reload_files()).await;
            }
        });
        let watch = TlsWatch { watcher: Mutex::new(watcher), watched: Mutex::default(), listeners };
        watch.refresh();
        Some(watch)
    }

    /// Watches the directories of files the settings now name (after a configuration reload).
    pub fn refresh(&self) {
        let mut watched = lock(&self.watched);
        let mut watcher = lock(&self.watcher);
        for directory in self.listeners.watched_files().iter().map(|file| directory_of(file)) {
            if watched.contains(&directory) {
                continue;
            }
            match watcher.watch(&directory, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    watched.insert(directory);
                }
                Err(error) => {
                    tracing::warn!(directory = %directory.display(), %error, "cannot watch for TLS file changes")
                }
            }
        }
    }
}

fn directory_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
