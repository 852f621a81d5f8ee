//! Listeners and connections: binding (SO_REUSEPORT), accepting up to a cap, the TLS handshake on
//! TLS listeners ([`crate::tls`]), serving HTTP/1.1 and HTTP/2 (h2c, or h2 after ALPN) on each
//! connection, and draining on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use weir_config::Config;
use weir_telemetry::Metrics;

use crate::access::AccessLog;
use crate::admin;
use crate::body::TimedBody;
use crate::client_body::ClientBody;
use crate::closing::{self, Drain, Watch};
use crate::forward::Peer;
use crate::framing::Refused;
use crate::handler::{ConnContext, FaultReset, serve_request};
use crate::http1::{self, ClientStream, ConnIo};
use crate::inherited::InheritedSockets;
use crate::listeners::{AcceptContext, BindError, ListenerId, ListenerSet, ListenerSettings, adopt_or_bind};
use crate::parking::Parking;
use crate::reload::ReloadState;
use crate::reload::registry::ClusterRegistry;
use crate::snapshot::{Snapshot, SnapshotError};
use crate::stages::fault::Experiments;
use crate::stages::rate_limit::carry::Rebuild;
use crate::tls::{TlsError, TlsInfo, TlsListeners, TlsWatch};
use crate::upstream_status;
use tokio_util::sync::CancellationToken;

/// The state every request reads: the current snapshot, replaced whole on reload.
pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    metrics: Arc<Metrics>,
    access_log: Option<Arc<AccessLog>>,
    tracer: Option<Arc<weir_trace::Tracer>>,
    draining: AtomicBool,
    /// Readiness is false: set on shutdown, not on a hand-over (the successor is ready).
    unready: AtomicBool,
    reload: ReloadState,
    pub(crate) tls: Arc<TlsListeners>,
    pub(crate) tls_watch: std::sync::OnceLock<TlsWatch>,
    pub(crate) listeners: ListenerSet,
}

impl Gateway {
    pub fn new(
        snapshot: Snapshot,
        metrics: Arc<Metrics>,
        access_log: Option<Arc<AccessLog>>,
        reload: ReloadState,
        tls: Arc<TlsListeners>,
    ) -> Self {
        Gateway {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            access_log,
            tracer: None,
            draining: AtomicBool::new(false),
            unready: AtomicBool::new(false),
            reload,
            tls,
            tls_watch: std::sync::OnceLock::new(),
            listeners: ListenerSet::new(Vec::new(), None),
        }
    }

    /// The access log, when one is configured.
    pub fn access_log(&self) -> Option<&Arc<AccessLog>> {
        self.access_log.as_ref()
    }

    /// The tracer, when tracing is configured.
    pub fn tracer(&self) -> Option<&weir_trace::Tracer> {
        self.tracer.as_deref()
    }

    /// The serving configuration, and what reloads carry across.
    pub fn reload_state(&self) -> &ReloadState {
        &self.reload
    }

    /// Puts a new snapshot in service; requests that loaded the old one keep it.
    pub(crate) fn replace_snapshot(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// The snapshot to serve one request from, kept by the request to its end.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The listeners in service and their accept loops.
    pub fn listeners(&self) -> &ListenerSet {
        &self.listeners
    }

    /// Shutdown or a hand-over has begun: keep-alive connections are closed as they finish.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Whether `/readyz` says ready: false once shutdown has begun. During a hand-over to a new
    /// process it stays true: the service is ready, and this process only finishes what it has.
    pub fn is_ready(&self) -> bool {
        !self.unready.load(Ordering::Relaxed)
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("access log: cannot open {destination}: {source}")]
    AccessLog {
        destination: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Bind(#[from] BindError),
}

/// A gateway with its listeners bound, ready to run.
pub struct Server {
    gateway: Arc<Gateway>,
    admin: Option<(TcpListener, Option<Arc<str>>)>,
    listeners_closed: Option<oneshot::Sender<()>>,
}

/// How a server stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Readiness turns false, the drain delay passes, the listeners close, connections drain.
    Drain,
    /// Another process serves the same listening sockets: stop accepting at once (no readiness
    /// change, no drain delay) and drain the connections this process holds.
    HandOver,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished in time.
    Clean,
    /// The drain deadline passed with connections still open; they were closed.
    TimedOut,
}

impl Server {
    /// Compiles the configuration and binds every listener. Must run inside a Tokio runtime.
    pub fn bind(config: &Config) -> Result<Server, ServeError> {
        Self::bind_inheriting(config, &mut InheritedSockets::none())
    }

    /// Like [`Server::bind`], but a listener (or the admin API) whose socket is in `inherited`
    /// adopts it instead of binding; what is left in `inherited` nobody wanted.
    pub fn bind_inheriting(config: &Config, inherited: &mut InheritedSockets) -> Result<Server, ServeError> {
        let metrics = Metrics::new();
        let set = ClusterRegistry::default().build(config)?;
        let mut limiters = Rebuild::fresh();
        let experiments = Experiments::new(&config.fault_injection, metrics.clone());
        let snapshot = Snapshot::build_with_clusters(config, &metrics, set.clusters, &mut limiters, experiments)?;
        let reload = ReloadState::new(config.clone(), set.registry, limiters.finish());
        let access_log = config.access_log.as_ref().map(|log| start_access_log(log, &metrics)).transpose()?;
        let tls = Arc::new(TlsListeners::build(config, &metrics)?);
        let mut gateway = Gateway::new(snapshot, metrics.clone(), access_log, reload, tls.clone());
        gateway.tracer = config.tracing.as_ref().map(|tracing| crate::trace::start_tracer(tracing, &metrics));
        let mut bound = Vec::with_capacity(config.listeners.len());
        for listener in &config.listeners {
            let socket = adopt_or_bind(inherited, &listener.name, listener.address)?;
            let cap = Arc::new(Semaphore::new(listener.max_connections));
            let id = ListenerId::new(&listener.name);
            let settings = ListenerSettings::new(listener, id, cap, tls.get(&listener.name), &metrics);
            bound.push((listener.clone(), socket, settings));
        }
        let admin = match &config.admin {
            Some(admin) => {
                Some((adopt_or_bind(inherited, "admin", admin.address)?, admin.token.as_deref().map(Arc::from)))
            }
            None => None,
        };
        // Kept for a binary upgrade; without it a successor binds the admin address anew.
        let admin_fd = admin.as_ref().and_then(|(socket, _)| {
            let duplicate = std::os::fd::AsFd::as_fd(socket).try_clone_to_owned();
            duplicate.inspect_err(|error| tracing::warn!(%error, "cannot keep the admin socket for an upgrade")).ok()
        });
        gateway.listeners = ListenerSet::new(bound, admin_fd);
        let gateway = Arc::new(gateway);
        metrics.report_upstreams(upstream_status::metrics_source(&gateway));
        let serving = gateway.snapshot();
        serving.faults.experiments.restore(|target| serving.has_target(target));
        Ok(Server { gateway, admin, listeners_closed: None })
    }

    /// The gateway, for reload triggers.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.gateway.clone()
    }

    /// The access log, for the process to reopen on SIGUSR1 and flush on exit.
    pub fn access_log(&self) -> Option<Arc<AccessLog>> {
        self.gateway.access_log.clone()
    }

    /// The admin API's address, when it is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|(socket, _)| socket.local_addr().ok())
    }

    /// Each listener's name and the address it is bound to (useful when the port was 0).
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.gateway.listeners.local_addrs()
    }

    /// A duplicate of every listening socket (the admin API's named `admin`), to hand to a new
    /// process on a binary upgrade.
    /// A reload may have changed the listeners since: an upgrade asks the gateway at that moment
    /// ([`ListenerSet::listening_sockets`]).
    pub fn listening_sockets(&self) -> std::io::Result<Vec<(String, std::os::fd::OwnedFd)>> {
        self.gateway.listeners.listening_sockets()
    }

    /// Completes once shutdown has begun and every listening socket is closed.
    pub fn on_listeners_closed(&mut self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.listeners_closed = Some(tx);
        rx
    }

    /// Serves until `shutdown` completes, then stops accepting (new connections are refused), lets
    /// in-flight requests finish within the drain timeout, exports the spans still queued, and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Drained {
        self.run_until(async {
            shutdown.await;
            Stop::Drain
        })
        .await
    }

    /// Like [`Server::run`], with `stop` saying how to end: [`Stop::HandOver`] when another
    /// process took over the listening sockets (a binary upgrade).
    pub async fn run_until(mut self, stop: impl Future<Output = Stop>) -> Drained {
        let gateway = self.gateway.clone();
        gateway.start_clusters();
        let reaper = tokio::spawn(gateway.snapshot().faults.experiments.clone().reap_forever());
        gateway.watch_tls_files();
        let mut admin = self.admin.take().map(|(socket, token)| tokio::spawn(admin::serve(socket, gateway, token)));
        let traced = self.gateway.clone();
        let drained = self.serve_until(stop, &mut admin).await;
        if let Some(admin) = admin {
            admin.abort();
        }
        reaper.abort();
        // Spans end with their responses, so every one is queued once the drain is over.
        if let Some(tracer) = traced.tracer()
            && !tracer.shutdown().await
        {
            tracing::warn!("spans still queued at shutdown were not exported within the export timeout");
        }
        drained
    }

    async fn serve_until(
        self,
        stop: impl Future<Output = Stop>,
        admin: &mut Option<tokio::task::JoinHandle<()>>,
    ) -> Drained {
        let drain = Drain::default();
        let context = AcceptContext { gateway: Arc::downgrade(&self.gateway), drain: drain.clone() };
        self.gateway.listeners.start(context);
        let stop = stop.await;
        // Read now: a reload may have changed them since start.
        let server = self.gateway.reload_state().config().server.clone();
        if stop == Stop::HandOver {
            // The successor answers on the same sockets, readiness included: this process just
            // stops accepting, the admin API first, so nothing here reports itself not ready.
            admin.take().inspect(|admin| admin.abort());
        } else {
            self.gateway.unready.store(true, Ordering::Relaxed);
            if !server.drain_delay.0.is_zero() {
                self.gateway.draining.store(true, Ordering::Relaxed);
                tracing::info!(delay = ?server.drain_delay.0, "shutting down: not ready; listeners close after the delay");
                tokio::time::sleep(server.drain_delay.0).await;
            }
        }
        self.gateway.draining.store(true, Ordering::Relaxed);
        tracing::info!("shutting down: no new connections, draining in-flight requests");
        for accept_loop in self.gateway.listeners.close() {
            let _ = accept_loop.await;
        }
        if let Some(closed) = self.listeners_closed {
            let _ = closed.send(());
        }
        closing::close_grace(&drain, closing::CLOSE_GRACE).await;
        match tokio::time::timeout(server.drain_timeout.0, drain.shutdown()).await {
            Ok(()) => Drained::Clean,
            Err(_) => Drained::TimedOut,
        }
    }
}

fn start_access_log(config: &weir_config::AccessLog, metrics: &Metrics) -> Result<Arc<AccessLog>, ServeError> {
    let started = AccessLog::start(config, metrics).map_err(|source| ServeError::AccessLog {
        destination: config.path.as_ref().map_or("standard output".into(), |path| path.display().to_string()),
        source,
    });
    started.map(Arc::new)
}

/// Accepts connections on one listener.
pub(crate) struct Acceptor {
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) drain: Drain,
}

impl Acceptor {
    /// Accepts on `socket` until `stop` changes or its sender is dropped, serving each connection
    /// with `listener`'s settings.
    pub(crate) async fn run(
        self,
        socket: Arc<TcpListener>,
        listener: Arc<ListenerSettings>,
        mut stop: watch::Receiver<bool>,
    ) {
        let parking = self.start_parking(&listener);
        loop {
            let permit = tokio::select! {
                permit = listener.connections.clone().acquire_owned() => permit,
                _ = stop.changed() => break,
            };
            let Ok(permit) = permit else { break };
            let accepted = tokio::select! {
                accepted = socket.accept() => accepted,
                _ = stop.changed() => break,
            };
            match accepted {
                Ok((stream, peer)) => self.spawn_connection(&listener, stream, peer, permit, &parking),
                Err(error) => {
                    tracing::warn!(listener = %listener.name(), %error, "accept failed");
                    // Out of file descriptors and the like: give the process a moment.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        tracing::debug!(listener = %listener.name(), "accept loop ended");
    }

    /// Where the listener's idle connections are parked, when they are.
    fn start_parking(&self, listener: &ListenerSettings) -> Option<Parking<Idle>> {
        listener.http1.as_ref()?.park_after?;
        let started = Parking::start(resume, self.drain.stopping().clone(), listener.metrics.clone());
        let warn = |error: &std::io::Error| tracing::warn!(listener = %listener.name(), %error, "idle connections cannot be parked");
        started.inspect_err(warn).ok()
    }

    /// Serves an accepted connection in its own task, holding its place under the connection cap.
    fn spawn_connection(
        &self,
        listener: &Arc<ListenerSettings>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        permit: tokio::sync::OwnedSemaphorePermit,
        parking: &Option<Parking<Idle>>,
    ) {
        let _ = stream.set_nodelay(true);
        let held = Held { _permit: permit, _open: listener.metrics.connection_opened(), watch: self.drain.watch() };
        let (gateway, listener) = (self.gateway.clone(), listener.clone());
        match listener.tls.clone() {
            None => {
                let parking = parking.clone();
                tokio::spawn(serve_connection(gateway, listener, stream, peer, None, held, parking));
            }
            // The handshake runs in the connection's task, never in the accept loop; the watch held
            // meanwhile makes a drain wait for it. A task of its own type: a TLS connection's
            // future is several times a plain one's.
            Some(tls) => {
                tokio::spawn(async move {
                    if let Some((stream, info)) = crate::tls::handshake::handshake(&tls, stream).await {
                        serve_connection(gateway, listener, stream, peer, Some(info), held, None).await;
                    }
                });
            }
        }
    }
}

/// What a connection holds until it closes: its place under the listener's cap, its count in the
/// metrics and in the drain.
struct Held {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _open: weir_telemetry::OpenConnection,
    watch: Watch,
}

/// An idle connection's state while it is parked: what it is served with and what it holds.
struct Idle {
    dispatch: Arc<Dispatch>,
    held: Held,
}

/// Serves a parked connection the client sent something on (or closed), in a task of its own again.
fn resume(stream: tokio::net::TcpStream, idle: Idle) {
    let start = Start::Http1 { io: ConnIo::new(stream), h2c: false };
    tokio::spawn(connection(idle.dispatch, start, idle.held));
}

/// Serves one client connection until it closes: HTTP/1.1, or HTTP/2 (h2 agreed through ALPN, h2c,
/// or a preface where HTTP/1.1 was expected), both by weir's own servers. `parking`: where it goes
/// while it waits long for a request.
fn serve_connection<S>(
    gateway: Arc<Gateway>,
    listener: Arc<ListenerSettings>,
    stream: S,
    peer: SocketAddr,
    tls: Option<TlsInfo>,
    held: Held,
    parking: Option<Parking<Idle>>,
) -> impl Future<Output = ()> + Send + 'static
where
    S: ClientStream + 'static,
{
    let alpn_h2 = tls.as_ref().and_then(|tls| tls.alpn).map(|alpn| alpn == "h2");
    let conn = ConnContext {
        listener: listener.id.clone(),
        peer: Peer::new(peer, &gateway.snapshot().trusted_proxies),
        max_uri_length: listener.max_uri_length,
        protocol: std::sync::OnceLock::new(),
        tls: tls.map(Arc::new),
    };
    let dispatch = Arc::new(Dispatch { gateway, conn, listener: listener.clone(), parking });
    // HTTP/1.1 unless ALPN settled h2 or the listener serves only h2c; the HTTP/2 preface is looked
    // for unless ALPN settled HTTP/1.1.
    let start = match (alpn_h2, &listener.http1) {
        (Some(true), _) | (_, None) => Start::Http2(stream),
        (alpn, Some(settings)) => Start::Http1 { io: ConnIo::new(stream), h2c: alpn.is_none() && settings.h2c },
    };
    // The connection's future keeps `dispatch`, which has the listener: not `listener` beside it.
    drop(listener);
    connection(dispatch, start, held)
}

/// A connection's task: its service from `start` to its close, or until it is parked.
///
/// Not an `async fn`, nor is [`serve_connection`]: what is set up there is not kept in the
/// connection's future beside the copies the future makes of it, so an idle connection's task
/// stays small.
#[allow(clippy::manual_async_fn)]
fn connection<S>(dispatch: Arc<Dispatch>, mut start: Start<S>, held: Held) -> impl Future<Output = ()> + Send + 'static
where
    S: ClientStream + 'static,
{
    async move {
        // The connection stays where it is (in this future) and is lent to the HTTP/1.1 server, as
        // are the settings: an idle connection's task keeps one copy of each, and nothing else
        // that lives past the HTTP/1.1 service is held meanwhile.
        let ended = match (&mut start, &dispatch.listener.http1) {
            (Start::Http1 { io, h2c }, Some(settings)) => {
                let stopping = held.watch.stopping().clone();
                Some(http1::serve(io, settings, *h2c, stopping, dispatch.clone()).await)
            }
            _ => None,
        };
        let stopping = held.watch.stopping().clone();
        // Boxed: an HTTP/2 connection's future is several times an HTTP/1.1 one's. Made before it is
        // awaited, so nothing of `start` stays in this future beside it.
        let http2: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = match start {
            Start::Http1 { io, .. } if matches!(ended, Some(http1::Ended::Park)) => {
                park(io, dispatch, held);
                return;
            }
            Start::Http1 { io, .. } => ended
                .and_then(|ended| http1::hand_over(io, ended))
                .map(|rewound| Box::pin(serve_http2(rewound, dispatch, stopping)) as Pin<Box<_>>),
            Start::Http2(stream) => Some(Box::pin(serve_http2(stream, dispatch, stopping))),
        };
        if let Some(http2) = http2 {
            http2.await;
        }
        drop(held);
    }
}

/// Hands an idle HTTP/1.1 connection to its listener's parking, for the rest of its idle timeout.
/// Only a cleartext connection is handed back for it (a TLS one has no parking).
fn park<S: 'static>(io: ConnIo<S>, dispatch: Arc<Dispatch>, held: Held) {
    let (stream, _) = io.into_parts();
    let (Some(parking), Some(settings)) = (dispatch.parking.clone(), dispatch.listener.http1) else { return };
    let Some(stream) = plain_tcp(stream) else { return };
    let rest = settings.idle_timeout.saturating_sub(settings.park_after.unwrap_or_default());
    parking.park(stream, Idle { dispatch, held }, tokio::time::Instant::now() + rest);
}

/// The connection's stream as the TCP stream it is on a cleartext listener.
fn plain_tcp<S: 'static>(stream: S) -> Option<tokio::net::TcpStream> {
    let mut stream = Some(stream);
    (&mut stream as &mut dyn std::any::Any).downcast_mut::<Option<tokio::net::TcpStream>>()?.take()
}

/// How a connection starts: HTTP/1.1 (perhaps becoming HTTP/2 on a preface), or HTTP/2.
enum Start<S> {
    Http1 { io: ConnIo<S>, h2c: bool },
    Http2(S),
}

/// Serves HTTP/2 on a connection until it closes; a drain sends GOAWAY and lets open streams finish.
async fn serve_http2<S: ClientStream + 'static>(stream: S, dispatch: Arc<Dispatch>, stopping: CancellationToken) {
    let settings = dispatch.listener.http2;
    crate::http2::serve(stream, settings, stopping, dispatch).await;
}

/// What a connection's requests are served with.
struct Dispatch {
    gateway: Arc<Gateway>,
    conn: ConnContext,
    /// The listener's settings, for its metrics (shared, not copied: each connection has a `Dispatch`).
    listener: Arc<ListenerSettings>,
    /// Where the connection waits for a request once it has waited long, when it may.
    parking: Option<Parking<Idle>>,
}

impl Dispatch {
    /// Answers one request, `violation` being what its head was refused for.
    fn serve(
        &self,
        violation: Option<crate::framing::Violation>,
        request: hyper::Request<ClientBody>,
        http1: bool,
    ) -> impl Future<Output = Result<hyper::Response<TimedBody>, FaultReset>> + Send + '_ {
        if self.conn.protocol.get().is_none() {
            let _ = self.conn.protocol.set(self.listener.metrics.protocol_seen(!http1));
        }
        async move {
            let mut response = serve_request(&self.gateway, &self.conn, violation, request).await;
            if let Ok(response) = &mut response {
                closing::close_when_draining(self.gateway.is_draining(), http1, response);
            }
            response
        }
    }
}

impl crate::http2::Service for Arc<Dispatch> {
    type Body = TimedBody;

    fn call(&self, mut request: hyper::Request<ClientBody>) -> impl Future<Output = http1::Answer<TimedBody>> + Send {
        // A head over the limits comes with its request.
        let refused = request.extensions_mut().remove::<crate::http2::RefusedHead>();
        let violation = refused.map(|crate::http2::RefusedHead(limit)| match limit {
            crate::http2::HeadLimit::Size => crate::framing::Violation::HeadTooLarge,
            crate::http2::HeadLimit::Fields => crate::framing::Violation::TooManyHeaders,
        });
        self.serve(violation, request, false)
    }

    fn protocol_error(&self, scope: crate::http2::ErrorScope, reason: crate::http2::Reason) {
        self.listener.metrics.http2_error(scope.as_str(), reason.as_str());
    }
}

impl http1::Service for Arc<Dispatch> {
    type Body = TimedBody;

    fn call(&self, mut request: hyper::Request<ClientBody>) -> impl Future<Output = http1::Answer<TimedBody>> + Send {
        let refused = request.extensions_mut().remove::<Refused>();
        self.serve(refused.map(|Refused(violation)| violation), request, true)
    }
}
