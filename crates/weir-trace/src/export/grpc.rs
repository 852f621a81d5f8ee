//! The OTLP/gRPC export call: `TraceService/Export` as a unary gRPC call over one cleartext HTTP/2
//! connection to the collector, made when first needed and made again after it breaks. The request
//! is the encoded `ExportTraceServiceRequest` in gRPC's length-prefixed framing; success is HTTP 200
//! with `grpc-status: 0`, in the trailers or in a trailers-only answer.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// The gRPC method spans are exported with.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Why an export call failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("connecting to the collector at {authority}: {source}")]
    Connect {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP/2 with the collector: {0}")]
    Http(#[from] hyper::Error),
    #[error("the collector answered HTTP {0}")]
    Status(http::StatusCode),
    #[error("the collector answered gRPC status {code}: {message}")]
    Grpc { code: u32, message: String },
    #[error("the collector sent no gRPC status")]
    NoStatus,
    #[error("the export call took longer than {0:?}")]
    Timeout(std::time::Duration),
    #[error("the collector closed the connection")]
    Closed,
}

/// A gRPC client for one collector.
pub struct GrpcExporter {
    /// `host:port` to connect to.
    authority: String,
    /// The absolute URI of the export method (HTTP/2 sends its scheme and authority).
    uri: Uri,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl GrpcExporter {
    /// A client for the collector at `endpoint` (`http://host:port`); it connects on first use.
    pub fn new(endpoint: &Uri) -> GrpcExporter {
        let authority = super::authority(endpoint, 4317);
        let uri = Uri::builder()
            .scheme("http")
            .authority(authority.as_str())
            .path_and_query(EXPORT_PATH)
            .build()
            .expect("a validated endpoint makes a valid URI");
        GrpcExporter { authority, uri, connection: None }
    }

    /// Sends one encoded `ExportTraceServiceRequest`.
    pub async fn export(&mut self, message: Vec<u8>) -> Result<(), ExportError> {
        let request = Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(Full::new(grpc_frame(&message)))
            .expect("a valid request head");
        let sender = self.connection().await?;
        let sent = sender.send_request(request).await;
        let response = sent.inspect_err(|_| self.connection = None)?;
        if response.status() != http::StatusCode::OK {
            return Err(ExportError::Status(response.status()));
        }
        if let Some(status) = grpc_status(response.headers()) {
            return status;
        }
        let body = response.into_body().collect().await.inspect_err(|_| self.connection = None)?;
        body.trailers().and_then(grpc_status).unwrap_or(Err(ExportError::NoStatus))
    }

    /// The open connection, or a new one.
    async fn connection(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, ExportError> {
        if self.connection.as_ref().is_some_and(|c| c.is_closed()) {
            self.connection = None;
        }
        if self.connection.is_none() {
            let connect_error = |source| ExportError::Connect { authority: self.authority.clone(), source };
            let stream = TcpStream::connect(self.authority.as_str()).await.map_err(connect_error)?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "collector connection closed");
                }
            });
            self.connection = Some(sender);
        }
        let sender = self.connection.as_mut().expect("set above");
        if let Err(error) = std::future::poll_fn(|cx| sender.poll_ready(cx)).await {
            // Broken for good: the next call connects again.
            self.connection = None;
            return Err(error.into());
        }
        Ok(self.connection.as_mut().expect("ready above"))
    }
}

/// A gRPC message: a zero compression flag, the length (big-endian u32), the message.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put_slice(message);
    framed.freeze()
}

/// The call's outcome from its `grpc-status` (and `grpc-message`), if the headers hold one.
fn grpc_status(headers: &HeaderMap) -> Option<Result<(), ExportError>> {
    let code: u32 = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    if code == 0 {
        return Some(Ok(()));
    }
    let message = headers.get("grpc-message").and_then(|m| m.to_str().ok()).unwrap_or_default().to_string();
    Some(Err(ExportError::Grpc { code, message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_flag_and_big_endian_length() {
        assert_eq!(&grpc_frame(b"abc")[..], [0, 0, 0, 0, 3, b'a', b'b', b'c']);
    }

    #[test]
    fn the_export_uri_names_the_method_on_the_collector() {
        let exporter = GrpcExporter::new(&"http://collector:4317".parse().unwrap());
        assert_eq!(exporter.uri, "http://collector:4317/opentelemetry.proto.collector.trace.v1.TraceService/Export");
        assert_eq!(GrpcExporter::new(&"http://c".parse().unwrap()).authority, "c:4317");
    }

    #[test]
    fn grpc_status_reads_code_and_message() {
        let mut headers = HeaderMap::new();
        assert!(grpc_status(&headers).is_none());
        headers.insert("grpc-status", "0".parse().unwrap());
        assert!(matches!(grpc_status(&headers), Some(Ok(()))));
        headers.insert("grpc-status", "14".parse().unwrap());
        headers.insert("grpc-message", "unavailable".parse().unwrap());
        assert!(matches!(grpc_status(&headers), Some(Err(ExportError::Grpc { code: 14, .. }))));
    }
}
