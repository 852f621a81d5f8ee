//! The OTLP/HTTP export call: the encoded `ExportTraceServiceRequest` as the body of a
//! `POST /v1/traces` (`application/x-protobuf`) on one HTTP/1.1 keep-alive connection to the
//! collector, made when first needed and made again after it breaks. Any 2xx is success.

use bytes::Bytes;
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::ExportError;

/// The path spans are posted to.
pub const TRACES_PATH: &str = "/v1/traces";

/// An OTLP/HTTP client for one collector.
pub struct HttpExporter {
    /// `host:port` to connect to, also sent as `Host`.
    authority: String,
    host: HeaderValue,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl HttpExporter {
    /// A client for the collector at `endpoint` (`http://host:port`, port 4318 when left out).
    pub fn new(endpoint: &Uri) -> HttpExporter {
        let authority = super::authority(endpoint, 4318);
        let host = HeaderValue::from_str(&authority).expect("a validated endpoint is a valid Host");
        HttpExporter { authority, host, connection: None }
    }

    /// Posts one encoded `ExportTraceServiceRequest`.
    pub async fn export(&mut self, message: Vec<u8>) -> Result<(), ExportError> {
        let request = Request::post(TRACES_PATH)
            .header(http::header::HOST, self.host.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(message)))
            .expect("a valid request head");
        let sender = self.connection().await?;
        let response = sender.send_request(request).await.inspect_err(|_| self.connection = None)?;
        let status = response.status();
        // Read the answer whole, so the connection can carry the next call.
        response.into_body().collect().await.inspect_err(|_| self.connection = None)?;
        if status.is_success() { Ok(()) } else { Err(ExportError::Status(status)) }
    }

    async fn connection(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, ExportError> {
        if self.connection.as_ref().is_some_and(|c| c.is_closed()) {
            self.connection = None;
        }
        if self.connection.is_none() {
            let connect_error = |source| ExportError::Connect { authority: self.authority.clone(), source };
            let stream = TcpStream::connect(self.authority.as_str()).await.map_err(connect_error)?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "collector connection closed");
                }
            });
            self.connection = Some(sender);
        }
        let sender = self.connection.as_mut().expect("set above");
        if std::future::poll_fn(|cx| sender.poll_ready(cx)).await.is_err() {
            self.connection = None;
            return Err(ExportError::Closed);
        }
        Ok(self.connection.as_mut().expect("ready above"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_port_is_otlp_http_s() {
        assert_eq!(HttpExporter::new(&"http://c".parse().unwrap()).authority, "c:4318");
        assert_eq!(HttpExporter::new(&"http://c:9999".parse().unwrap()).host, "c:9999");
    }
}
