//! The gateway in-process, on ephemeral ports, for tests that drive it over real sockets.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::oneshot;
use weir_config::{Format, parse_str};
use weir_proxy::{ConfigDiff, Drained, Gateway, ReloadError, Reloaded, Server, Trigger};

/// A running in-process gateway.
pub struct TestGateway {
    addrs: Vec<(String, SocketAddr)>,
    admin: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    closed: Option<oneshot::Receiver<()>>,
    task: Option<tokio::task::JoinHandle<Drained>>,
    gateway: Arc<Gateway>,
}

impl TestGateway {
    /// Starts a gateway on YAML configuration text (listener addresses should use port 0).
    pub async fn start(yaml: &str) -> TestGateway {
        let config = parse_str(yaml, Format::Yaml, "test.yaml").unwrap_or_else(|e| panic!("test config: {e}"));
        let mut server = Server::bind(&config).unwrap_or_else(|e| panic!("gateway start: {e}"));
        let closed = Some(server.on_listeners_closed());
        let addrs = server.local_addrs();
        let admin = server.admin_addr();
        let gateway = server.gateway();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        TestGateway { addrs, admin, stop: Some(stop), closed, task: Some(task), gateway }
    }

    /// Starts a gateway on a configuration file, which `POST /reload` and [`Self::reload_file`] read.
    pub async fn start_file(path: PathBuf) -> TestGateway {
        let text = std::fs::read_to_string(&path).expect("read the test configuration");
        let gateway = TestGateway::start(&text).await;
        gateway.gateway.reload_state().set_source(path);
        gateway
    }

    /// Reloads from YAML configuration text, the way a reload from a file would apply it.
    pub fn reload(&self, yaml: &str) -> Result<ConfigDiff, ReloadError> {
        let config = parse_str(yaml, Format::Yaml, "test.yaml")?;
        self.gateway.apply(config)
    }

    /// Reloads from the file given to [`Self::start_file`], through the whole reload path.
    pub async fn reload_file(&self) -> Result<Reloaded, ReloadError> {
        self.gateway.reload(Trigger::Admin).await
    }

    /// The gateway itself: its serving configuration and reload state.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// The first listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0].1
    }

    /// The admin API's address (the configuration must have an `admin` section).
    pub fn admin(&self) -> SocketAddr {
        self.admin.expect("no admin section in the test configuration")
    }

    /// A listener's address by name: one in service now (reloads add and remove listeners), else
    /// the one it had at start.
    pub fn listener(&self, name: &str) -> SocketAddr {
        let live = self.gateway.listeners().local_addrs();
        let mut all = live.iter().chain(&self.addrs);
        all.find(|(n, _)| n == name).map(|(_, a)| *a).expect("no such listener")
    }

    /// Begins shutdown: listeners close at once, in-flight requests drain.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits until shutdown has closed every listener (after [`Self::begin_shutdown`]).
    pub async fn listeners_closed(&mut self) {
        let closed = self.closed.take().expect("listeners_closed called twice");
        tokio::time::timeout(crate::TEST_TIMEOUT, closed)
            .await
            .expect("listeners did not close")
            .expect("gateway gone");
    }

    /// Shuts down and waits for the drain to finish.
    pub async fn stop(mut self) -> Drained {
        self.begin_shutdown();
        let task = self.task.take().expect("gateway task");
        tokio::time::timeout(crate::TEST_TIMEOUT, task).await.expect("gateway drain hung").expect("gateway task")
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
