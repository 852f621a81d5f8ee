//! A route's `websocket` section: whether WebSocket upgrades are tunneled to the upstream, and how
//! long a tunnel may stay silent.

use serde::Deserialize;

use crate::values::Duration;

/// WebSocket tunnels on a route.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocket {
    /// Tunnel upgrades to the upstream; without it an upgrade request is proxied as a plain request.
    pub enabled: bool,
    /// A tunnel with no byte in either direction for this long is closed (`0s`: never).
    pub idle_timeout: Duration,
}

impl Default for WebSocket {
    fn default() -> Self {
        WebSocket { enabled: true, idle_timeout: Duration::from_secs(300) }
    }
}
