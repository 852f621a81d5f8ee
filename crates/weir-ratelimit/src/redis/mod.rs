//! Global limits through Redis: a GCRA decision is one `EVALSHA` of a small Lua script, atomic on
//! the server and timed by the server's clock, so every weir instance sharing the Redis shares one
//! bucket per key. Many decisions share one pipelined connection ([`link`]); a broken connection
//! is replaced in the background while decisions fall back as their rule says.

mod cluster;
mod link;
mod resp;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::Notify;

use crate::gcra::{Decision, Quota};
pub use cluster::ClusterClient;
use link::Link;
use resp::Reply;

const SCRIPT: &str = include_str!("gcra.lua");
/// How soon after a failed connection attempt the next one may start.
const RECONNECT_DELAY: Duration = Duration::from_millis(200);

/// Why a global decision could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("Redis did not answer in time")]
    Timeout,
    #[error("Redis is not connected")]
    Unavailable,
    #[error("the connection to Redis closed")]
    Closed,
    #[error("the connection to Redis broke: {0}")]
    Broken(String),
    #[error("Redis: {0}")]
    Io(#[source] std::io::Error),
    #[error("Redis sent something that is not RESP")]
    Protocol,
    #[error("Redis refused the command: {0}")]
    Refused(String),
}

/// Where Redis is and how long to wait for a connection. The host name is resolved at each
/// connection attempt, so a Redis that moves is found again.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub host: String,
    pub port: u16,
    pub connect_timeout: Duration,
}

/// A connection to one Redis, made on first use and remade when it breaks.
pub struct RedisClient {
    settings: RedisSettings,
    link: ArcSwapOption<Connected>,
    connecting: AtomicBool,
    /// Set after the first connection: from then on decisions never wait for a reconnection, so an
    /// outage costs no latency; only the first connection is waited for (within the caller's timeout).
    was_connected: AtomicBool,
    /// Milliseconds since the client was made before which no new attempt starts.
    retry_at_ms: AtomicU64,
    born: std::time::Instant,
    attempt_done: Notify,
}

/// A live link and the SHA1 Redis gave the script on it.
struct Connected {
    link: Link,
    sha: Vec<u8>,
}

impl RedisClient {
    pub fn new(settings: RedisSettings) -> Arc<RedisClient> {
        Arc::new(RedisClient {
            settings,
            link: ArcSwapOption::empty(),
            connecting: AtomicBool::new(false),
            was_connected: AtomicBool::new(false),
            retry_at_ms: AtomicU64::new(0),
            born: std::time::Instant::now(),
            attempt_done: Notify::new(),
        })
    }

    /// Decides one request for `key` on Redis, taking up to `wanted` requests' worth of its bucket
    /// at once (a lease). The caller bounds the wait with its own timeout.
    pub async fn decide(self: &Arc<Self>, key: &[u8], quota: &Quota, wanted: u32) -> Result<Granted, RedisError> {
        let connected = self.connected().await?;
        let mut digits = [resp::Decimal::default(), resp::Decimal::default(), resp::Decimal::default()];
        let [interval, tolerance, wanted_digits] = &mut digits;
        let args = [
            interval.of(quota.interval()),
            tolerance.of(quota.tolerance()),
            wanted_digits.of(u64::from(wanted.max(1))),
        ];
        let mut command = Vec::with_capacity(128 + key.len());
        resp::write_command(&mut command, &[b"EVALSHA", &connected.sha, b"1", key, args[0], args[1], args[2]]);
        let reply = match connected.link.call(command).await? {
            Reply::Error(message) if message.starts_with("NOSCRIPT") => {
                // The script cache was flushed or a replica took over: send the script itself.
                let mut command = Vec::with_capacity(SCRIPT.len() + 128 + key.len());
                resp::write_command(&mut command, &[b"EVAL", SCRIPT.as_bytes(), b"1", key, args[0], args[1], args[2]]);
                connected.link.call(command).await?
            }
            reply => reply,
        };
        decision(reply)
    }

    /// Whether a live connection is held now (for operators: the admin API's `/ratelimits`).
    pub fn is_connected(&self) -> bool {
        self.link.load().as_ref().is_some_and(|c| !c.link.is_closed())
    }

    /// Sends one command and returns its reply, whatever it is.
    async fn command(self: &Arc<Self>, args: &[&[u8]]) -> Result<Reply, RedisError> {
        let connected = self.connected().await?;
        let mut command = Vec::new();
        resp::write_command(&mut command, args);
        connected.link.call(command).await
    }

    /// The live connection, waiting for an attempt already under way (or one started now).
    async fn connected(self: &Arc<Self>) -> Result<Arc<Connected>, RedisError> {
        let done = self.attempt_done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        if let Some(connected) = self.link.load_full().filter(|c| !c.link.is_closed()) {
            return Ok(connected);
        }
        let started = self.start_attempt();
        if self.was_connected.load(Ordering::Acquire) || (!started && !self.connecting.load(Ordering::Acquire)) {
            return Err(RedisError::Unavailable);
        }
        done.await;
        self.link.load_full().filter(|c| !c.link.is_closed()).ok_or(RedisError::Unavailable)
    }

    /// Starts a connection attempt in the background unless one is running or the last failed too
    /// recently. Returns whether it started one.
    fn start_attempt(self: &Arc<Self>) -> bool {
        let now_ms = self.born.elapsed().as_millis() as u64;
        if now_ms < self.retry_at_ms.load(Ordering::Acquire) {
            return false;
        }
        if self.connecting.swap(true, Ordering::AcqRel) {
            return false;
        }
        let client = self.clone();
        tokio::spawn(async move {
            let result = client.connect().await;
            match result {
                Ok(connected) => {
                    client.link.store(Some(Arc::new(connected)));
                    client.was_connected.store(true, Ordering::Release);
                }
                Err(error) => {
                    tracing::warn!(%error, host = %client.settings.host, port = client.settings.port, "cannot connect to Redis");
                    let retry = client.born.elapsed() + RECONNECT_DELAY;
                    client.retry_at_ms.store(retry.as_millis() as u64, Ordering::Release);
                }
            }
            client.connecting.store(false, Ordering::Release);
            client.attempt_done.notify_waiters();
        });
        true
    }

    async fn connect(&self) -> Result<Connected, RedisError> {
        let timeout = self.settings.connect_timeout;
        let link = Link::connect(&self.settings.host, self.settings.port, timeout).await?;
        let mut command = Vec::new();
        resp::write_command(&mut command, &[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
        let reply = tokio::time::timeout(timeout, link.call(command)).await.map_err(|_| RedisError::Timeout)??;
        match reply {
            Reply::Bulk(Some(sha)) => Ok(Connected { link, sha }),
            Reply::Error(message) => Err(RedisError::Refused(message)),
            _ => Err(RedisError::Protocol),
        }
    }
}

/// A global decision: what it says of the request, and how many requests' worth of the key's
/// bucket it took (0 when refused; more than 1 for a lease).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub decision: Decision,
    pub count: u32,
}

/// Reads the script's `{granted, remaining, retry_after_us, reset_after_us}`.
fn decision(reply: Reply) -> Result<Granted, RedisError> {
    let items = match reply {
        Reply::Array(Some(items)) => items,
        Reply::Error(message) => return Err(RedisError::Refused(message)),
        _ => return Err(RedisError::Protocol),
    };
    let numbers: Vec<u64> = items
        .into_iter()
        .map(|item| match item {
            Reply::Integer(n) => Ok(n.max(0) as u64),
            _ => Err(RedisError::Protocol),
        })
        .collect::<Result<_, _>>()?;
    let [granted, remaining, retry_after_us, reset_after_us] = numbers[..] else { return Err(RedisError::Protocol) };
    let decision = Decision {
        allowed: granted >= 1,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        retry_after: retry_after_us.saturating_mul(1000),
        reset_after: reset_after_us.saturating_mul(1000),
    };
    Ok(Granted { decision, count: u32::try_from(granted).unwrap_or(u32::MAX) })
}

/// Where global rules decide: one Redis, or a Redis Cluster.
#[derive(Clone)]
pub enum RedisBackend {
    Node(Arc<RedisClient>),
    Cluster(Arc<ClusterClient>),
}

impl RedisBackend {
    /// A backend for the Redis at `settings`; with `cluster`, that Redis is a seed of a cluster.
    pub fn new(settings: RedisSettings, cluster: bool) -> RedisBackend {
        if cluster {
            RedisBackend::Cluster(ClusterClient::new(settings))
        } else {
            RedisBackend::Node(RedisClient::new(settings))
        }
    }

    /// Whether the backend holds a live connection (for a cluster: to at least one node).
    pub fn is_connected(&self) -> bool {
        match self {
            RedisBackend::Node(client) => client.is_connected(),
            RedisBackend::Cluster(cluster) => cluster.is_connected(),
        }
    }

    /// Decides one request for `key`, taking up to `wanted` requests' worth of its bucket. The
    /// caller bounds the wait with its own timeout.
    pub async fn decide(&self, key: &[u8], quota: &Quota, wanted: u32) -> Result<Granted, RedisError> {
        match self {
            RedisBackend::Node(client) => client.decide(key, quota, wanted).await,
            RedisBackend::Cluster(cluster) => cluster.decide(key, quota, wanted).await,
        }
    }
}
