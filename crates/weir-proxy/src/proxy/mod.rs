//! Forwarding a request to its route's upstream: the deadline, the upstream request's head, then
//! one try, or several under the route's retry policy, each on an endpoint picked from the cluster
//! and finished with its outcome.
//!
//! A try is retried when its failure is one the policy names, tries remain, the request can be sent
//! again (an idempotent method or an `Idempotency-Key`, and a body small enough to be held), the
//! deadline leaves time, and the route's retry budget allows it. Retries prefer endpoints the
//! request has not failed on, and wait a jittered backoff (or the upstream's `Retry-After`) first.

mod connect;
mod deadline;
mod head;
pub mod tunnel;

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use tokio::time::Instant;
use weir_resilience::retry::{Failure, MAX_RETRY_AFTER, RetryPolicy, retry_after};
use weir_upstream::{BalanceRng, Cluster, Connection, Outcome, PooledBody};

pub use connect::classify;
use connect::{attempt_outcome, connect};
use deadline::Deadline;
use head::UpstreamHead;
use tunnel::ClientUpgrade;

use crate::body::{RequestBody, ResponseBody};
use crate::client_body::ClientBody;
use crate::forward;
use crate::handler::ConnContext;
use crate::refusal::Refusal;
use crate::route::Route;
use crate::snapshot::Snapshot;
use crate::stages::fault;

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// Sends the request upstream and returns the upstream's response, or why there is none.
///
/// This and [`Tries::attempt`] are plain functions returning `async move` blocks, not `async fn`s:
/// an `async fn`'s future keeps each argument twice (as passed, and as the body's working copy),
/// and these futures are made and moved on every request.
#[allow(clippy::too_many_arguments, clippy::manual_async_fn)]
pub fn proxy<'r>(
    snapshot: &'r Snapshot,
    route: &'r Route,
    cluster: &'r Cluster<RequestBody>,
    conn: &'r ConnContext,
    mut parts: Parts,
    body: ClientBody,
    id: Option<&'r HeaderValue>,
    arrived: Instant,
) -> impl Future<Output = Result<Response<ResponseBody>, Refusal>> + Send + 'r {
    async move {
        let declared = declared_length(&parts);
        if declared.is_some_and(|len| len > route.max_body) {
            return Err(Refusal::BodyTooLarge);
        }
        let deadline = Deadline::of(route, &parts.headers, snapshot.deadline_header.as_ref(), arrived);
        if Instant::now() >= deadline.at {
            return Err(Refusal::DeadlineExceeded);
        }
        let key = cluster.hash_key().and_then(|key| key.hash(&parts, conn.peer.addr.ip()));
        let policy = route.retry.as_ref().filter(|p| may_retry(p, &parts, declared, &body));
        let grpc = fault::is_grpc(&parts.headers);
        let upgrade = ClientUpgrade::take(&mut parts, route.websocket.as_ref());
        let mut head = UpstreamHead::build(snapshot, route, conn, parts, id)?;
        if let Some(upgrade) = &upgrade {
            upgrade.ask_upstream(head.headers_mut());
        }
        let tries = Tries { snapshot, route, cluster, key, deadline, grpc };
        let mut response = match policy {
            // One try, streaming the body (no level of its own: every level is one more copy of the
            // try's future as it is made).
            None => {
                let body = RequestBody::new(body, route.max_body);
                tries.attempt(Some(head), None, body, tries.deadline.at, &mut Vec::new()).await.0?
            }
            // Boxed: holding the body and the retry loop inlined would make every request's future
            // (retried or not) larger to allocate.
            Some(policy) => {
                Box::pin(async {
                    let body = replay_body(body, route.max_body).await?;
                    tries.with_retries(policy, head, body).await
                })
                .await?
            }
        };
        let upgraded_to = upgrade.as_ref().and_then(|_| response.headers().get(http::header::UPGRADE).cloned());
        forward::strip_hop_by_hop(response.headers_mut());
        match (upgrade, route.websocket.as_ref()) {
            (Some(upgrade), Some(tunnels)) => upgrade.splice(&mut response, upgraded_to, tunnels),
            // A switch nobody asked for cannot be passed on.
            _ if response.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
                return Err(Refusal::UpstreamProtocolError);
            }
            _ => {}
        }
        Ok(response.map(|body| ResponseBody::upstream(body, route.body_idle_timeout)))
    }
}

/// Whether a request could be sent twice: an idempotent method (or an `Idempotency-Key`, or a route
/// that allows any), and a body that is empty or small enough to hold.
fn may_retry(policy: &RetryPolicy, parts: &Parts, declared: Option<u64>, body: &ClientBody) -> bool {
    use http_body::Body as _;
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    let repeatable = idempotent || policy.non_idempotent || parts.headers.contains_key(IDEMPOTENCY_KEY);
    let holdable = body.is_end_stream() || declared.is_some_and(|len| len <= policy.max_replay_body);
    policy.attempts > 1 && repeatable && holdable
}

/// The whole request body, read before the first try so every try can send it.
async fn replay_body(body: ClientBody, limit: u64) -> Result<Bytes, Refusal> {
    let collected = RequestBody::new(body, limit).collect().await;
    collected.map(|c| c.to_bytes()).map_err(|e| connect::classify_body_error(&e))
}

/// What every try of one request shares.
struct Tries<'a> {
    snapshot: &'a Snapshot,
    route: &'a Route,
    cluster: &'a Cluster<RequestBody>,
    key: Option<u64>,
    deadline: Deadline,
    /// A gRPC request: injected aborts answer with its gRPC status.
    grpc: bool,
}

type Upstream = Response<PooledBody<RequestBody>>;

impl Tries<'_> {
    /// Tries until one succeeds or the policy, the deadline or the budget says stop.
    async fn with_retries(&self, policy: &RetryPolicy, head: UpstreamHead, body: Bytes) -> Result<Upstream, Refusal> {
        let mut now = Instant::now();
        policy.budget.record_request(now);
        let mut avoid = Vec::new();
        let mut head = Some(head);
        for retry in 0.. {
            if retry > 0 {
                now = Instant::now();
            }
            if now >= self.deadline.at {
                return Err(Refusal::DeadlineExceeded);
            }
            let try_deadline = policy.per_try_timeout.map_or(self.deadline.at, |t| self.deadline.at.min(now + t));
            let last = retry + 1 >= policy.attempts;
            let owned = if last { head.take() } else { None };
            let body = RequestBody::replay(body.clone());
            let (sent, failure) = self.attempt(owned, head.as_ref(), body, try_deadline, &mut avoid).await;
            let Some(failure) = failure.filter(|f| !last && policy.on.matches(*f)) else { return sent };
            if !policy.budget.try_retry(Instant::now()) {
                self.route.metrics.retry_budget_exhausted();
                tracing::debug!(route = %self.route.name, "retry budget exhausted");
                return sent.map_err(|_| Refusal::BudgetExhausted);
            }
            let wait = policy.backoff.delay(retry + 1, fraction()).max(upstream_wait(&sent));
            if Instant::now() + wait >= self.deadline.at {
                return sent;
            }
            tracing::debug!(route = %self.route.name, ?failure, retry = retry + 1, ?wait, "retrying");
            drop(sent);
            tokio::time::sleep(wait).await;
            self.route.metrics.retried();
        }
        unreachable!("the loop returns on its last try")
    }

    /// One try on one endpoint: the head is moved in for a last try, copied otherwise. Returns the
    /// result and, when it failed and another try may follow, how (for the retry decision).
    #[allow(clippy::manual_async_fn)]
    fn attempt<'t>(
        &'t self,
        owned: Option<UpstreamHead>,
        shared: Option<&'t UpstreamHead>,
        body: RequestBody,
        deadline: Instant,
        avoid: &'t mut Vec<SocketAddr>,
    ) -> impl Future<Output = (Result<Upstream, Refusal>, Option<Failure>)> + Send + 't {
        async move {
            let last = owned.is_some();
            let (attempt, connection) = match connect(self.cluster, self.key, deadline, avoid).await {
                Ok(connected) => connected,
                Err(refusal) => return (Err(refusal), failure_of(refusal)),
            };
            let addr = attempt.endpoint().addr;
            let request = {
                let mut request = match owned {
                    Some(head) => head.into_request(body, addr),
                    None => shared.expect("a head to copy").request(body, addr),
                };
                if connection.version() == http::Version::HTTP_2 {
                    head::into_http2(&mut request, connection.scheme(), addr);
                }
                self.deadline.stamp(request.headers_mut(), self.snapshot.deadline_header.as_ref());
                request
            };
            let injected = self.snapshot.faults.for_try(self.cluster.name(), addr, self.grpc);
            // The request goes straight into the send's future, which the timeout holds: no block
            // around it keeps a copy of the request beside it.
            let sent = if injected.delay.is_none() && injected.abort.is_none() {
                match tokio::time::timeout_at(deadline, connection.send(request)).await {
                    Ok(sent) => sent.map_err(|e| classify(&e)),
                    Err(_) => Err(Refusal::UpstreamTimeout),
                }
            } else {
                // Boxed: faults are rare, and inlined this future would make every try's larger.
                let exchange = Box::pin(tokio::time::timeout_at(deadline, with_faults(injected, connection, request)));
                exchange.await.unwrap_or(Err(Refusal::UpstreamTimeout))
            };
            attempt.finish(match &sent {
                Ok(response) => Outcome::Response(response.status()),
                Err(Refusal::FaultAbort { status, .. }) => Outcome::Response(*status),
                Err(refusal) => attempt_outcome(*refusal),
            });
            // No try follows the last, so how it failed decides nothing.
            let failure = match &sent {
                _ if last => None,
                Ok(response) => response_failure(response, self.grpc),
                Err(refusal) => self.failure_of(*refusal),
            };
            if failure.is_some() {
                avoid.push(addr);
            }
            (sent, failure)
        }
    }
}

/// A try with an injected delay (waited within the try's deadline) or abort (failing the try as
/// that answer would).
async fn with_faults(
    injected: fault::Injected,
    connection: Connection<RequestBody>,
    request: Request<RequestBody>,
) -> Result<Upstream, Refusal> {
    if let Some(delay) = injected.delay {
        tokio::time::sleep(delay).await;
    }
    match injected.abort {
        Some(abort) => {
            connection.release();
            Err(fault::abort_refusal(abort, Refusal::UpstreamReset))
        }
        None => connection.send(request).await.map_err(|e| classify(&e)),
    }
}

impl Tries<'_> {
    /// How a refused try failed, for the retry conditions. An injected abort fails as the answer
    /// it stands for would: its gRPC status for a gRPC request, else its HTTP status.
    fn failure_of(&self, refusal: Refusal) -> Option<Failure> {
        match refusal {
            Refusal::FaultAbort { grpc, .. } if self.grpc => {
                Some(Failure::Grpc(grpc.unwrap_or_else(|| refusal.grpc_code())))
            }
            Refusal::FaultAbort { status, .. } => Some(Failure::Status(status.as_u16())),
            other => failure_of(other),
        }
    }
}

/// How a refused try failed, for the retry conditions; `None` for refusals no retry can help.
fn failure_of(refusal: Refusal) -> Option<Failure> {
    match refusal {
        Refusal::ConnectError | Refusal::ConnectTimeout => Some(Failure::ConnectFailure),
        Refusal::UpstreamReset | Refusal::UpstreamProtocolError => Some(Failure::Reset),
        Refusal::UpstreamTimeout => Some(Failure::Timeout),
        _ => None,
    }
}

/// A response's failure: its status when 4xx/5xx, or, for a gRPC request, its gRPC status in a
/// trailers-only answer.
fn response_failure(response: &Upstream, grpc: bool) -> Option<Failure> {
    if grpc
        && let Some(code) = response.headers().get(GRPC_STATUS).and_then(|v| v.to_str().ok()?.parse::<u8>().ok())
        && code != 0
    {
        return Some(Failure::Grpc(code));
    }
    let status = response.status().as_u16();
    (status >= 400).then_some(Failure::Status(status))
}

/// The upstream's `Retry-After`, when it asks for a wait weir is willing to make.
fn upstream_wait(sent: &Result<Upstream, Refusal>) -> std::time::Duration {
    let asked = sent
        .as_ref()
        .ok()
        .and_then(|r| r.headers().get(http::header::RETRY_AFTER))
        .and_then(|v| retry_after(v.as_bytes()));
    asked.filter(|wait| *wait <= MAX_RETRY_AFTER).unwrap_or_default()
}

/// A uniform random fraction in `[0, 1)` for backoff jitter.
fn fraction() -> f64 {
    static RNG: std::sync::LazyLock<BalanceRng> = std::sync::LazyLock::new(BalanceRng::from_entropy);
    (RNG.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn declared_length(parts: &Parts) -> Option<u64> {
    parts.headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
