//! End-to-end tests of the guard in front of hyper's HTTP/1 server, pinning how the two must be configured.
//!
//! After the synthetic head the guard stalls reads rather than reporting EOF: hyper reads ahead while a request is
//! in flight, and an EOF would make it drop the connection without writing the refusal. The signal is taken when
//! hyper hands a request to the service, as weir's server does, so a read-ahead cannot misattribute it.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ConnSignal, FramingGuard, FramingLimits, Violation};

const LIMITS: FramingLimits = FramingLimits {
    max_head_bytes: 16 * 1024,
    max_headers: 100,
    max_uri_len: 8 * 1024,
    head_timeout: Duration::from_secs(60),
};

/// Answers a refused request with its reason in `proxy-status`, and anything else with `path:body-length`.
async fn handle(refused: Option<Violation>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    if let Some(violation) = refused {
        let refusal = Response::builder()
            .status(400)
            .header("proxy-status", format!("weir; error=http_request_error; details={}", violation.as_str()))
            .header("connection", "close")
            .body(Full::default());
        return Ok(refusal.expect("valid response"));
    }
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await?.to_bytes();
    Ok(Response::new(Full::new(Bytes::from(format!("{path}:{}", body.len())))))
}

/// Sends `input` on one connection served by hyper behind the guard; returns everything hyper wrote back.
async fn exchange(input: &[u8]) -> String {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let signal = Arc::new(ConnSignal::default());
    let guard = FramingGuard::new(server, LIMITS, signal.clone());
    let service = hyper::service::service_fn(move |req| handle(signal.take(), req));
    let server = tokio::spawn(
        hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(guard), service),
    );
    client.write_all(input).await.expect("write request");
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.expect("read response");
    let _ = server.await.expect("server task");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn hyper_serves_pipelined_requests_through_the_guard() {
    let out = exchange(
        b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n\
          POST /b HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\nt: 1\r\n\r\n\
          POST /c HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi",
    )
    .await;
    assert!(out.contains("/a:0") && out.contains("/b:3") && out.contains("/c:2"), "{out}");
}

#[tokio::test]
async fn hyper_answers_a_refused_request_with_the_handlers_response() {
    let smuggle = b"POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
    let out = exchange(smuggle).await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("details=content_length_with_transfer_encoding"), "{out}");

    // After a good pipelined request, the refusal is attributed to the bad one, not to its predecessor.
    let out = exchange(&[b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n".as_slice(), smuggle].concat()).await;
    let (first, rest) = out.split_once("/a:0").unwrap_or_else(|| panic!("no answer to /a: {out}"));
    assert!(first.starts_with("HTTP/1.1 200"), "{out}");
    assert!(rest.starts_with("HTTP/1.1 400") && !rest.contains("/x"), "{out}");
}
