//! Global limits through Redis: a GCRA decision is one `EVALSHA` of a small Lua script, atomic on
//! the server and timed by the server's clock, so every weir instance sharing the Redis shares one
//! bucket per key. Many decisions share one pipelined connection ([`link`]), and the decisions for
//! one key that are sent together go as one call; a broken connection is replaced in the background
//! while decisions fall back as their rule says.

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
use link::{Ask, Link, Share};
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
    sha: Arc<[u8]>,
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
        if wanted <= 1 {
            let ask = Ask {
                sha: connected.sha.clone(),
                key: key.to_vec(),
                interval: quota.interval(),
                tolerance: quota.tolerance(),
            };
            return match connected.link.decide(ask).await? {
                // The script cache was flushed: this request is decided alone, with the script itself.
                (Reply::Error(message), _) if message.starts_with("NOSCRIPT") => {
                    let reply = self.evaluate(&connected, key, quota, 1).await?;
                    decision(reply)
                }
                (reply, share) => shared_decision(reply, share, quota),
            };
        }
        let mut command = Vec::with_capacity(128 + key.len());
        let (interval, tolerance) = (quota.interval(), quota.tolerance());
        write_script_call(&mut command, b"EVALSHA", &connected.sha, key, interval, tolerance, wanted);
        let reply = match connected.link.call(command).await? {
            // The script cache was flushed or a replica took over: send the script itself.
            Reply::Error(message) if message.starts_with("NOSCRIPT") => {
                self.evaluate(&connected, key, quota, wanted).await?
            }
            reply => reply,
        };
        decision(reply)
    }

    /// Runs the script itself (not by its SHA1) for `key`, taking up to `wanted` requests' worth.
    async fn evaluate(
        &self,
        connected: &Connected,
        key: &[u8],
        quota: &Quota,
        wanted: u32,
    ) -> Result<Reply, RedisError> {
        let mut command = Vec::with_capacity(SCRIPT.len() + 128 + key.len());
        let (interval, tolerance) = (quota.interval(), quota.tolerance());
        write_script_call(&mut command, b"EVAL", SCRIPT.as_bytes(), key, interval, tolerance, wanted);
        connected.link.call(command).await
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
            Reply::Bulk(Some(sha)) => Ok(Connected { link, sha: sha.into() }),
            Reply::Error(message) => Err(RedisError::Refused(message)),
            _ => Err(RedisError::Protocol),
        }
    }
}

/// Appends a call of the GCRA script (`EVALSHA` with its SHA1, or `EVAL` with its text) for `key`,
/// with the quota's interval and tolerance in nanoseconds, taking up to `wanted` requests' worth.
fn write_script_call(
    out: &mut Vec<u8>,
    verb: &[u8],
    script: &[u8],
    key: &[u8],
    interval: u64,
    tolerance: u64,
    wanted: u32,
) {
    let mut digits = [resp::Decimal::default(), resp::Decimal::default(), resp::Decimal::default()];
    let [interval_digits, tolerance_digits, wanted_digits] = &mut digits;
    let args =
        [interval_digits.of(interval), tolerance_digits.of(tolerance), wanted_digits.of(u64::from(wanted.max(1)))];
    resp::write_command(out, &[verb, script, b"1", key, args[0], args[1], args[2]]);
}

/// A global decision: what it says of the request, and how many requests' worth of the key's
/// bucket it took (0 when refused; more than 1 for a lease).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub decision: Decision,
    pub count: u32,
}

/// One request's decision from a call that decided `share.of` requests for its key together, as
/// the script would have decided them one after another: the first `granted` callers are allowed,
/// each with what was left after its own, and the rest refused until one more fits.
fn shared_decision(reply: Reply, share: Share, quota: &Quota) -> Result<Granted, RedisError> {
    let all = decision(reply)?;
    if share.of <= 1 {
        return Ok(all);
    }
    let (granted, index) = (all.count, share.index);
    let decision = if index < granted {
        // Requests taken after this one.
        let after = u64::from(granted - 1 - index);
        Decision {
            allowed: true,
            remaining: all.decision.remaining.saturating_add(after as u32),
            retry_after: 0,
            reset_after: all.decision.reset_after.saturating_sub(after * quota.interval()),
        }
    } else if granted == 0 {
        all.decision
    } else {
        let wait = (all.decision.reset_after + quota.interval()).saturating_sub(quota.tolerance());
        Decision { allowed: false, remaining: 0, retry_after: wait.max(1), reset_after: all.decision.reset_after }
    };
    Ok(Granted { decision, count: u32::from(decision.allowed) })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcra;

    /// What `gcra.lua` answers, in its units (microseconds), for a key whose TAT is `tat` at `now`
    /// taking up to `wanted`.
    fn script(tat: u64, now: u64, interval: u64, tolerance: u64, wanted: u64) -> Reply {
        let tat = tat.max(now);
        let ahead = tat + interval - now;
        let numbers = if ahead > tolerance {
            [0, 0, ahead - tolerance, tat - now]
        } else {
            let granted = wanted.min((tolerance - (tat - now)) / interval).max(1);
            let ahead = tat + granted * interval - now;
            [granted, (tolerance - ahead) / interval, 0, ahead]
        };
        Reply::Array(Some(numbers.iter().map(|&n| Reply::Integer(n as i64)).collect()))
    }

    /// Each share of a gathered call is decided as the requests one after another would have been.
    #[test]
    fn a_shared_call_decides_each_request_as_one_after_another() {
        // Microseconds here, nanoseconds in `Quota` and decisions.
        let (interval, burst) = (250u64, 8u32);
        let quota = Quota::new(4, 1_000_000, burst);
        assert_eq!(quota.interval(), interval * 1000);
        for tat_ahead in [0, 1, 249, 250, 1000, 1999, 2000, 2001, 5000] {
            for wanted in [2u32, 3, 7, 8, 12] {
                let now = 1_000_000u64;
                let tat = now + tat_ahead;
                let reply = script(tat, now, interval, interval * u64::from(burst), u64::from(wanted));
                let mut sequential_tat = tat * 1000;
                for index in 0..wanted {
                    let (expected, next) = gcra::decide(sequential_tat, now * 1000, &quota);
                    sequential_tat = next;
                    let share = Share { index, of: wanted };
                    let got = shared_decision(reply.clone(), share, &quota).unwrap();
                    assert_eq!(got.decision, expected, "TAT {tat_ahead} us ahead, {wanted} wanted, request {index}");
                    assert_eq!(got.count, u32::from(expected.allowed));
                }
            }
        }
    }
}
