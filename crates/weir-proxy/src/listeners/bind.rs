//! One listener's socket and the settings its connections are served with: binding (SO_REUSEPORT,
//! or a socket inherited from systemd or an upgrading weir), the framing limits, the connection
//! cap and the HTTP server builders. Used at start and by reloads that add or change listeners.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use weir_config::{Listener as ListenerConfig, Protocol};
use weir_telemetry::{ListenerMetrics, Metrics};

use super::identity::ListenerId;
use crate::http1::{HeadLimits, Http1Settings};
use crate::http2::{BlockLimits, Http2Settings};
use crate::inherited::InheritedSockets;
use crate::tls::TlsListener;

/// A listener could not get its socket.
#[derive(Debug, thiserror::Error)]
#[error("listener {name}: cannot listen on {address}: {source}")]
pub struct BindError {
    pub name: String,
    pub address: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// What a listener's connections are served with; each connection holds it to its end, so a
/// listener replaced or removed by a reload still serves the connections it accepted.
pub(crate) struct ListenerSettings {
    pub(crate) id: Arc<ListenerId>,
    pub(crate) max_uri_length: usize,
    /// The connection cap; a listener replaced under the same name and cap shares it.
    pub(crate) connections: Arc<Semaphore>,
    /// How HTTP/1.1 is served; `None` when the listener serves only h2c.
    pub(crate) http1: Option<Http1Settings>,
    /// How HTTP/2 is served: h2c, and h2 agreed through ALPN.
    pub(crate) http2: Http2Settings,
    pub(crate) tls: Option<Arc<TlsListener>>,
    pub(crate) metrics: ListenerMetrics,
}

impl ListenerSettings {
    /// Settings for `config`, under identity `id` and counting connections in `connections`.
    pub(crate) fn new(
        config: &ListenerConfig,
        id: Arc<ListenerId>,
        connections: Arc<Semaphore>,
        tls: Option<Arc<TlsListener>>,
        metrics: &Metrics,
    ) -> ListenerSettings {
        ListenerSettings {
            id,
            max_uri_length: config.max_uri_length.0 as usize,
            connections,
            http1: http1_settings(config),
            http2: http2_settings(config),
            tls,
            metrics: metrics.listener(&config.name),
        }
    }

    pub(crate) fn name(&self) -> &str {
        self.id.name()
    }
}

/// The socket inherited for the listener when there is one on its address, else a new one.
pub(crate) fn adopt_or_bind(
    inherited: &mut InheritedSockets,
    name: &str,
    address: SocketAddr,
) -> Result<TcpListener, BindError> {
    match inherited.take(name, address) {
        Some(socket) => Ok(socket),
        None => bind(name, address),
    }
}

/// A new listening socket for the listener called `name`.
pub(crate) fn bind(name: &str, address: SocketAddr) -> Result<TcpListener, BindError> {
    reuse_port_listener(address).map_err(|source| BindError { name: name.into(), address, source })
}

/// A listening socket others may bind too (SO_REUSEPORT), so a new process can take over.
fn reuse_port_listener(address: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

/// HTTP/1.1 service, unless the listener serves only h2c. The idle timeout runs while a connection
/// waits for a request's first byte; `header_read_timeout` bounds the head after it (and a new
/// connection's first byte).
fn http1_settings(config: &ListenerConfig) -> Option<Http1Settings> {
    let h2c = config.protocols.contains(&Protocol::H2c);
    config.protocols.contains(&Protocol::Http1).then_some(Http1Settings {
        idle_timeout: config.idle_timeout.0,
        head_timeout: config.header_read_timeout.0,
        head: HeadLimits {
            max_head_bytes: config.max_head_size.0 as u32,
            max_headers: config.max_headers as u32,
            max_uri_len: config.max_uri_length.0 as u32,
        },
        h2c,
        park_after: park_after(config),
    })
}

/// How long a cleartext HTTP/1.1 connection waits for its next request before it is parked: never
/// on a TLS listener (its session state would go to the parking with it), nor when the idle timeout
/// comes first.
fn park_after(config: &ListenerConfig) -> Option<std::time::Duration> {
    let after = config.idle_park_after.0;
    (config.tls.is_none() && !after.is_zero() && after < config.idle_timeout.0).then_some(after)
}

/// HTTP/2 service: a request's header list is bounded like an HTTP/1.1 head, in bytes and fields.
fn http2_settings(config: &ListenerConfig) -> Http2Settings {
    Http2Settings {
        limits: BlockLimits { max_list_size: config.max_head_size.0 as usize, max_fields: config.max_headers },
        max_concurrent_streams: 256,
        idle_timeout: config.idle_timeout.0,
        preface_timeout: config.header_read_timeout.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(extra: &str) -> ListenerConfig {
        let text = format!("listeners: [{{ name: l, address: \"127.0.0.1:0\", {extra} }}]\nroutes: []\n");
        let config = weir_config::parse_str(&text, weir_config::Format::Yaml, "test").unwrap();
        config.listeners[0].clone()
    }

    #[test]
    fn idle_connections_are_parked_on_cleartext_listeners_before_their_idle_timeout() {
        let secs = std::time::Duration::from_secs;
        assert_eq!(park_after(&listener("idle_timeout: 1m")), Some(secs(1)), "the default");
        assert_eq!(park_after(&listener("idle_park_after: 5s")), Some(secs(5)));
        assert_eq!(park_after(&listener("idle_park_after: 0s")), None, "zero: never");
        assert_eq!(park_after(&listener("idle_timeout: 1s")), None, "the idle timeout comes first");
        let tls = "tls: { certificates: [{ cert: /weir/cert.pem, key: /weir/key.pem }] }";
        assert_eq!(park_after(&listener(tls)), None, "TLS connections are not parked");
    }
}
