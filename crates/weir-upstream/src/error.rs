//! Why a call to an upstream endpoint failed, with the endpoint named.

use std::net::SocketAddr;

/// A failed call to an upstream endpoint.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("endpoint {addr}: connect failed: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("endpoint {addr}: all {max} connections busy, none freed in time")]
    PoolExhausted { addr: SocketAddr, max: usize },
    #[error("endpoint {addr}: connect timed out")]
    ConnectTimeout { addr: SocketAddr },
    #[error("endpoint {addr}: TLS handshake: {source}")]
    Tls {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("endpoint {addr}: HTTP handshake failed: {source}")]
    Handshake {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("endpoint {addr}: {source}")]
    Exchange {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("endpoint {addr}: {source}")]
    Http1 {
        addr: SocketAddr,
        #[source]
        source: crate::http1::Http1Error,
    },
}
