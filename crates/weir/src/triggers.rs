//! What starts a reload in the running binary: SIGHUP, and changes in the configuration file's
//! directory. Watching the directory rather than the file sees editors that write a new file and
//! rename it over the old one, and Kubernetes ConfigMaps that swap a symlink; every event leads to
//! a reload attempt, which the gateway skips when the file's content is what it last read.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;
use weir_proxy::{Gateway, Trigger};

/// Events closer together than this are one change (an editor's write, rename and chmod).
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Keeps the directory watch alive; dropping it stops watching.
pub type FileWatch = Debouncer<notify::RecommendedWatcher, RecommendedCache>;

/// Reloads on every SIGHUP until the process ends.
pub fn reload_on_sighup(gateway: Arc<Gateway>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install the SIGHUP handler; reload through the admin API or the file");
        return;
    };
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the configuration");
            let _ = gateway.reload(Trigger::Signal).await;
        }
    });
}

/// Watches the directory holding `config` and reloads when something in it changes.
pub fn reload_on_change(gateway: Arc<Gateway>, config: &Path) -> Result<FileWatch, notify::Error> {
    // One pending reload is enough: a reload reads the file as it is when it runs.
    let (changed, mut pending) = mpsc::channel::<()>(1);
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| match result {
        Ok(events) if !events.is_empty() => {
            let _ = changed.try_send(());
        }
        Ok(_) => {}
        Err(errors) => tracing::warn!(?errors, "watching the configuration directory failed"),
    })?;
    debouncer.watch(directory_of(config), RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while pending.recv().await.is_some() {
            let _ = gateway.reload(Trigger::Watch).await;
        }
    });
    Ok(debouncer)
}

fn directory_of(config: &Path) -> PathBuf {
    match config.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
