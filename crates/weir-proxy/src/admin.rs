//! The admin API on its own listener: `/healthz` (the process is alive), `/readyz` (serving, not
//! draining), `/metrics` (OpenMetrics text), `/upstreams` (endpoint state), `/routes` and `/config`
//! (JSON, see [`crate::admin_views`]), `/breakers` and `/ratelimits` (live state, see
//! [`crate::admin_live`]); `/reload` and `/reload/diff` live in [`crate::admin_reload`].
//! With a token configured, every path but `/healthz` asks for `Authorization: Bearer <token>`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use weir_telemetry::text_format::{self, PROMETHEUS_TEXT};

use crate::admin_faults;
use crate::admin_live;
use crate::admin_reload;
use crate::server::Gateway;
use crate::upstream_status;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves the admin API until the task is aborted.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>, token: Option<Arc<str>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (gateway, token) = (gateway.clone(), token.clone());
        let service = service_fn(move |request| {
            let (gateway, token) = (gateway.clone(), token.clone());
            async move {
                if let Some(response) = admin_reload::answer(&gateway, token.as_deref(), &request).await {
                    return Ok::<_, Infallible>(response);
                }
                let request = match admin_faults::answer(&gateway, token.as_deref(), request).await {
                    Ok(response) => return Ok(response),
                    Err(request) => request,
                };
                Ok(answer(&gateway, token.as_deref(), &request))
            }
        });
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "admin connection ended");
            }
        });
    }
}

fn answer(gateway: &Gateway, token: Option<&str>, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    if path != "/healthz"
        && let Some(token) = token
        && !bearer_matches(request, token)
    {
        return text(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if !gateway.is_ready() => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        "/readyz" => text(StatusCode::OK, "ready\n"),
        "/metrics" => metrics(gateway, request),
        "/upstreams" => json(Bytes::from(upstream_status::json(&gateway.snapshot()))),
        "/routes" => json(gateway.snapshot().admin_views.routes.clone()),
        "/config" => json(gateway.snapshot().admin_views.config.clone()),
        "/breakers" => json(admin_live::breakers(&gateway.snapshot())),
        "/ratelimits" => json(admin_live::rate_limits(&gateway.snapshot())),
        _ => text(
            StatusCode::NOT_FOUND,
            "paths: /healthz /readyz /metrics /upstreams /routes /config /breakers /ratelimits /reload /faults\n",
        ),
    }
}

/// OpenMetrics, unless the scraper asks for the Prometheus text format and not for OpenMetrics.
fn metrics(gateway: &Gateway, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let accept = request.headers().get(ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let plain = accept.contains("text/plain") && !accept.contains("application/openmetrics-text");
    let text = gateway.metrics().encode();
    let (body, content_type) =
        if plain { (text_format::from_openmetrics(&text), PROMETHEUS_TEXT) } else { (text, OPENMETRICS) };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Compares the presented token in time independent of where it differs.
pub(crate) fn bearer_matches(request: &Request<Incoming>, token: &str) -> bool {
    let presented =
        request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(presented) = presented else { return false };
    presented.len() == token.len() && presented.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

pub(crate) fn json(body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
