//! Active health checks: every interval (plus a random jitter, so a fleet of gateways does not probe
//! in lockstep) each endpoint of a cluster is probed with a plain TCP connect, an HTTP request, or
//! a gRPC health check call.
//! After `unhealthy_threshold` failures in a row an endpoint leaves the rotation; after
//! `healthy_threshold` successes in a row it comes back. On an upstream with TLS, every probe makes
//! the TLS handshake first (a TCP probe then also checks the endpoint's certificate). Endpoints start healthy, so a restart never
//! waits on the first round of checks to send traffic.
//!
//! One task per cluster; it ends when the cluster is dropped (a reload that no longer has it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::{HeaderValue, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::cluster::Cluster;
use crate::rng::BalanceRng;

/// What a health check sends.
#[derive(Debug, Clone)]
pub enum HealthProbe {
    /// A TCP connection is accepted.
    Tcp,
    /// `GET path` answers with one of `statuses`.
    Http { path: http::uri::PathAndQuery, host: Option<HeaderValue>, statuses: Vec<RangeInclusive<u16>> },
    /// `grpc.health.v1.Health/Check` over HTTP/2 answers `SERVING`. `request` is the encoded call
    /// (naming the service asked about); `authority` names the server (default: the endpoint's address).
    Grpc { request: Bytes, authority: Option<String> },
}

/// A cluster's active health check.
#[derive(Debug, Clone)]
pub struct HealthCheckSettings {
    pub probe: HealthProbe,
    pub interval: Duration,
    /// Up to this much is added to each interval, at random.
    pub jitter: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// The upstream's TLS, when its endpoints speak TLS.
    pub tls: Option<crate::pool::UpstreamTls>,
}

/// Successes and failures in a row, per endpoint.
#[derive(Default, Clone, Copy)]
struct Streak {
    passed: u32,
    failed: u32,
}

impl<B: Send + 'static> Cluster<B> {
    /// Starts the cluster's background work (its health checker and DNS discovery, when
    /// configured). Needs a Tokio runtime; the work ends when the cluster is dropped.
    pub fn start(self: &Arc<Self>) {
        if let Some(discovery) = self.settings.discovery.clone() {
            self.start_discovery(discovery);
        }
        if let Some(settings) = self.settings.health_check.clone() {
            tokio::spawn(check_forever(Arc::downgrade(self), Arc::new(settings), self.alive.subscribe()));
        }
    }
}

async fn check_forever<B: Send + 'static>(
    weak: Weak<Cluster<B>>,
    settings: Arc<HealthCheckSettings>,
    mut alive: tokio::sync::watch::Receiver<()>,
) {
    let rng = BalanceRng::from_entropy();
    let mut streaks: HashMap<SocketAddr, Streak> = HashMap::new();
    loop {
        let Some(cluster) = weak.upgrade() else { return };
        let members = cluster.members();
        drop(cluster);
        let results = check_all(members.iter().map(|e| e.addr), &settings).await;
        let Some(cluster) = weak.upgrade() else { return };
        let mut changed = false;
        for endpoint in &members {
            let Some(result) = results.get(&endpoint.addr) else { continue };
            let streak = streaks.entry(endpoint.addr).or_default();
            if let Some(healthy) = verdict(streak, result.is_ok(), endpoint.is_healthy(), &settings)
                && endpoint.set_healthy(healthy)
            {
                changed = true;
                let reason = result.as_ref().err().map_or("", String::as_str);
                tracing::warn!(upstream = %cluster.name, endpoint = %endpoint.addr, healthy, reason, "health check verdict changed");
            }
        }
        streaks.retain(|addr, _| members.iter().any(|e| e.addr == *addr));
        if changed {
            cluster.refresh();
        }
        drop(cluster);
        let jitter = settings.jitter.mul_f64(rng.below(1001) as f64 / 1000.0);
        tokio::select! {
            _ = tokio::time::sleep(settings.interval + jitter) => {}
            _ = alive.changed() => return,
        }
    }
}

/// Updates a streak with one result; says what the endpoint's health should now be, if it changes.
fn verdict(streak: &mut Streak, passed: bool, healthy: bool, settings: &HealthCheckSettings) -> Option<bool> {
    if passed {
        *streak = Streak { passed: streak.passed.saturating_add(1), failed: 0 };
    } else {
        *streak = Streak { passed: 0, failed: streak.failed.saturating_add(1) };
    }
    if healthy && streak.failed >= settings.unhealthy_threshold {
        Some(false)
    } else if !healthy && streak.passed >= settings.healthy_threshold {
        Some(true)
    } else {
        None
    }
}

async fn check_all(
    addrs: impl Iterator<Item = SocketAddr>,
    settings: &Arc<HealthCheckSettings>,
) -> HashMap<SocketAddr, Result<(), String>> {
    let mut checks = JoinSet::new();
    for addr in addrs {
        let settings = settings.clone();
        checks.spawn(async move {
            let result =
                tokio::time::timeout(settings.timeout, probe_over(&settings.probe, addr, settings.tls.as_ref()))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {:?}", settings.timeout)));
            (addr, result)
        });
    }
    let mut results = HashMap::new();
    while let Some(joined) = checks.join_next().await {
        if let Ok((addr, result)) = joined {
            results.insert(addr, result);
        }
    }
    results
}

/// One probe of one endpoint, in cleartext.
#[cfg(test)]
async fn probe(probe: &HealthProbe, addr: SocketAddr) -> Result<(), String> {
    probe_over(probe, addr, None).await
}

/// One probe of one endpoint, over TLS when `tls` is given.
pub async fn probe_over(
    probe: &HealthProbe,
    addr: SocketAddr,
    tls: Option<&crate::pool::UpstreamTls>,
) -> Result<(), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    match tls {
        None => http_probe(probe, addr, stream).await,
        Some(tls) => {
            let connecting = tls.connector.connect(tls.server_name.clone(), stream);
            http_probe(probe, addr, connecting.await.map_err(|e| format!("TLS handshake: {e}"))?).await
        }
    }
}

/// The HTTP part of a probe on a connected stream (nothing more for a TCP probe).
async fn http_probe<S>(probe: &HealthProbe, addr: SocketAddr, stream: S) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (path, host, statuses) = match probe {
        HealthProbe::Tcp => return Ok(()),
        HealthProbe::Grpc { request, authority } => {
            let authority = authority.clone().unwrap_or_else(|| addr.to_string());
            return crate::grpc_health::probe(stream, &authority, request.clone()).await;
        }
        HealthProbe::Http { path, host, statuses } => (path, host, statuses),
    };
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
    let host =
        host.clone().unwrap_or_else(|| HeaderValue::from_str(&addr.to_string()).expect("an address is a valid header"));
    let request = Request::get(path.as_str())
        .header(HOST, host)
        .header(USER_AGENT, "weir-health-check")
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let exchange = sender.send_request(request);
    tokio::pin!(connection, exchange);
    // The connection must be driven for the exchange to progress; with `Connection: close` it may
    // end as soon as the response is in, before the exchange is polled again.
    let response = tokio::select! {
        biased;
        response = &mut exchange => response,
        _ = &mut connection => exchange.await,
    };
    let response = response.map_err(|e| format!("exchange: {e}"))?;
    let status = response.status().as_u16();
    if statuses.iter().any(|range| range.contains(&status)) { Ok(()) } else { Err(format!("status {status}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> HealthCheckSettings {
        HealthCheckSettings {
            probe: HealthProbe::Tcp,
            interval: Duration::from_secs(1),
            jitter: Duration::ZERO,
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            tls: None,
        }
    }

    /// A one-shot HTTP server answering every request with `status`.
    async fn answering(status: u16) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut head = vec![0; 1024];
                let _ = stream.read(&mut head).await;
                let response = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = stream.write_all(response.as_bytes()).await;
            }
        });
        addr
    }

    fn http(statuses: Vec<RangeInclusive<u16>>) -> HealthProbe {
        HealthProbe::Http { path: "/healthz".parse().unwrap(), host: None, statuses }
    }

    #[tokio::test]
    async fn http_probes_judge_by_status() {
        assert_eq!(probe(&http(vec![200..=399]), answering(204).await).await, Ok(()));
        assert_eq!(probe(&http(vec![200..=399]), answering(503).await).await, Err("status 503".into()));
        assert_eq!(probe(&http(vec![200..=200, 503..=503]), answering(503).await).await, Ok(()));
    }

    #[tokio::test]
    async fn tcp_probes_need_only_a_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(probe(&HealthProbe::Tcp, addr).await, Ok(()));
        drop(listener);
        assert!(probe(&HealthProbe::Tcp, addr).await.unwrap_err().starts_with("connect:"));
    }

    #[test]
    fn thresholds_decide_transitions() {
        let settings = settings();
        let mut streak = Streak::default();
        let mut healthy = true;
        let mut changes = Vec::new();
        for passed in [false, false, true, false, false, false, true, true, false, true, true] {
            if let Some(now) = verdict(&mut streak, passed, healthy, &settings) {
                healthy = now;
                changes.push(now);
            }
        }
        // Down after the third failure in a row, up after the second success in a row.
        assert_eq!(changes, vec![false, true]);
    }
}
