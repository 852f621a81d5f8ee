//! The admin API's fault experiments: `POST /faults` starts one (JSON, see docs/chaos.md) and
//! answers 201 with it; `GET /faults` lists the running experiments and the configured faults;
//! `GET /faults/{id}` shows one; `DELETE /faults/{id}` ends one early.

use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::admin::{bearer_matches, json};
use crate::server::Gateway;
use crate::snapshot::Snapshot;
use crate::stages::fault::experiments::describe;
use crate::stages::fault::{Experiment, ExperimentError};

/// The largest experiment document taken.
const MAX_DOCUMENT: usize = 64 * 1024;

/// Answers the fault paths; gives the request back for every other path.
pub async fn answer(
    gateway: &Arc<Gateway>,
    token: Option<&str>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Request<Incoming>> {
    let path = request.uri().path();
    let id = match path.strip_prefix("/faults") {
        Some("") => None,
        Some(rest) if rest.starts_with('/') && rest.len() > 1 => Some(rest[1..].to_string()),
        _ => return Err(request),
    };
    if let Some(token) = token
        && !bearer_matches(&request, token)
    {
        return Ok(text(StatusCode::UNAUTHORIZED, "a bearer token is required\n".into()));
    }
    let snapshot = gateway.snapshot();
    let experiments = &snapshot.faults.experiments;
    Ok(match (request.method().clone(), id) {
        (Method::GET, None) => json(listing(&snapshot).to_string() + "\n"),
        (Method::POST, None) => start(&snapshot, request).await,
        (Method::GET, Some(id)) => match experiments.list().iter().find(|e| e.id == id) {
            Some(experiment) => json(view(experiment).to_string() + "\n"),
            None => failure(&ExperimentError::NotFound(id)),
        },
        (Method::DELETE, Some(id)) => match experiments.delete(&id) {
            Ok(()) => {
                Response::builder().status(StatusCode::NO_CONTENT).body(Full::default()).expect("a valid response")
            }
            Err(error) => failure(&error),
        },
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "GET or POST /faults, GET or DELETE /faults/{id}\n".into()),
    })
}

async fn start(snapshot: &Snapshot, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let document = match Limited::new(request.into_body(), MAX_DOCUMENT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return text(StatusCode::PAYLOAD_TOO_LARGE, format!("an experiment is at most {MAX_DOCUMENT} bytes\n"));
        }
    };
    match snapshot.faults.experiments.start(&document, |target| snapshot.has_target(target)) {
        Ok(experiment) => {
            let mut response = json(view(&experiment).to_string() + "\n");
            *response.status_mut() = StatusCode::CREATED;
            if let Ok(location) = HeaderValue::from_str(&format!("/faults/{}", experiment.id)) {
                response.headers_mut().insert(http::header::LOCATION, location);
            }
            response
        }
        Err(error) => failure(&error),
    }
}

/// `{"experiments": [...], "configured": [...]}`
fn listing(snapshot: &Snapshot) -> Value {
    let experiments: Vec<Value> = snapshot.faults.experiments.list().iter().map(|e| view(e)).collect();
    json!({ "experiments": experiments, "configured": snapshot.admin_views.faults.clone() })
}

/// One experiment: its id, target, times, and the document it was started with.
fn view(experiment: &Experiment) -> Value {
    let (target_type, target) = describe(&experiment.target);
    json!({
        "id": experiment.id,
        "target_type": target_type,
        "target": target,
        "started_at": timestamp(experiment.started),
        "expires_at": timestamp(experiment.expires),
        "expires_in_ms": experiment.remaining().as_millis() as u64,
        "persist": experiment.persist,
        "experiment": experiment.document,
    })
}

fn timestamp(time: std::time::SystemTime) -> Value {
    let mut quoted = Vec::with_capacity(26);
    weir_telemetry::access_log::push_time(&mut quoted, time);
    let text = String::from_utf8_lossy(&quoted).trim_matches('"').to_string();
    Value::String(text)
}

fn failure(error: &ExperimentError) -> Response<Full<Bytes>> {
    let status = match error {
        ExperimentError::Malformed(_) => StatusCode::BAD_REQUEST,
        ExperimentError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ExperimentError::TooMany(_) => StatusCode::CONFLICT,
        ExperimentError::NotFound(_) => StatusCode::NOT_FOUND,
    };
    text(status, format!("{error}\n"))
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
