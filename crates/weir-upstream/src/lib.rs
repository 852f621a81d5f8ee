//! Upstream clusters: the endpoints a route sends traffic to, how one is picked for each request,
//! what weir learns about each (health checks, outlier detection, latency), and the keep-alive
//! connections kept to each of them.
//!
//! On the request path: the proxy asks a [`Cluster`] to pick an endpoint, which starts an
//! [`Attempt`]; it sends the request through that endpoint's [`EndpointPool`] and finishes the
//! attempt with its [`Outcome`]. The response body hands its connection back to the pool when it ends.

mod balance;
mod cluster;
mod discovery;
mod endpoint;
mod error;
mod ewma;
mod grpc_health;
mod hash_key;
mod health;
mod http1;
mod outlier;
mod pool;
mod rng;
mod spawn;

pub use balance::{BalancePolicy, WeightedRoundRobin};
pub use cluster::{Attempt, BreakerPolicy, Cluster, ClusterSettings, ClusterStatus, Unavailable, resolve};
pub use discovery::{DnsDiscovery, NamedEndpoint, Resolver};
pub use endpoint::{Endpoint, EndpointSpec, EndpointStatus};
pub use error::UpstreamError;
pub use hash_key::HashKey;
pub use health::{HealthCheckSettings, HealthProbe};
pub use http1::{Http1Error, PendingUpgrade, Upgraded, wire};
pub use outlier::{EjectReason, Outcome, OutlierSettings};
pub use pool::{
    Connection, EndpointPool, Http2Settings, PoolSettings, PooledBody, UpstreamBodyError, UpstreamProtocol, UpstreamTls,
};
pub use rng::BalanceRng;
pub use spawn::BoxedSpawn;
