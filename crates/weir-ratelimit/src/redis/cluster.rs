//! Redis Cluster: the same one-round-trip decisions, sent to the node that owns the key's slot. The
//! slot map comes from `CLUSTER SLOTS` on first use and again whenever a node answers `MOVED`; the
//! moved decision is retried once on the node named in the answer. Each node gets its own pipelined
//! connection ([`RedisClient`]). `ASK` (a slot half-way through migrating) is not followed: such a
//! decision fails and the rule's failure mode applies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};

use super::resp::Reply;
use super::{Granted, RedisClient, RedisError, RedisSettings};
use crate::gcra::Quota;

/// The slots a Redis Cluster has.
const SLOTS: u16 = 16384;

type Node = (String, u16);

/// A client for a Redis Cluster, found from one seed node.
pub struct ClusterClient {
    seed: RedisSettings,
    slots: ArcSwapOption<SlotMap>,
    nodes: ArcSwap<HashMap<Node, Arc<RedisClient>>>,
    /// Serializes additions to `nodes` (rare: a node seen for the first time).
    adding: Mutex<()>,
    refreshing: AtomicBool,
}

/// Slot ranges and their primary nodes, sorted by first slot.
struct SlotMap {
    ranges: Vec<(u16, u16, Node)>,
}

impl SlotMap {
    fn node(&self, slot: u16) -> Option<&Node> {
        let index = self.ranges.partition_point(|(_, end, _)| *end < slot);
        self.ranges.get(index).filter(|(start, _, _)| *start <= slot).map(|(_, _, node)| node)
    }
}

impl ClusterClient {
    pub fn new(seed: RedisSettings) -> Arc<ClusterClient> {
        Arc::new(ClusterClient {
            seed,
            slots: ArcSwapOption::empty(),
            nodes: ArcSwap::from_pointee(HashMap::new()),
            adding: Mutex::new(()),
            refreshing: AtomicBool::new(false),
        })
    }

    /// Whether the slot map is known and some node's connection is live.
    pub fn is_connected(&self) -> bool {
        self.slots.load().is_some() && self.nodes.load().values().any(|node| node.is_connected())
    }

    /// Decides one request for `key` (up to `wanted` requests' worth) on the node owning its slot.
    pub async fn decide(self: &Arc<Self>, key: &[u8], quota: &Quota, wanted: u32) -> Result<Granted, RedisError> {
        let map = match self.slots.load_full() {
            Some(map) => map,
            None => self.refresh().await?,
        };
        let node = map.node(slot(key)).ok_or(RedisError::Unavailable)?;
        match self.client(node).decide(key, quota, wanted).await {
            Err(RedisError::Refused(message)) if message.starts_with("MOVED ") => {
                self.refresh_in_background();
                let target = moved_target(&message).ok_or(RedisError::Protocol)?;
                self.client(&target).decide(key, quota, wanted).await
            }
            other => other,
        }
    }

    /// The client for `node`, made on first sight.
    fn client(&self, node: &Node) -> Arc<RedisClient> {
        if let Some(client) = self.nodes.load().get(node) {
            return client.clone();
        }
        let _adding = self.adding.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut nodes = HashMap::clone(&self.nodes.load());
        let settings = RedisSettings { host: node.0.clone(), port: node.1, connect_timeout: self.seed.connect_timeout };
        let client = nodes.entry(node.clone()).or_insert_with(|| RedisClient::new(settings)).clone();
        self.nodes.store(Arc::new(nodes));
        client
    }

    fn refresh_in_background(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let client = self.clone();
        tokio::spawn(async move {
            if let Err(error) = client.refresh().await {
                tracing::warn!(%error, "cannot refresh the Redis Cluster slot map");
            }
            client.refreshing.store(false, Ordering::Release);
        });
    }

    /// Reads the slot map from the seed, else from any node known.
    async fn refresh(self: &Arc<Self>) -> Result<Arc<SlotMap>, RedisError> {
        let mut candidates = vec![(self.seed.host.clone(), self.seed.port)];
        candidates.extend(self.nodes.load().keys().filter(|n| n.0 != self.seed.host || n.1 != self.seed.port).cloned());
        let mut last = RedisError::Unavailable;
        for node in candidates {
            match self.client(&node).command(&[b"CLUSTER", b"SLOTS"]).await.and_then(|r| slot_map(r, &node.0)) {
                Ok(map) => {
                    let map = Arc::new(map);
                    self.slots.store(Some(map.clone()));
                    return Ok(map);
                }
                Err(error) => last = error,
            }
        }
        Err(last)
    }
}

/// Reads a `CLUSTER SLOTS` reply; a node announced without an address is the one asked (`asked`).
fn slot_map(reply: Reply, asked: &str) -> Result<SlotMap, RedisError> {
    let Reply::Array(Some(entries)) = reply else { return Err(RedisError::Protocol) };
    let mut ranges = Vec::with_capacity(entries.len());
    for entry in entries {
        let Reply::Array(Some(fields)) = entry else { return Err(RedisError::Protocol) };
        let (Some(Reply::Integer(start)), Some(Reply::Integer(end)), Some(Reply::Array(Some(primary)))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return Err(RedisError::Protocol);
        };
        let (Some(Reply::Bulk(Some(host))), Some(Reply::Integer(port))) = (primary.first(), primary.get(1)) else {
            return Err(RedisError::Protocol);
        };
        let host = String::from_utf8_lossy(host).into_owned();
        let host = if host.is_empty() || host == "?" { asked.to_string() } else { host };
        let slot = |n: i64| u16::try_from(n).ok().filter(|s| *s < SLOTS).ok_or(RedisError::Protocol);
        let port = u16::try_from(*port).map_err(|_| RedisError::Protocol)?;
        ranges.push((slot(*start)?, slot(*end)?, (host, port)));
    }
    ranges.sort_unstable_by_key(|(start, _, _)| *start);
    Ok(SlotMap { ranges })
}

/// The node in `MOVED <slot> <host>:<port>`.
fn moved_target(message: &str) -> Option<Node> {
    let address = message.split_whitespace().nth(2)?;
    let (host, port) = address.rsplit_once(':')?;
    Some((host.trim_start_matches('[').trim_end_matches(']').to_string(), port.parse().ok()?))
}

/// The cluster slot of a key: CRC16 of its hash tag (the text between the first `{` and the next
/// `}`, when not empty), else of the whole key.
pub fn slot(key: &[u8]) -> u16 {
    let tag = key.iter().position(|b| *b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        rest.iter().position(|b| *b == b'}').filter(|close| *close > 0).map(|close| &rest[..close])
    });
    crc16(tag.unwrap_or(key)) % SLOTS
}

/// CRC16-CCITT (XModem), the checksum Redis Cluster uses for slots.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for byte in data {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_redis() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"), "an empty tag hashes the whole key");
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
        assert_eq!(slot(b"weir:rl:{a/b/c}"), slot(b"a/b/c"));
    }

    #[test]
    fn moved_answers_name_the_node() {
        assert_eq!(moved_target("MOVED 3999 127.0.0.1:6381"), Some(("127.0.0.1".to_string(), 6381)));
        assert_eq!(moved_target("MOVED 3999 [::1]:6381"), Some(("::1".to_string(), 6381)));
        assert_eq!(moved_target("MOVED 3999"), None);
    }

    #[test]
    fn slot_maps_find_the_owner() {
        let node = |port: i64| Reply::Array(Some(vec![Reply::Bulk(Some(b"127.0.0.1".to_vec())), Reply::Integer(port)]));
        let range = |start, end, port| Reply::Array(Some(vec![Reply::Integer(start), Reply::Integer(end), node(port)]));
        let reply = Reply::Array(Some(vec![range(5461, 10922, 2), range(0, 5460, 1), range(10923, 16383, 3)]));
        let map = slot_map(reply, "seed").unwrap();
        assert_eq!(map.node(0).unwrap().1, 1);
        assert_eq!(map.node(5461).unwrap().1, 2);
        assert_eq!(map.node(16383).unwrap().1, 3);
    }
}
