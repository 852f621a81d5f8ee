//! The gateway in-process, on ephemeral ports, for tests that drive it over real sockets.

use std::net::SocketAddr;

use tokio::sync::oneshot;
use weir_config::{Format, parse_str};
use weir_proxy::{Drained, Server};

/// A running in-process gateway.
pub struct TestGateway {
    addrs: Vec<(String, SocketAddr)>,
    admin: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    closed: Option<oneshot::Receiver<()>>,
    task: Option<tokio::task::JoinHandle<Drained>>,
}

impl TestGateway {
    /// Starts a gateway on YAML configuration text (listener addresses should use port 0).
    pub async fn start(yaml: &str) -> TestGateway {
        let config = parse_str(yaml, Format::Yaml, "test.yaml").unwrap_or_else(|e| panic!("test config: {e}"));
        let mut server = Server::bind(&config).unwrap_or_else(|e| panic!("gateway start: {e}"));
        let closed = Some(server.on_listeners_closed());
        let addrs = server.local_addrs();
        let admin = server.admin_addr();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        TestGateway { addrs, admin, stop: Some(stop), closed, task: Some(task) }
    }

    /// The first listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0].1
    }

    /// The admin API's address (the configuration must have an `admin` section).
    pub fn admin(&self) -> SocketAddr {
        self.admin.expect("no admin section in the test configuration")
    }

    /// A listener's address by name.
    pub fn listener(&self, name: &str) -> SocketAddr {
        self.addrs.iter().find(|(n, _)| n == name).map(|(_, a)| *a).expect("no such listener")
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
