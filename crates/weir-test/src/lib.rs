//! Test support for weir: programmable mock upstreams, the gateway in-process, HTTP/1.1 and h2c
//! clients, a raw TCP client for malformed input, a mock OTLP collector, a real redis-server, and
//! an upstream that switches protocols for WebSocket tunnels.
//! Everything binds 127.0.0.1 port 0.

mod client;
mod collector;
mod dns;
mod gateway;
mod mock;
mod openapi;
mod raw;
mod redis;
mod switching;
pub mod tls;

pub use client::{Exchange, h2c_request, http1_request};
pub use collector::{AttributeValue, ExportedSpan, MockCollector};
pub use dns::DnsServer;
pub use gateway::TestGateway;
pub use mock::{MockUpstream, Received};
pub use openapi::OpenApi;
pub use raw::{RawResponse, raw_exchange};
pub use redis::{RedisCluster, RedisServer};
pub use switching::{UPGRADE_REQUEST, open_tunnel, read_head, switching_echo};

/// Every wait in tests is bounded by this, so a broken test fails instead of hanging.
pub const TEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
