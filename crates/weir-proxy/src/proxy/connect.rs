//! Getting a connection to an endpoint of the cluster, and what a failed try says: the refusal the
//! client would see, and the outcome the endpoint's health is judged by.

use std::net::SocketAddr;

use tokio::time::Instant;
use weir_upstream::{Attempt, Cluster, Connection, Http1Error, Outcome, Unavailable, UpstreamError};

use crate::body::{RequestBody, RequestBodyError};
use crate::framing::BodyFramingError;
use crate::refusal::Refusal;
use crate::upstream_notes;

/// Endpoints tried for one try when connections fail. A connection that was never made sent
/// nothing, so another endpoint can take the request as it is (what nginx and HAProxy do too).
const CONNECT_TRIES: usize = 3;

/// A connection to an endpoint of the cluster, and the attempt it belongs to. Endpoints in `avoid`
/// (ones this request already failed on) are passed over while others remain; endpoints that fail
/// to connect here join them.
pub async fn connect<'c>(
    cluster: &'c Cluster<RequestBody>,
    key: Option<u64>,
    deadline: Instant,
    avoid: &mut Vec<SocketAddr>,
) -> Result<(Attempt<'c, RequestBody>, Connection<RequestBody>), Refusal> {
    let mut failed: Option<Refusal> = None;
    for _ in 0..CONNECT_TRIES {
        let attempt = cluster.pick_avoiding(key, avoid).map_err(unavailable)?;
        if let Some(refusal) = failed
            && avoid.contains(&attempt.endpoint().addr)
        {
            // No endpoint left that this request has not failed on.
            return Err(refusal);
        }
        upstream_notes::attempt(attempt.endpoint().addr, attempt.started().into_std());
        let refusal = match tokio::time::timeout_at(deadline, attempt.endpoint().pool.connection()).await {
            Ok(Ok(connection)) => return Ok((attempt, connection)),
            Ok(Err(error)) => classify(&error),
            Err(_) => Refusal::UpstreamTimeout,
        };
        let (outcome, addr) = (attempt_outcome(refusal), attempt.endpoint().addr);
        attempt.finish(outcome);
        avoid.push(addr);
        if outcome != Outcome::ConnectFailure {
            return Err(refusal);
        }
        tracing::debug!(upstream = cluster.name(), endpoint = %addr, reason = refusal.reason(), "connect failed");
        failed = Some(refusal);
    }
    Err(failed.unwrap_or(Refusal::ConnectError))
}

fn unavailable(why: Unavailable) -> Refusal {
    match why {
        Unavailable::NoEndpoint => Refusal::NoHealthyEndpoint,
        Unavailable::BreakerOpen { retry_after } => {
            Refusal::BreakerOpen { retry_after_secs: retry_after.as_secs_f64().ceil() as u32 }
        }
    }
}

/// What a failed try says about the endpoint. Failures of the client's or weir's own making
/// (a body over the limit, a client that stopped sending, a full pool) say nothing.
pub fn attempt_outcome(refusal: Refusal) -> Outcome {
    match refusal {
        Refusal::ConnectError | Refusal::ConnectTimeout => Outcome::ConnectFailure,
        Refusal::UpstreamReset | Refusal::UpstreamProtocolError => Outcome::Reset,
        Refusal::UpstreamTimeout => Outcome::Timeout,
        _ => Outcome::Local,
    }
}

/// Maps a failed upstream call to the refusal the client sees.
pub fn classify(error: &UpstreamError) -> Refusal {
    match error {
        UpstreamError::Connect { .. } | UpstreamError::Handshake { .. } | UpstreamError::Tls { .. } => {
            Refusal::ConnectError
        }
        UpstreamError::ConnectTimeout { .. } => Refusal::ConnectTimeout,
        UpstreamError::PoolExhausted { .. } => Refusal::PoolExhausted,
        UpstreamError::Http1 { source, .. } => match source {
            Http1Error::RequestBody(cause) => {
                find_cause::<RequestBodyError>(cause.as_ref()).map_or(Refusal::BodyIncomplete, classify_body_error)
            }
            Http1Error::Protocol(_) => Refusal::UpstreamProtocolError,
            Http1Error::Write(_)
            | Http1Error::Read(_)
            | Http1Error::ClosedBeforeResponse
            | Http1Error::ClosedInBody => Refusal::UpstreamReset,
        },
        UpstreamError::Exchange { source, .. } => {
            if let Some(body_error) = find_cause::<RequestBodyError>(source) {
                return classify_body_error(body_error);
            }
            if source.is_parse() || source.is_parse_status() {
                Refusal::UpstreamProtocolError
            } else {
                Refusal::UpstreamReset
            }
        }
    }
}

/// Maps a failure to read the client's body to the refusal the client sees.
pub fn classify_body_error(error: &RequestBodyError) -> Refusal {
    match error {
        RequestBodyError::TooLarge { .. } => Refusal::BodyTooLarge,
        RequestBodyError::Read(read) => {
            find_cause::<BodyFramingError>(read).map_or(Refusal::BodyIncomplete, |e| Refusal::from(e.0))
        }
    }
}

/// The first error of type `E` in `error`'s chain, looking inside I/O errors too (their `source`
/// skips the error they carry).
fn find_cause<'a, E: std::error::Error + 'static>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a E> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && let Some(found) = inner.downcast_ref::<E>()
        {
            return Some(found);
        }
        current = e.source();
    }
    None
}
