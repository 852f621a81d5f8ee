//! Binary upgrade without refusing a connection. On SIGUSR2 the running weir starts a new binary
//! with the same arguments and hands it its listening sockets (the kernel sockets themselves, so
//! connections waiting in their accept queues stay there). Once the new process says it is ready,
//! the old one stops accepting and drains like on SIGTERM; if the new one fails or does not
//! become ready in time, it is stopped and the old one goes on serving.

pub mod activation;
pub mod handoff;
pub mod systemd;

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// Why an upgrade did not happen; the old process keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("cannot prepare the handoff socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the new process exited ({0}) before it was ready")]
    Exited(std::process::ExitStatus),
    #[error("the handoff failed: {0}")]
    Handoff(#[source] std::io::Error),
    #[error("the new process closed the handoff before it was ready (its log says why)")]
    Closed,
    #[error("the new process answered {0:?} instead of `ready PID`")]
    Answer(String),
    #[error("the new process was not ready within {0:?}")]
    Timeout(Duration),
}

/// Listening sockets by listener name (`admin` for the admin API).
pub type NamedSockets = Vec<(String, OwnedFd)>;

/// What the old process needs to start its successor.
pub struct Upgrader {
    /// The binary to start: `--upgrade-binary`, or the path this process started from.
    pub binary: PathBuf,
    /// This process's own arguments, given to the new one unchanged.
    pub args: Vec<OsString>,
    /// Duplicates of the listening sockets in service at the moment of the upgrade, by listener
    /// name (a reload may have added or removed listeners since start).
    pub sockets: Box<dyn Fn() -> std::io::Result<NamedSockets> + Send + Sync>,
    /// How long the new process may take to become ready.
    pub timeout: Duration,
}

impl Upgrader {
    /// Upgrades on each SIGUSR2 until one succeeds; the receiver then yields the new process id.
    pub fn on_sigusr2(self) -> oneshot::Receiver<u32> {
        use tokio::signal::unix::{SignalKind, signal};
        let (done, upgraded) = oneshot::channel();
        let Ok(mut usr2) = signal(SignalKind::user_defined2()) else {
            tracing::error!("cannot install the SIGUSR2 handler; binary upgrades are off");
            std::mem::forget(done);
            return upgraded;
        };
        tokio::spawn(async move {
            while usr2.recv().await.is_some() {
                tracing::info!(binary = %self.binary.display(), "SIGUSR2 received: upgrading the binary");
                match self.attempt().await {
                    Ok(pid) => {
                        let _ = done.send(pid);
                        return;
                    }
                    Err(error) => tracing::error!(%error, "upgrade failed; this process keeps serving"),
                }
            }
        });
        upgraded
    }

    /// Starts the new binary, hands it the sockets and waits until it is ready.
    async fn attempt(&self) -> Result<u32, UpgradeError> {
        let dir = PrivateDir::create().map_err(UpgradeError::Socket)?;
        let path = dir.0.join("handoff.sock");
        let listener = tokio::net::UnixListener::bind(&path).map_err(UpgradeError::Socket)?;
        let spawned = Command::new(&self.binary).args(&self.args).env(handoff::SOCKET_ENV, &path).spawn();
        let binary = self.binary.display().to_string();
        let mut child = spawned.map_err(|source| UpgradeError::Spawn { binary, source })?;
        let pid = child.id().unwrap_or_default();
        let outcome = tokio::time::timeout(self.timeout, self.hand_over(&listener, &mut child, pid)).await;
        match outcome.unwrap_or(Err(UpgradeError::Timeout(self.timeout))) {
            Ok(()) => Ok(pid),
            Err(error) => {
                let _ = child.start_kill();
                tokio::spawn(async move { child.wait().await });
                Err(error)
            }
        }
    }

    async fn hand_over(
        &self,
        listener: &tokio::net::UnixListener,
        child: &mut Child,
        pid: u32,
    ) -> Result<(), UpgradeError> {
        let stream = tokio::select! {
            accepted = listener.accept() => accepted.map_err(UpgradeError::Handoff)?.0,
            status = child.wait() => return Err(UpgradeError::Exited(status.map_err(UpgradeError::Handoff)?)),
        };
        let sockets = (self.sockets)().map_err(UpgradeError::Handoff)?;
        handoff::send(&stream, &sockets).await.map_err(UpgradeError::Handoff)?;
        // This process's duplicates close now; the successor holds its own.
        drop(sockets);
        let mut answer = String::new();
        // One short line; a longer answer is not one this side understands.
        let mut reader = tokio::io::BufReader::new(stream.take(64));
        tokio::select! {
            read = reader.read_line(&mut answer) => read.map_err(UpgradeError::Handoff)?,
            status = child.wait() => return Err(UpgradeError::Exited(status.map_err(UpgradeError::Handoff)?)),
        };
        match answer.trim() {
            "" => Err(UpgradeError::Closed),
            ready if ready == format!("ready {pid}") => Ok(()),
            _ => Err(UpgradeError::Answer(answer)),
        }
    }
}

/// A directory only this user may enter, removed when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn create() -> std::io::Result<PrivateDir> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::var_os("XDG_RUNTIME_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let path = base.join(format!("weir-upgrade-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(PrivateDir(path))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binary to upgrade to when none is named: the one this process started from, by the path
/// it had then, so a new file renamed over it is what starts.
pub fn own_binary() -> Option<PathBuf> {
    let arg0 = std::env::args_os().next().map(PathBuf::from)?;
    match arg0.components().count() > 1 {
        true => std::path::absolute(&arg0).ok(),
        false => std::env::current_exe().ok().filter(|path| Path::new(path).exists()),
    }
}
