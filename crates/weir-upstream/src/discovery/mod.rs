//! Endpoint discovery through DNS: an upstream's host names are resolved again every refresh
//! interval, every A and AAAA address becoming an endpoint, so weir can front a Kubernetes service or
//! any DNS-balanced fleet. Names resolve through the system resolver, or by asking one DNS server
//! directly (weir's own small client) when the upstream names one.
//!
//! A failed lookup changes nothing (the last known endpoints keep serving); an answer with no
//! address empties the cluster. Endpoints that disappear finish their in-flight requests.

mod wire;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;

pub use wire::{RecordType, WireError};

use crate::cluster::Cluster;
use crate::endpoint::EndpointSpec;
use crate::rng::BalanceRng;

/// How long one DNS query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest reply read (EDNS is not asked for, so servers keep to 512 bytes; this leaves room).
const MAX_REPLY: usize = 4096;

/// Where names are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// getaddrinfo: /etc/hosts, then the servers in /etc/resolv.conf.
    System,
    /// One DNS server, asked directly over UDP.
    Server(SocketAddr),
}

/// An endpoint as written: a name (or an address) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedEndpoint {
    pub host: String,
    pub port: u16,
    pub weight: u32,
}

/// DNS discovery for one cluster.
#[derive(Debug, Clone)]
pub struct DnsDiscovery {
    pub endpoints: Vec<NamedEndpoint>,
    pub refresh: Duration,
    pub resolver: Resolver,
}

impl DnsDiscovery {
    /// Every address of every name, in order, without repeats.
    pub async fn resolve(&self) -> Result<Vec<EndpointSpec>, String> {
        let mut specs = Vec::new();
        for endpoint in &self.endpoints {
            let ips = match (endpoint.host.parse::<IpAddr>(), self.resolver) {
                (Ok(ip), _) => vec![ip],
                (Err(_), Resolver::System) => system_lookup(&endpoint.host, endpoint.port).await?,
                (Err(_), Resolver::Server(server)) => server_lookup(server, &endpoint.host).await?,
            };
            add_specs(&mut specs, &ips, endpoint);
        }
        Ok(specs)
    }
}

impl DnsDiscovery {
    /// [`DnsDiscovery::resolve`], blocking the thread: for loading a configuration, so a cluster
    /// starts with its endpoints rather than empty until the first refresh.
    pub fn resolve_blocking(&self) -> Result<Vec<EndpointSpec>, String> {
        use std::net::ToSocketAddrs;
        let mut specs = Vec::new();
        for endpoint in &self.endpoints {
            let ips = match (endpoint.host.parse::<IpAddr>(), self.resolver) {
                (Ok(ip), _) => vec![ip],
                (Err(_), Resolver::System) => (endpoint.host.as_str(), endpoint.port)
                    .to_socket_addrs()
                    .map_err(|e| format!("{}: {e}", endpoint.host))?
                    .map(|addr| addr.ip())
                    .collect(),
                (Err(_), Resolver::Server(server)) => {
                    let mut ips = blocking_query(server, &endpoint.host, RecordType::A)?;
                    ips.extend(blocking_query(server, &endpoint.host, RecordType::Aaaa)?);
                    ips
                }
            };
            add_specs(&mut specs, &ips, endpoint);
        }
        Ok(specs)
    }
}

fn blocking_query(server: SocketAddr, host: &str, record: RecordType) -> Result<Vec<IpAddr>, String> {
    let failed = |e: &dyn std::fmt::Display| format!("{host} ({record:?} from {server}): {e}");
    let id = BalanceRng::from_entropy().next_u64() as u16;
    let message = wire::query(id, host, record).map_err(|e| failed(&e))?;
    let socket = std::net::UdpSocket::bind(unspecified(server)).map_err(|e| failed(&e))?;
    let deadline = std::time::Instant::now() + QUERY_TIMEOUT;
    socket.connect(server).and_then(|()| socket.send(&message)).map_err(|e| failed(&e))?;
    let mut reply = vec![0; MAX_REPLY];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(failed(&"no answer in time"));
        }
        socket.set_read_timeout(Some(left)).map_err(|e| failed(&e))?;
        let len = socket.recv(&mut reply).map_err(|e| failed(&e))?;
        match wire::addresses(&reply[..len], id) {
            Err(WireError::WrongId) => continue,
            answered => return answered.map_err(|e| failed(&e)),
        }
    }
}

/// The any-address of the server's family, to send from.
fn unspecified(server: SocketAddr) -> SocketAddr {
    if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (IpAddr::from([0u16; 8]), 0).into() }
}

fn add_specs(specs: &mut Vec<EndpointSpec>, ips: &[IpAddr], endpoint: &NamedEndpoint) {
    for ip in ips {
        let addr = SocketAddr::new(*ip, endpoint.port);
        if !specs.iter().any(|s: &EndpointSpec| s.addr == addr) {
            specs.push(EndpointSpec { addr, weight: endpoint.weight });
        }
    }
}

async fn system_lookup(host: &str, port: u16) -> Result<Vec<IpAddr>, String> {
    let found = tokio::time::timeout(QUERY_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| format!("{host}: no answer within {QUERY_TIMEOUT:?}"))?
        .map_err(|e| format!("{host}: {e}"))?;
    Ok(found.map(|addr| addr.ip()).collect())
}

async fn server_lookup(server: SocketAddr, host: &str) -> Result<Vec<IpAddr>, String> {
    let (v4, v6) = tokio::join!(query(server, host, RecordType::A), query(server, host, RecordType::Aaaa));
    let mut ips = v4?;
    ips.extend(v6?);
    Ok(ips)
}

async fn query(server: SocketAddr, host: &str, record: RecordType) -> Result<Vec<IpAddr>, String> {
    let failed = |e: &dyn std::fmt::Display| format!("{host} ({record:?} from {server}): {e}");
    let id = BalanceRng::from_entropy().next_u64() as u16;
    let message = wire::query(id, host, record).map_err(|e| failed(&e))?;
    let exchange = async {
        let socket = tokio::net::UdpSocket::bind(unspecified(server)).await?;
        socket.connect(server).await?;
        socket.send(&message).await?;
        let mut reply = vec![0; MAX_REPLY];
        loop {
            let len = socket.recv(&mut reply).await?;
            match wire::addresses(&reply[..len], id) {
                // A stray or late datagram: keep waiting for ours.
                Err(WireError::WrongId) => continue,
                answered => return Ok(answered),
            }
        }
    };
    let answered: std::io::Result<_> =
        tokio::time::timeout(QUERY_TIMEOUT, exchange).await.map_err(|_| failed(&"no answer in time"))?;
    answered.map_err(|e| failed(&e))?.map_err(|e| failed(&e))
}

impl<B: Send + 'static> Cluster<B> {
    pub(crate) fn start_discovery(self: &Arc<Self>, discovery: DnsDiscovery) {
        tokio::spawn(refresh_forever(Arc::downgrade(self), discovery, self.alive.subscribe()));
    }
}

async fn refresh_forever<B: Send + 'static>(
    weak: Weak<Cluster<B>>,
    discovery: DnsDiscovery,
    mut alive: watch::Receiver<()>,
) {
    loop {
        let resolved = discovery.resolve().await;
        let Some(cluster) = weak.upgrade() else { return };
        match resolved {
            Ok(specs) if specs != cluster.member_specs() => {
                let addrs: Vec<String> = specs.iter().map(|s| s.addr.to_string()).collect();
                tracing::info!(upstream = %cluster.name, endpoints = %addrs.join(","), "discovered endpoints changed");
                cluster.set_members(&specs);
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(upstream = %cluster.name, %error, "DNS lookup failed: keeping the endpoints known")
            }
        }
        drop(cluster);
        tokio::select! {
            _ = tokio::time::sleep(discovery.refresh) => {}
            _ = alive.changed() => return,
        }
    }
}
