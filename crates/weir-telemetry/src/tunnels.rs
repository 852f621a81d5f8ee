//! WebSocket tunnel metrics, by route: tunnels opened, open now, closed for idleness, and the bytes
//! carried each way (`upstream`: from the client to the upstream; `downstream`: back).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    route: String,
    direction: String,
}

/// The tunnel families, registered once.
pub(crate) struct TunnelFamilies {
    opened: Family<RouteLabel, Counter>,
    open: Family<RouteLabel, Gauge>,
    idle_closed: Family<RouteLabel, Counter>,
    bytes: Family<DirectionLabels, Counter>,
}

impl TunnelFamilies {
    pub(crate) fn register(registry: &mut Registry) -> TunnelFamilies {
        let families = TunnelFamilies {
            opened: Family::default(),
            open: Family::default(),
            idle_closed: Family::default(),
            bytes: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("websocket");
        r.register("tunnels", "WebSocket tunnels opened, by route", families.opened.clone());
        r.register("tunnels_open", "WebSocket tunnels open now, by route", families.open.clone());
        r.register("idle_closed", "WebSocket tunnels closed for idleness, by route", families.idle_closed.clone());
        r.register("bytes", "Bytes carried through WebSocket tunnels, by route and direction", families.bytes.clone());
        families
    }

    pub(crate) fn route(&self, route: &str) -> TunnelMetrics {
        let label = RouteLabel { route: route.into() };
        let bytes = |direction: &str| {
            self.bytes.get_or_create(&DirectionLabels { route: route.into(), direction: direction.into() }).clone()
        };
        TunnelMetrics {
            opened: self.opened.get_or_create(&label).clone(),
            open: self.open.get_or_create(&label).clone(),
            idle_closed: self.idle_closed.get_or_create(&label).clone(),
            upstream_bytes: bytes("upstream"),
            downstream_bytes: bytes("downstream"),
        }
    }
}

/// The handles one route's tunnels touch.
#[derive(Clone, Debug)]
pub struct TunnelMetrics {
    pub opened: Counter,
    pub open: Gauge,
    pub idle_closed: Counter,
    pub upstream_bytes: Counter,
    pub downstream_bytes: Counter,
}
