//! Minimal HTTP clients for tests: one request per fresh connection, HTTP/1.1 or h2c, whole
//! response collected with its trailers.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// A response as a test sees it.
#[derive(Debug)]
pub struct Exchange {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Exchange {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Sends one HTTP/1.1 request on a new connection. Like any HTTP/1.1 client it sends `Host`: the
/// request's own, else its URI's authority, else the address it connects to.
pub async fn http1_request<B>(addr: SocketAddr, mut request: Request<B>) -> Result<Exchange, hyper::Error>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    with_host(&mut request, addr);
    let stream = TcpStream::connect(addr).await.expect("connect to gateway");
    stream.set_nodelay(true).expect("set TCP_NODELAY");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    collect(response).await
}

/// Adds `Host` to an HTTP/1.1 request that has none, as a client library would.
pub(crate) fn with_host<B>(request: &mut Request<B>, addr: SocketAddr) {
    if request.headers().contains_key(http::header::HOST) {
        return;
    }
    let host = request.uri().authority().map_or_else(|| addr.to_string(), |a| a.as_str().to_owned());
    let value = http::HeaderValue::from_str(&host).expect("an authority is a valid header value");
    request.headers_mut().insert(http::header::HOST, value);
}

/// Sends one HTTP/2 request with prior knowledge on a new connection.
pub async fn h2c_request<B>(addr: SocketAddr, request: Request<B>) -> Result<Exchange, hyper::Error>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let stream = TcpStream::connect(addr).await.expect("connect to gateway");
    stream.set_nodelay(true).expect("set TCP_NODELAY");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    collect(response).await
}

pub(crate) async fn collect(response: http::Response<hyper::body::Incoming>) -> Result<Exchange, hyper::Error> {
    let (parts, body) = response.into_parts();
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    Ok(Exchange { status: parts.status, headers: parts.headers, body: collected.to_bytes(), trailers })
}
