//! One TLS handshake on an accepted connection, bounded by the listener's handshake timeout,
//! counted by result, and what it settled ([`TlsInfo`]) kept for the connection's requests.

use std::io;

use rustls::{HandshakeKind, ProtocolVersion, ServerConnection};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use weir_telemetry::HandshakeFailure;

use super::TlsListener;
use super::identity::ClientIdentity;

/// What a connection's TLS handshake settled.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// `1.2` or `1.3`.
    pub version: &'static str,
    /// The server name the client asked for.
    pub sni: Option<Box<str>>,
    /// The application protocol agreed through ALPN (`h2`, `http/1.1`).
    pub alpn: Option<&'static str>,
    /// The verified client certificate's identity (mutual TLS).
    pub client: Option<ClientIdentity>,
    /// The handshake resumed an earlier session.
    pub resumed: bool,
}

impl TlsInfo {
    fn of(connection: &ServerConnection) -> TlsInfo {
        let version = match connection.protocol_version() {
            Some(ProtocolVersion::TLSv1_2) => "1.2",
            _ => "1.3",
        };
        let alpn = match connection.alpn_protocol() {
            Some(b"h2") => Some("h2"),
            Some(b"http/1.1") => Some("http/1.1"),
            _ => None,
        };
        let client = connection.peer_certificates().and_then(|chain| chain.first());
        TlsInfo {
            version,
            sni: connection.server_name().map(Box::from),
            alpn,
            client: client.and_then(ClientIdentity::from_certificate),
            resumed: connection.handshake_kind() == Some(HandshakeKind::Resumed),
        }
    }

    /// Whether the client agreed to HTTP/2.
    pub fn is_h2(&self) -> bool {
        self.alpn == Some("h2")
    }
}

/// Runs the server side of a handshake on `stream`. A failure is counted and logged at debug level
/// (clients that probe or give up are common); the connection is then dropped.
pub async fn handshake<S>(listener: &TlsListener, stream: S) -> Option<(TlsStream<S>, TlsInfo)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let acceptor = TlsAcceptor::from(listener.server_config());
    let accepted = tokio::time::timeout(listener.handshake_timeout(), acceptor.accept(stream)).await;
    let metrics = listener.metrics();
    match accepted {
        Ok(Ok(stream)) => {
            let info = TlsInfo::of(stream.get_ref().1);
            metrics.handshake_ok(usize::from(info.version == "1.3"), info.resumed);
            Some((stream, info))
        }
        Ok(Err(error)) => {
            let why = failure_kind(&error);
            metrics.handshake_failed(why);
            tracing::debug!(listener = %listener.name, result = why.label(), %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            metrics.handshake_failed(HandshakeFailure::Timeout);
            tracing::debug!(listener = %listener.name, "TLS handshake timed out");
            None
        }
    }
}

/// What a failed handshake is counted as.
fn failure_kind(error: &io::Error) -> HandshakeFailure {
    let Some(tls) = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return HandshakeFailure::Io;
    };
    match tls {
        rustls::Error::NoCertificatesPresented => HandshakeFailure::NoClientCertificate,
        rustls::Error::InvalidCertificate(_) => HandshakeFailure::BadClientCertificate,
        rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => HandshakeFailure::NoSharedProtocol,
        _ => HandshakeFailure::Protocol,
    }
}
