//! Which listener a connection came on, by name rather than by position, so a reload that adds,
//! removes or reorders listeners never hands a connection another listener's routes. A request
//! asks here for the snapshot to serve from: the current one while it still has the listener, else
//! the last one that had it.

use std::sync::{Arc, OnceLock};

use crate::snapshot::Snapshot;

/// One listener's identity, shared by every connection it accepted and by the listener that
/// replaces it under the same name (a new address, TLS turned on). A listener removed by a
/// reload keeps, here, the last snapshot that had its routes, for its connections still open.
pub struct ListenerId {
    name: Arc<str>,
    retired: OnceLock<Arc<Snapshot>>,
}

impl ListenerId {
    pub fn new(name: &str) -> Arc<ListenerId> {
        Arc::new(ListenerId { name: name.into(), retired: OnceLock::new() })
    }

    /// The listener's name, as in the configuration.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The snapshot a request on this listener is served from: `current` while it routes this
    /// listener, else the last one that did (the listener was removed by a reload).
    pub fn serving(&self, current: Arc<Snapshot>) -> Arc<Snapshot> {
        if current.router(&self.name).is_some() {
            return current;
        }
        self.retired.get().cloned().unwrap_or(current)
    }

    /// The listener leaves the configuration: its connections keep `last`, the snapshot serving
    /// until now. Called before the snapshot without it is stored, so no request misses both.
    pub(crate) fn retire(&self, last: Arc<Snapshot>) {
        let _ = self.retired.set(last);
    }
}

impl std::fmt::Debug for ListenerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerId").field("name", &self.name).field("retired", &self.retired.get().is_some()).finish()
    }
}
