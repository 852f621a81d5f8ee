//! A cluster: an upstream's endpoints, each with its connection pool, and the balancer that picks
//! one per request.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use http_body::Body;

use crate::balance::WeightedRoundRobin;
use crate::pool::{EndpointPool, PoolSettings};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An endpoint as configured.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    pub addr: SocketAddr,
    pub weight: u32,
}

/// Settings shared by a cluster's endpoints.
#[derive(Debug, Clone, Copy)]
pub struct ClusterSettings {
    pub pool: PoolSettings,
}

/// One endpoint and its connections.
pub struct Endpoint<B> {
    pub addr: SocketAddr,
    pub weight: u32,
    pub pool: Arc<EndpointPool<B>>,
}

/// The endpoints of one upstream.
pub struct Cluster<B> {
    endpoints: Box<[Endpoint<B>]>,
    balancer: WeightedRoundRobin,
}

impl<B> Cluster<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A cluster over at least one endpoint.
    pub fn new(specs: &[EndpointSpec], settings: ClusterSettings) -> Self {
        let endpoints: Box<[Endpoint<B>]> = specs
            .iter()
            .map(|spec| Endpoint {
                addr: spec.addr,
                weight: spec.weight,
                pool: Arc::new(EndpointPool::new(spec.addr, settings.pool)),
            })
            .collect();
        let weights: Vec<u32> = specs.iter().map(|s| s.weight).collect();
        Cluster { endpoints, balancer: WeightedRoundRobin::new(&weights) }
    }

    /// The endpoint for the next request.
    pub fn pick(&self) -> &Endpoint<B> {
        &self.endpoints[self.balancer.pick()]
    }
}

/// Resolves `host:port` once, when a configuration is loaded; the first address wins.
pub fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address")))
}
