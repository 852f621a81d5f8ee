//! Compiles the `upstreams` section into clusters: endpoint addresses resolved, balancer, pool,
//! health check and outlier settings translated into what weir-upstream runs on.

use std::collections::HashMap;
use std::sync::Arc;

use weir_config::{
    Balance, Config, Endpoint as EndpointConfig, HashKey as HashKeyConfig, HealthCheck, HealthCheckKind,
    OutlierDetection, Upstream, UpstreamProtocol as UpstreamProtocolConfig,
};
use weir_resilience::breaker::BreakerSettings;
use weir_upstream::{
    BalancePolicy, BreakerPolicy, Cluster, ClusterSettings, DnsDiscovery, EndpointSpec, HashKey, HealthCheckSettings,
    HealthProbe, Http2Settings, NamedEndpoint, OutlierSettings, PoolSettings, Resolver, UpstreamProtocol, resolve,
};

use crate::body::RequestBody;
use crate::snapshot::SnapshotError;

/// The clusters of a configuration, by upstream name.
pub type Clusters = HashMap<String, Arc<Cluster<RequestBody>>>;

pub fn build_clusters(config: &Config) -> Result<Clusters, SnapshotError> {
    let mut clusters = HashMap::new();
    for (name, upstream) in &config.upstreams {
        clusters.insert(name.clone(), build_cluster(name, upstream)?);
    }
    Ok(clusters)
}

/// One upstream's cluster, not yet started.
pub fn build_cluster(name: &str, upstream: &Upstream) -> Result<Arc<Cluster<RequestBody>>, SnapshotError> {
    let mut settings = cluster_settings(upstream);
    settings.pool.tls = crate::tls::upstream::client(name, upstream, settings.pool.protocol)?;
    if let Some(check) = &mut settings.health_check {
        check.tls = settings.pool.tls.clone();
    }
    let specs = match &settings.discovery {
        Some(discovery) => discovered_specs(name, discovery),
        None => upstream.endpoints.iter().map(|e| endpoint_spec(name, e)).collect::<Result<Vec<_>, _>>()?,
    };
    Ok(Arc::new(Cluster::new(name, &specs, settings)))
}

/// A discovered upstream starts with what its names resolve to now; when they do not resolve, it
/// starts empty (answering 503) and fills in at the next refresh rather than keeping weir down.
fn discovered_specs(name: &str, discovery: &DnsDiscovery) -> Vec<EndpointSpec> {
    discovery.resolve_blocking().unwrap_or_else(|error| {
        tracing::warn!(upstream = name, %error, "endpoint names do not resolve yet: starting without endpoints");
        Vec::new()
    })
}

fn discovery(upstream: &Upstream) -> Option<DnsDiscovery> {
    let dns = upstream.dns.as_ref()?;
    Some(DnsDiscovery {
        endpoints: upstream
            .endpoints
            .iter()
            .map(|e| NamedEndpoint { host: e.address.host.clone(), port: e.address.port, weight: e.weight })
            .collect(),
        refresh: dns.refresh.0,
        resolver: dns.resolver.map_or(Resolver::System, Resolver::Server),
    })
}

fn endpoint_spec(upstream: &str, endpoint: &EndpointConfig) -> Result<EndpointSpec, SnapshotError> {
    let address = &endpoint.address;
    let addr = resolve(&address.host, address.port).map_err(|source| SnapshotError::Resolve {
        upstream: upstream.to_string(),
        endpoint: address.to_string(),
        source,
    })?;
    Ok(EndpointSpec { addr, weight: endpoint.weight })
}

fn cluster_settings(upstream: &Upstream) -> ClusterSettings {
    let pool = &upstream.pool;
    ClusterSettings {
        pool: PoolSettings {
            connect_timeout: upstream.connect_timeout.0,
            max_idle: pool.max_idle,
            idle_timeout: pool.idle_timeout.0,
            max_connections: pool.max_connections,
            acquire_timeout: pool.acquire_timeout.0,
            tcp_keepalive: Some(pool.tcp_keepalive.0).filter(|d| !d.is_zero()),
            tls: None,
            protocol: match upstream.protocol {
                UpstreamProtocolConfig::Http1 => UpstreamProtocol::Http1,
                UpstreamProtocolConfig::Http2 => UpstreamProtocol::Http2,
                UpstreamProtocolConfig::Auto => UpstreamProtocol::Auto,
            },
            http2: Http2Settings {
                max_concurrent_streams: upstream.http2.max_concurrent_streams as usize,
                keepalive_interval: Some(upstream.http2.keepalive_interval.0).filter(|d| !d.is_zero()),
                keepalive_timeout: upstream.http2.keepalive_timeout.0,
            },
        },
        balance: match upstream.balance {
            Balance::RoundRobin => BalancePolicy::RoundRobin,
            Balance::Random => BalancePolicy::Random,
            Balance::LeastRequest => BalancePolicy::LeastRequest,
            Balance::ConsistentHash => BalancePolicy::ConsistentHash,
        },
        hash_key: upstream.hash_key.as_ref().map(|key| match key {
            HashKeyConfig::ClientIp => HashKey::ClientIp,
            HashKeyConfig::Path => HashKey::Path,
            HashKeyConfig::Header(name) => HashKey::Header(name.0.clone()),
            HashKeyConfig::Cookie(name) => HashKey::Cookie(name.clone()),
        }),
        outlier: outlier_settings(&upstream.outlier_detection),
        health_check: upstream.health_check.as_ref().map(health_check_settings),
        discovery: discovery(upstream),
        breaker: upstream.breaker.as_ref().map(breaker_policy),
        concurrency: upstream.concurrency.as_ref().map(crate::stages::concurrency::settings),
    }
}

fn breaker_policy(breaker: &weir_config::Breaker) -> BreakerPolicy {
    BreakerPolicy {
        settings: BreakerSettings {
            failure_rate: breaker.failure_rate.0,
            slow_call_rate: breaker.slow_call_rate.0,
            slow_call_duration: breaker.slow_call_duration.0,
            window: breaker.window.0,
            min_calls: breaker.min_calls,
            open_for: breaker.open_for.0,
            max_open_for: breaker.max_open_for.0,
            half_open_probes: breaker.half_open_probes,
        },
        failure_statuses: breaker.failure_statuses.iter().map(|range| range.0.clone()).collect(),
    }
}

fn outlier_settings(outlier: &OutlierDetection) -> OutlierSettings {
    if !outlier.enabled {
        return OutlierSettings::OFF;
    }
    OutlierSettings {
        consecutive_5xx: outlier.consecutive_5xx,
        consecutive_gateway_errors: outlier.consecutive_gateway_errors,
        failure_percentage: outlier.failure_percentage.0,
        failure_window: outlier.failure_percentage_window,
        base_ejection_time: outlier.base_ejection_time.0,
        max_ejection_time: outlier.max_ejection_time.0,
        max_ejection_percent: outlier.max_ejection_percent.0,
    }
}

fn health_check_settings(check: &HealthCheck) -> HealthCheckSettings {
    let probe = match check.kind {
        HealthCheckKind::Tcp => HealthProbe::Tcp,
        HealthCheckKind::Http => HealthProbe::Http {
            path: check.path.0.parse().expect("validated paths are valid request targets"),
            host: check.host.as_ref().map(|h| h.0.clone()),
            statuses: check.expected_statuses.iter().map(|range| range.0.clone()).collect(),
        },
        HealthCheckKind::Grpc => {
            let authority = check.host.as_ref().and_then(|h| h.0.to_str().ok()).map(str::to_string);
            HealthProbe::grpc(&check.service, authority)
        }
    };
    HealthCheckSettings {
        probe,
        interval: check.interval.0,
        jitter: check.jitter.0,
        timeout: check.timeout.0,
        healthy_threshold: check.healthy_threshold,
        unhealthy_threshold: check.unhealthy_threshold,
        // Set with the upstream's TLS client, when it has one.
        tls: None,
    }
}
