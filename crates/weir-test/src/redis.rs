//! A real `redis-server` for tests, on a free port of 127.0.0.1, and a three-node Redis Cluster made
//! of them. `redis-server` cannot be asked for port 0, so a free port is found by binding and
//! releasing one; if another process takes it in between, the server exits at once and a new port is
//! tried.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A running `redis-server`, killed when dropped.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// For a cluster node: where its cluster state file goes.
    cluster_dir: Option<PathBuf>,
}

impl RedisServer {
    /// Starts a server with persistence off and waits until it answers `PING`.
    pub async fn start() -> RedisServer {
        Self::start_in(None).await
    }

    async fn start_in(cluster_dir: Option<PathBuf>) -> RedisServer {
        for _ in 0..10 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut server = RedisServer { port, child: None, cluster_dir: cluster_dir.clone() };
            if server.spawn().await {
                return server;
            }
        }
        panic!("redis-server did not start (is it installed? scripts/test installs it)");
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server without closing its sockets (SIGSTOP), as a hung server would behave.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server is not running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Starts the server again on the same port, empty.
    pub async fn restart(&mut self) {
        self.kill();
        assert!(self.spawn().await, "redis-server did not restart on port {}", self.port);
    }

    /// Sends one command written inline (`DBSIZE`, `SCRIPT FLUSH`) and returns the reply's first line.
    pub async fn command(&self, inline: &str) -> String {
        let mut stream = TcpStream::connect(self.addr()).await.expect("connect to redis-server");
        stream.write_all(format!("{inline}\r\n").as_bytes()).await.unwrap();
        let mut reply = Vec::new();
        while !reply.ends_with(b"\r\n") {
            let mut byte = [0u8; 1];
            if stream.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            reply.push(byte[0]);
        }
        String::from_utf8_lossy(&reply).trim_end().to_string()
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli").arg("-p").arg(self.port.to_string()).args(args).output();
        String::from_utf8_lossy(&output.expect("run redis-cli").stdout).into_owned()
    }

    /// Spawns on `self.port` and waits for `PING`; `false` when the server exited (port taken).
    async fn spawn(&mut self) -> bool {
        let port = self.port.to_string();
        let mut args = vec!["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
        let state_file = self.cluster_dir.as_ref().map(|dir| dir.join(format!("nodes-{port}.conf")));
        let state_file = state_file.as_ref().map(|f| f.to_string_lossy().into_owned());
        if let Some(file) = &state_file {
            args.extend(["--cluster-enabled", "yes", "--cluster-config-file", file]);
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run redis-server (scripts/test installs it)");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + crate::TEST_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            if self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some()) {
                self.child = None;
                return false;
            }
            if TcpStream::connect(self.addr()).await.is_ok() && self.command("PING").await == "+PONG" {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three `redis-server`s joined into a Redis Cluster, each owning a third of the slots.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts three nodes, joins them with `redis-cli --cluster create` and waits until every node
    /// reports the cluster ok.
    pub async fn start() -> RedisCluster {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("weir-redis-cluster-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cluster state directory");
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(RedisServer::start_in(Some(dir.clone())).await);
        }
        let addrs: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(created.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&created.stdout));
        let deadline = tokio::time::Instant::now() + crate::TEST_TIMEOUT;
        while !nodes.iter().all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok")) {
            assert!(tokio::time::Instant::now() < deadline, "the cluster did not become ok");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        RedisCluster { nodes, dir }
    }
}

impl RedisCluster {
    /// Moves every slot (and key) of node `from` to node `to`, as an operator's resharding would.
    pub fn move_all_slots(&self, from: usize, to: usize) {
        let id = |node: &RedisServer| node.cli(&["cluster", "myid"]).trim().to_string();
        let (from_node, to_node) = (&self.nodes[from], &self.nodes[to]);
        let moved = Command::new("redis-cli")
            .args(["--cluster", "reshard", &from_node.addr().to_string()])
            .args(["--cluster-from", &id(from_node), "--cluster-to", &id(to_node)])
            .args(["--cluster-slots", "16384", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster reshard");
        assert!(moved.status.success(), "reshard failed: {}", String::from_utf8_lossy(&moved.stdout));
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
