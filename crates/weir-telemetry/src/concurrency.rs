//! Concurrency-limit metrics: requests in flight and queued under each limit, the limit itself (it
//! moves when adaptive), and requests shed by cause. Labels are `scope` (`route` or `upstream`) and
//! `name` (the route's or upstream's name).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The causes a shed request is counted under, in [`ConcurrencyMetrics::shed`] index order.
pub const SHED_CAUSES: [&str; 2] = ["queue_full", "queue_timeout"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    scope: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShedLabels {
    scope: String,
    name: String,
    cause: String,
}

/// The concurrency families, registered once.
pub(crate) struct ConcurrencyFamilies {
    in_flight: Family<LimitLabels, Gauge>,
    queued: Family<LimitLabels, Gauge>,
    limit: Family<LimitLabels, Gauge>,
    shed: Family<ShedLabels, Counter>,
}

impl ConcurrencyFamilies {
    pub(crate) fn register(registry: &mut Registry) -> ConcurrencyFamilies {
        let families = ConcurrencyFamilies {
            in_flight: Family::default(),
            queued: Family::default(),
            limit: Family::default(),
            shed: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("concurrency");
        r.register("in_flight", "Requests admitted by a concurrency limit", families.in_flight.clone());
        r.register("queued", "Requests waiting for a concurrency limit's slot", families.queued.clone());
        r.register("limit", "A concurrency limit's current value", families.limit.clone());
        r.register("shed", "Requests a concurrency limit shed, by cause", families.shed.clone());
        families
    }

    pub(crate) fn limit(&self, scope: &str, name: &str) -> ConcurrencyMetrics {
        let labels = LimitLabels { scope: scope.into(), name: name.into() };
        let shed = SHED_CAUSES.map(|cause| {
            let labels = ShedLabels { scope: scope.into(), name: name.into(), cause: cause.into() };
            self.shed.get_or_create(&labels).clone()
        });
        ConcurrencyMetrics {
            in_flight: self.in_flight.get_or_create(&labels).clone(),
            queued: self.queued.get_or_create(&labels).clone(),
            limit: self.limit.get_or_create(&labels).clone(),
            shed,
        }
    }
}

/// The handles one concurrency limit touches. A later load of the same limit gets the same series,
/// so gauges raised under one snapshot are lowered correctly under the next.
#[derive(Clone, Debug)]
pub struct ConcurrencyMetrics {
    pub in_flight: Gauge,
    pub queued: Gauge,
    pub limit: Gauge,
    shed: [Counter; 2],
}

impl ConcurrencyMetrics {
    /// Counts a shed request by the index of its cause in [`SHED_CAUSES`].
    pub fn shed(&self, cause: usize) {
        if let Some(counter) = self.shed.get(cause) {
            counter.inc();
        }
    }
}
