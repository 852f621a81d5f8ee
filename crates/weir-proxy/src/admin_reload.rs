//! The admin API's reload endpoints: `POST /reload` runs the reload path and answers what changed
//! or why nothing did (422 with the error text); `GET /reload` shows the last reload error;
//! `GET /reload/diff` shows what reloading the file on disk would change.

use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::admin::{bearer_matches, json};
use crate::reload::diff::json_string;
use crate::reload::{ReloadError, Reloaded, Trigger};
use crate::server::Gateway;

/// Answers the reload paths; `None` for every other path.
pub async fn answer(
    gateway: &Arc<Gateway>,
    token: Option<&str>,
    request: &Request<Incoming>,
) -> Option<Response<Full<Bytes>>> {
    let path = request.uri().path();
    if path != "/reload" && path != "/reload/diff" {
        return None;
    }
    if let Some(token) = token
        && !bearer_matches(request, token)
    {
        return Some(text(StatusCode::UNAUTHORIZED, "a bearer token is required\n".into()));
    }
    Some(match (request.method(), path) {
        (&Method::POST, "/reload") => reload(gateway).await,
        (&Method::GET, "/reload") => json(status(gateway)),
        (&Method::GET, "/reload/diff") => match gateway.diff_source() {
            Ok(diff) => json(diff.json() + "\n"),
            Err(error) => failure(&error),
        },
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "POST /reload, GET /reload, GET /reload/diff\n".into()),
    })
}

async fn reload(gateway: &Arc<Gateway>) -> Response<Full<Bytes>> {
    match gateway.reload(Trigger::Admin).await {
        Ok(Reloaded::Applied(diff)) => json(format!("{{\"result\":\"success\",\"changes\":{}}}\n", diff.json())),
        Ok(Reloaded::Unchanged) => json("{\"result\":\"unchanged\"}\n"),
        Err(error) => failure(&error),
    }
}

/// `{"last_error": "..." | null, "source": "..." | null}`
fn status(gateway: &Gateway) -> String {
    let state = gateway.reload_state();
    let last_error = state.last_error().map_or("null".into(), |e| json_string(&e));
    let source = state.source().map_or("null".into(), |p| json_string(&p.display().to_string()));
    format!("{{\"last_error\":{last_error},\"source\":{source}}}\n")
}

/// A file that does not load (or names certificate files that do not) is the caller's to fix (422); a file that validates but cannot be
/// put in service (an endpoint that does not resolve, a listener address in use, a restart-only change) is a
/// conflict (409).
fn failure(error: &ReloadError) -> Response<Full<Bytes>> {
    let status = match error {
        ReloadError::Config(_) | ReloadError::Tls(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ReloadError::NoSource | ReloadError::Interrupted => StatusCode::INTERNAL_SERVER_ERROR,
        ReloadError::Snapshot(_) | ReloadError::NeedsRestart(_) | ReloadError::Listener(_) => StatusCode::CONFLICT,
    };
    text(status, format!("{error}\n"))
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
