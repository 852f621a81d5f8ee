//! The clusters in service, each with a fingerprint of the upstream configuration it was built
//! from. A reload asks the registry for its clusters: an upstream whose configuration did not change
//! gets the very same `Arc<Cluster>` back, so its pools, health verdicts, ejections, latency
//! averages and background tasks carry on; a new or changed upstream gets a fresh cluster.

use std::collections::HashMap;
use std::sync::Arc;

use weir_config::{Config, Upstream};
use weir_upstream::Cluster;

use crate::body::RequestBody;
use crate::clusters::{Clusters, build_cluster};
use crate::snapshot::SnapshotError;

type SharedCluster = Arc<Cluster<RequestBody>>;

/// Clusters by upstream name, with the configuration fingerprint each was built from.
#[derive(Default)]
pub struct ClusterRegistry {
    entries: HashMap<String, (String, SharedCluster)>,
}

/// The clusters for a new configuration: all of them, and the fresh ones that still need starting.
pub struct ClusterSet {
    pub registry: ClusterRegistry,
    pub clusters: Clusters,
    pub fresh: Vec<SharedCluster>,
}

impl ClusterRegistry {
    /// The registry of clusters built for `config` (at start-up).
    pub fn of(config: &Config, clusters: &Clusters) -> ClusterRegistry {
        let entries = config
            .upstreams
            .iter()
            .filter_map(|(name, upstream)| {
                Some((name.clone(), (cluster_fingerprint(upstream), clusters.get(name)?.clone())))
            })
            .collect();
        ClusterRegistry { entries }
    }

    /// The clusters `config` needs, reusing every one whose upstream configuration is unchanged.
    pub fn build(&self, config: &Config) -> Result<ClusterSet, SnapshotError> {
        let mut entries = HashMap::with_capacity(config.upstreams.len());
        let mut fresh = Vec::new();
        for (name, upstream) in &config.upstreams {
            let print = cluster_fingerprint(upstream);
            let cluster = match self.entries.get(name) {
                Some((old, cluster)) if *old == print => cluster.clone(),
                _ => {
                    let cluster = build_cluster(name, upstream)?;
                    fresh.push(cluster.clone());
                    cluster
                }
            };
            entries.insert(name.clone(), (print, cluster));
        }
        let clusters = entries.iter().map(|(name, (_, cluster))| (name.clone(), cluster.clone())).collect();
        Ok(ClusterSet { registry: ClusterRegistry { entries }, clusters, fresh })
    }
}

/// Everything an upstream is configured with, as text.
pub(crate) fn fingerprint(upstream: &Upstream) -> String {
    format!("{upstream:?}")
}

/// What an upstream's cluster is built from, as text: two upstreams with equal fingerprints build
/// identical clusters. Faults are not part of the cluster (the snapshot holds them), so changing
/// them keeps the cluster's breaker, pools and health.
fn cluster_fingerprint(upstream: &Upstream) -> String {
    if upstream.faults.is_empty() {
        return fingerprint(upstream);
    }
    let mut without_faults = upstream.clone();
    without_faults.faults.clear();
    fingerprint(&without_faults)
}

#[cfg(test)]
mod tests {
    use weir_config::{Format, parse_str};

    use super::*;

    fn config(backend_port: u16, other_port: u16) -> Config {
        let text = format!(
            "listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]\nupstreams:\n  backend:\n    endpoints: [\"127.0.0.1:{backend_port}\"]\n  other:\n    endpoints: [\"127.0.0.1:{other_port}\"]\nroutes:\n  - upstream: backend\n  - upstream: other\n"
        );
        parse_str(&text, Format::Yaml, "test.yaml").unwrap()
    }

    #[test]
    fn unchanged_upstreams_keep_their_cluster_and_changed_ones_get_a_new_one() {
        let first = ClusterRegistry::default().build(&config(1001, 2001)).unwrap();
        assert_eq!(first.fresh.len(), 2);
        let second = first.registry.build(&config(1001, 2002)).unwrap();
        assert!(Arc::ptr_eq(&first.clusters["backend"], &second.clusters["backend"]));
        assert!(!Arc::ptr_eq(&first.clusters["other"], &second.clusters["other"]));
        assert_eq!(second.fresh.len(), 1);
        assert!(Arc::ptr_eq(&second.fresh[0], &second.clusters["other"]));
    }

    #[test]
    fn changing_only_an_upstreams_faults_keeps_its_cluster() {
        let first = ClusterRegistry::default().build(&config(1001, 2001)).unwrap();
        let text = "listeners: [{ name: public, address: \"127.0.0.1:0\" }]\nupstreams:\n  backend:\n    endpoints: [\"127.0.0.1:1001\"]\n    faults: [{ abort: { status: 503 }, percent: 10 }]\n  other:\n    endpoints: [\"127.0.0.1:2001\"]\nroutes:\n  - upstream: backend\n  - upstream: other\n";
        let second = first.registry.build(&parse_str(text, Format::Yaml, "test.yaml").unwrap()).unwrap();
        assert!(Arc::ptr_eq(&first.clusters["backend"], &second.clusters["backend"]));
        assert!(second.fresh.is_empty());
    }
}
