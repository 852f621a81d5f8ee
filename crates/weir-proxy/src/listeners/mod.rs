//! The listener supervisor: which listening sockets the process holds and which accept loops run
//! on them. At start it holds what [`crate::Server::bind_inheriting`] bound; the server starts the
//! accept loops when it runs and stops them all at shutdown. A reload changes the set in two steps
//! ([`plan`]): first every new socket is bound (a failure leaves everything as it was), then, once
//! the new snapshot is stored, new accept loops start and those of removed or replaced listeners
//! stop. Connections already accepted are never touched: they hold their listener's settings and
//! identity ([`ListenerId`]) to their end.

mod bind;
mod identity;
pub mod plan;

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, Weak};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_config::Listener as ListenerConfig;

pub use bind::BindError;
pub(crate) use bind::{ListenerSettings, adopt_or_bind};
pub use identity::ListenerId;

use crate::server::{Acceptor, Gateway};

/// The process's listeners and their accept loops.
pub struct ListenerSet {
    state: Mutex<State>,
    /// A duplicate of the admin API's socket (which reloads do not change), for a binary upgrade.
    admin: Option<OwnedFd>,
}

struct State {
    live: Vec<Live>,
    phase: Phase,
    /// Accept loops a reload stopped, until someone waits for them to end.
    stopping: Vec<JoinHandle<()>>,
}

enum Phase {
    /// Bound, not yet accepting: the server has not started.
    Bound,
    /// Accepting; new listeners start their accept loops with this.
    Accepting(AcceptContext),
    /// Shut down: every socket is closed, and reloads no longer bind any.
    Closed,
}

/// What an accept loop needs from the running server.
pub(crate) struct AcceptContext {
    pub(crate) gateway: Weak<Gateway>,
    pub(crate) drain: crate::closing::Drain,
}

/// One listener in service.
struct Live {
    config: ListenerConfig,
    socket: Arc<TcpListener>,
    settings: Arc<ListenerSettings>,
    accepting: Option<AcceptLoop>,
}

struct AcceptLoop {
    /// Dropped to stop the loop.
    _stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ListenerSet {
    /// The listeners bound at start, in configuration order.
    pub(crate) fn new(bound: Vec<(ListenerConfig, TcpListener, ListenerSettings)>, admin: Option<OwnedFd>) -> Self {
        let live = bound
            .into_iter()
            .map(|(config, socket, settings)| Live {
                config,
                socket: Arc::new(socket),
                settings: Arc::new(settings),
                accepting: None,
            })
            .collect();
        ListenerSet { state: Mutex::new(State { live, phase: Phase::Bound, stopping: Vec::new() }), admin }
    }

    /// Each listener's name and the address it is bound to (useful when the port was 0).
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        let state = lock(&self.state);
        let addrs = state.live.iter().filter_map(|l| Some((l.config.name.clone(), l.socket.local_addr().ok()?)));
        addrs.collect()
    }

    /// A duplicate of every listening socket now in service (the admin API's named `admin`), to
    /// hand to a new process on a binary upgrade.
    pub fn listening_sockets(&self) -> std::io::Result<Vec<(String, OwnedFd)>> {
        use std::os::fd::AsFd;
        let state = lock(&self.state);
        let listeners = state.live.iter().map(|l| (l.config.name.clone(), l.socket.as_fd().try_clone_to_owned()));
        let admin = self.admin.iter().map(|fd| ("admin".to_string(), fd.try_clone()));
        listeners.chain(admin).map(|(name, fd)| Ok((name, fd?))).collect()
    }

    /// Starts an accept loop on every listener; later reloads start those they add.
    pub(crate) fn start(&self, context: AcceptContext) {
        let mut state = lock(&self.state);
        if !matches!(state.phase, Phase::Bound) {
            return;
        }
        for live in &mut state.live {
            live.accepting = accept(&context, live);
        }
        state.phase = Phase::Accepting(context);
    }

    /// Stops every accept loop and lets go of every socket; the loops' tasks end promptly, and
    /// the sockets close as they do. Reloads bind nothing from now on.
    pub(crate) fn close(&self) -> Vec<JoinHandle<()>> {
        let mut state = lock(&self.state);
        state.phase = Phase::Closed;
        let mut tasks = std::mem::take(&mut state.stopping);
        tasks.extend(state.live.drain(..).filter_map(|live| live.accepting.map(|accepting| accepting.task)));
        tasks
    }

    /// Waits until the accept loops that reloads stopped have ended, so their sockets are closed
    /// (unless a listener that replaced them kept the socket).
    pub async fn stopped(&self) {
        let tasks = std::mem::take(&mut lock(&self.state).stopping);
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Starts `live`'s accept loop (none once the gateway is gone).
fn accept(context: &AcceptContext, live: &Live) -> Option<AcceptLoop> {
    let (stop, stopped) = watch::channel(false);
    let (socket, settings) = (live.socket.clone(), live.settings.clone());
    let acceptor = Acceptor { gateway: context.gateway.upgrade()?, drain: context.drain.clone() };
    Some(AcceptLoop { _stop: stop, task: tokio::spawn(acceptor.run(socket, settings, stopped)) })
}

/// What decides whether a listener must be replaced: everything but its TLS settings, which apply
/// in place (a listener turning TLS on or off is replaced).
pub(crate) fn fingerprint(listener: &ListenerConfig) -> String {
    let without_tls = ListenerConfig { tls: None, ..listener.clone() };
    format!("{without_tls:?} tls={}", listener.tls.is_some())
}

/// A poisoned lock only means a reload panicked half-way; the set it guards is whole.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
