//! The gRPC health checking protocol as an active health probe: a unary call to
//! `grpc.health.v1.Health/Check` over HTTP/2, healthy when it ends with `grpc-status: 0` and the
//! answer says `SERVING`. The messages are small enough to encode and decode here by hand:
//! `HealthCheckRequest { string service = 1; }` and `HealthCheckResponse { ServingStatus status = 1; }`
//! (`SERVING` is 1).

use bytes::{Buf, Bytes};
use http::header::{CONTENT_TYPE, TE, USER_AGENT};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};

const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";
/// Answers are a few bytes; anything much larger is not a health check's.
const MAX_ANSWER: usize = 4096;
const SERVING: u64 = 1;

impl crate::HealthProbe {
    /// A gRPC health check asking about `service` (empty: the server as a whole).
    pub fn grpc(service: &str, authority: Option<String>) -> Self {
        crate::HealthProbe::Grpc { request: check_request(service), authority }
    }
}

/// The request body for `service`: a gRPC frame (uncompressed flag, length) around the message.
fn check_request(service: &str) -> Bytes {
    let mut message = Vec::with_capacity(service.len() + 8);
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = Vec::with_capacity(message.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    Bytes::from(frame)
}

/// Makes the check on a connected stream (cleartext or TLS). `authority` names the server in the
/// request's `:authority`.
pub async fn probe<S>(stream: S, authority: &str, request_body: Bytes) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    let driving = tokio::spawn(connection);
    let uri = Uri::builder().scheme("http").authority(authority).path_and_query(CHECK_PATH).build();
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri.map_err(|e| format!("request: {e}"))?)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/grpc"))
        .header(TE, HeaderValue::from_static("trailers"))
        .header(USER_AGENT, HeaderValue::from_static("weir-health-check"))
        .body(Full::new(request_body))
        .map_err(|e| format!("request: {e}"))?;
    let verdict = exchange(&mut sender, request).await;
    driving.abort();
    verdict
}

async fn exchange(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(), String> {
    let response = sender.send_request(request).await.map_err(|e| format!("exchange: {e}"))?;
    if response.status() != http::StatusCode::OK {
        return Err(format!("status {}", response.status().as_u16()));
    }
    let head_status = grpc_status(response.headers());
    let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER);
    let collected = body.collect().await.map_err(|e| format!("reading the answer: {e}"))?;
    let status = collected.trailers().and_then(grpc_status).or(head_status);
    match status {
        Some(0) => serving(collected.to_bytes()),
        Some(code) => Err(format!("grpc-status {code}")),
        None => Err("no grpc-status".into()),
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<u32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// Whether the answer's message says `SERVING`.
fn serving(mut body: Bytes) -> Result<(), String> {
    if body.len() < 5 {
        return Err("an answer without a message".into());
    }
    if body.get_u8() != 0 {
        return Err("a compressed answer".into());
    }
    let len = body.get_u32() as usize;
    if len > body.len() {
        return Err("a truncated answer".into());
    }
    match serving_status(&body[..len]) {
        Some(SERVING) => Ok(()),
        Some(status) => Err(format!("serving status {status}")),
        None => Err("a malformed answer".into()),
    }
}

/// Field 1 of the message (0, `UNKNOWN`, when absent); `None` when the message does not parse.
fn serving_status(mut message: &[u8]) -> Option<u64> {
    let mut status = 0;
    while !message.is_empty() {
        let key = take_varint(&mut message)?;
        let (field, wire_type) = (key >> 3, key & 7);
        match wire_type {
            0 => {
                let value = take_varint(&mut message)?;
                if field == 1 {
                    status = value;
                }
            }
            1 => message = message.get(8..)?,
            2 => {
                let len = usize::try_from(take_varint(&mut message)?).ok()?;
                message = message.get(len..)?;
            }
            5 => message = message.get(4..)?,
            _ => return None,
        }
    }
    Some(status)
}

fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_the_service() {
        assert_eq!(&check_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(&check_request("echo.Echo")[..], b"\0\0\0\0\x0b\x0a\x09echo.Echo");
    }

    #[test]
    fn answers_are_judged_by_their_serving_status() {
        let answer = |message: &[u8]| {
            let mut frame = vec![0];
            frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
            frame.extend_from_slice(message);
            serving(Bytes::from(frame))
        };
        assert_eq!(answer(&[0x08, 0x01]), Ok(()));
        assert_eq!(answer(&[0x08, 0x02]), Err("serving status 2".into()));
        assert_eq!(answer(&[]), Err("serving status 0".into()));
        // Unknown fields are skipped.
        assert_eq!(answer(&[0x12, 0x02, b'h', b'i', 0x08, 0x01]), Ok(()));
        assert_eq!(answer(&[0x08]), Err("a malformed answer".into()));
        assert_eq!(serving(Bytes::from_static(&[0, 0, 0, 0, 9, 8])), Err("a truncated answer".into()));
    }
}
