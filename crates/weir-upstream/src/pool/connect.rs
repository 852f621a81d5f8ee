//! Making a connection to an endpoint: TCP (with keep-alive probes), TLS when the upstream has it,
//! then the HTTP version the upstream speaks, HTTP/2 by prior knowledge in cleartext or as ALPN
//! picked over TLS. An HTTP/2 connection is driven by a task of its own; an HTTP/1.1 one is used
//! directly by the request on it (`crate::http1`).

use std::net::SocketAddr;

use http_body::Body;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{BoxError, EndpointPool, Http2Settings, UpstreamProtocol};
use crate::error::UpstreamError;
use crate::http1::{Http1Connection, Stream};

/// A new connection, or its sending half.
pub(super) enum Sender<B> {
    Http1(Box<Http1Connection>),
    Http2(http2::SendRequest<B>),
}

impl<B> EndpointPool<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    pub(super) async fn connect(&self) -> Result<Sender<B>, UpstreamError> {
        let addr = self.addr;
        let stream = self.connect_tcp().await?;
        let protocol = self.settings.protocol;
        let Some(tls) = &self.settings.tls else {
            return match protocol {
                UpstreamProtocol::Http2 => http2_handshake(addr, stream, &self.settings.http2).await,
                UpstreamProtocol::Http1 | UpstreamProtocol::Auto => {
                    Ok(Sender::Http1(Http1Connection::new(Stream::Tcp(stream))))
                }
            };
        };
        let connecting = tls.connector.connect(tls.server_name.clone(), stream);
        let stream = tokio::time::timeout(self.settings.connect_timeout, connecting)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout { addr })?
            .map_err(|source| UpstreamError::Tls { addr, source })?;
        let picked_http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        match protocol {
            // Only `h2` was offered: an endpoint that names no protocol speaks it by prior knowledge.
            UpstreamProtocol::Http2 => http2_handshake(addr, stream, &self.settings.http2).await,
            UpstreamProtocol::Auto if picked_http2 => http2_handshake(addr, stream, &self.settings.http2).await,
            UpstreamProtocol::Http1 | UpstreamProtocol::Auto => {
                Ok(Sender::Http1(Http1Connection::new(Stream::Tls(Box::new(stream)))))
            }
        }
    }

    async fn connect_tcp(&self) -> Result<TcpStream, UpstreamError> {
        let addr = self.addr;
        let stream = tokio::time::timeout(self.settings.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout { addr })?
            .map_err(|source| UpstreamError::Connect { addr, source })?;
        let _ = stream.set_nodelay(true);
        if let Some(idle) = self.settings.tcp_keepalive {
            let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle));
        }
        Ok(stream)
    }
}

/// Starts HTTP/2 on a connected stream and drives the connection in a task, with PINGs to find a
/// peer that went away silently.
async fn http2_handshake<B, S>(
    addr: SocketAddr,
    stream: S,
    settings: &Http2Settings,
) -> Result<Sender<B>, UpstreamError>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http2::Builder::new(crate::BoxedSpawn)
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.keepalive_interval)
        .keep_alive_timeout(settings.keepalive_timeout)
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| UpstreamError::Handshake { addr, source })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(endpoint = %addr, %error, "upstream connection ended");
        }
    });
    Ok(Sender::Http2(sender))
}
