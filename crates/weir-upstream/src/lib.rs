//! Upstream clusters: the endpoints a route sends traffic to, how one is picked for each request,
//! and the keep-alive connections kept to each of them.
//!
//! On the request path: the proxy asks a [`Cluster`] to pick an [`Endpoint`], then sends the request
//! through that endpoint's [`EndpointPool`]. The response body hands its connection back to the pool
//! when it ends.

mod balance;
mod cluster;
mod error;
mod pool;

pub use balance::WeightedRoundRobin;
pub use cluster::{Cluster, ClusterSettings, Endpoint, EndpointSpec, resolve};
pub use error::UpstreamError;
pub use pool::{EndpointPool, PoolSettings, PooledBody};
