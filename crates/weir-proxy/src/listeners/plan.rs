//! A reload's change to the listener set, in two steps so the reload stays all or nothing.
//! [`ListenerSet::plan`] binds every socket the new configuration needs, before anything changes;
//! a socket that cannot be bound fails the reload, and the sockets bound so far close with the
//! dropped plan. [`ListenerSet::commit`], once the new snapshot is stored, starts the new accept
//! loops and only then stops those of listeners removed or replaced.
//!
//! Per listener of the new configuration, by name: unchanged (everything but the TLS certificates,
//! which apply in place) keeps its socket and accept loop; changed on the same address (or on the
//! port it was given for port 0) gets new settings on the same socket, so connections queued in the
//! kernel are not reset; moved to another address gets a new socket, or the one a leaving listener
//! is bound to on that exact address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use weir_config::{Config, Listener as ListenerConfig};
use weir_telemetry::Metrics;

use super::bind::{self, BindError, ListenerSettings};
use super::{ListenerId, ListenerSet, Live, Phase, accept, fingerprint, lock};
use crate::snapshot::Snapshot;
use crate::tls::TlsPlan;

/// The listener set a reload puts in service, with its sockets already bound.
#[derive(Default)]
pub(crate) struct ListenerPlan {
    /// The new configuration's listeners, in its order.
    next: Vec<Next>,
    /// Listeners the new configuration no longer has.
    removed: Vec<Arc<ListenerId>>,
}

enum Next {
    /// Unchanged: keeps its socket, settings and accept loop.
    Keep(String),
    /// New or changed: starts an accept loop with these settings.
    Start { config: Box<ListenerConfig>, socket: Arc<TcpListener>, settings: Arc<ListenerSettings>, bound: bool },
}

impl ListenerPlan {
    /// Whether the plan changes the listener set.
    pub(crate) fn changes_anything(&self) -> bool {
        !self.removed.is_empty() || self.next.iter().any(|next| matches!(next, Next::Start { .. }))
    }

    /// Hands the removed listeners' open connections `last`, the snapshot serving until now. Must
    /// run before the snapshot without them is stored.
    pub(crate) fn retire(&self, last: &Arc<Snapshot>) {
        self.removed.iter().for_each(|id| id.retire(last.clone()));
    }
}

impl ListenerSet {
    /// Binds what `config` needs beyond the sockets in service; changes nothing yet.
    pub(crate) fn plan(
        &self,
        config: &Config,
        tls: &TlsPlan<'_>,
        metrics: &Metrics,
    ) -> Result<ListenerPlan, BindError> {
        let state = lock(&self.state);
        if matches!(state.phase, Phase::Closed) {
            return Ok(ListenerPlan::default());
        }
        let current: HashMap<&str, &Live> = state.live.iter().map(|live| (live.config.name.as_str(), live)).collect();
        let mut free = free_sockets(&state.live, config);
        let mut next = Vec::with_capacity(config.listeners.len());
        for listener in &config.listeners {
            let old = current.get(listener.name.as_str()).copied();
            if old.is_some_and(|old| fingerprint(&old.config) == fingerprint(listener)) {
                next.push(Next::Keep(listener.name.clone()));
                continue;
            }
            let same_address = old.filter(|old| old.listens_on(listener.address));
            let (socket, bound) = match same_address.map(|old| old.socket.clone()).or_else(|| free.take(listener)) {
                Some(socket) => (socket, false),
                None => (Arc::new(bind::bind(&listener.name, listener.address)?), true),
            };
            let id = old.map_or_else(|| ListenerId::new(&listener.name), |old| old.settings.id.clone());
            let same_cap = old.filter(|old| old.config.max_connections == listener.max_connections);
            let connections = same_cap.map_or_else(
                || Arc::new(Semaphore::new(listener.max_connections)),
                |old| old.settings.connections.clone(),
            );
            let settings = ListenerSettings::new(listener, id, connections, tls.get(&listener.name), metrics);
            next.push(Next::Start { config: Box::new(listener.clone()), socket, settings: Arc::new(settings), bound });
        }
        let kept = |name: &str| config.listeners.iter().any(|listener| listener.name == name);
        let removed = state.live.iter().filter(|live| !kept(&live.config.name));
        Ok(ListenerPlan { next, removed: removed.map(|live| live.settings.id.clone()).collect() })
    }

    /// Puts a plan in service: new listeners accept, then removed and replaced ones stop accepting
    /// (their sockets close once their accept loops end, see [`ListenerSet::stopped`]). After
    /// shutdown began the plan is dropped.
    pub(crate) fn commit(&self, plan: ListenerPlan) {
        let mut state = lock(&self.state);
        if matches!(state.phase, Phase::Closed) {
            return;
        }
        let mut old: HashMap<String, Live> =
            state.live.drain(..).map(|live| (live.config.name.clone(), live)).collect();
        let mut live = Vec::with_capacity(plan.next.len());
        for next in plan.next {
            match next {
                Next::Keep(name) => live.extend(old.remove(&name)),
                Next::Start { config, socket, settings, bound } => {
                    let mut started = Live { config: *config, socket, settings, accepting: None };
                    if let Phase::Accepting(context) = &state.phase {
                        started.accepting = accept(context, &started);
                    }
                    log_started(&started, bound);
                    live.push(started);
                }
            }
        }
        for (name, gone) in old {
            let address = gone.socket.local_addr().ok();
            tracing::info!(listener = %name, ?address, "stopped accepting; its open connections finish on their own");
            // Dropping the loop's stop sender ends it.
            state.stopping.extend(gone.accepting.map(|accepting| accepting.task));
        }
        state.live = live;
    }
}

fn log_started(live: &Live, bound: bool) {
    if let Ok(address) = live.socket.local_addr() {
        let (listener, pid) = (&live.config.name, std::process::id());
        match bound {
            true => tracing::info!(%listener, %address, pid, "listening"),
            false => tracing::info!(%listener, %address, pid, "listener settings replaced; same socket"),
        }
    }
}

impl Live {
    /// Whether this listener's socket is what `address` asks for: the address it was configured
    /// with, or (a port written out that was 0 before) the one it is bound to.
    fn listens_on(&self, address: SocketAddr) -> bool {
        self.config.address == address || self.socket.local_addr().ok() == Some(address)
    }
}

/// Sockets whose listener leaves or moves, free for another listener configured on the exact
/// address they are bound to.
struct FreeSockets(Vec<(SocketAddr, Arc<TcpListener>)>);

fn free_sockets(live: &[Live], config: &Config) -> FreeSockets {
    let stays = |l: &Live| config.listeners.iter().any(|n| n.name == l.config.name && l.listens_on(n.address));
    let free = live.iter().filter(|l| !stays(l)).filter_map(|l| Some((l.socket.local_addr().ok()?, l.socket.clone())));
    FreeSockets(free.collect())
}

impl FreeSockets {
    fn take(&mut self, listener: &ListenerConfig) -> Option<Arc<TcpListener>> {
        if listener.address.port() == 0 {
            return None;
        }
        let index = self.0.iter().position(|(address, _)| *address == listener.address)?;
        Some(self.0.swap_remove(index).1)
    }
}
