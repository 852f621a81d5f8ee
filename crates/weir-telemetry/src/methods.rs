//! Requests by HTTP method, per route: one counter per method of a fixed list (anything else counts
//! as `other`), so a client inventing methods cannot add series.

use http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The methods labelled, in counter order; `other` for the rest.
pub const METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MethodLabels {
    route: String,
    method: String,
}

pub(crate) type MethodFamily = Family<MethodLabels, Counter>;

pub(crate) fn register(registry: &mut Registry) -> MethodFamily {
    let family = MethodFamily::default();
    registry.register("requests_by_method", "Requests received, by route and HTTP method", family.clone());
    family
}

/// One route's counters, in [`METHODS`] order.
pub(crate) fn handles(family: &MethodFamily, route: &str) -> [Counter; 8] {
    METHODS.map(|method| family.get_or_create(&MethodLabels { route: route.into(), method: method.into() }).clone())
}

/// The position of `method` in [`METHODS`].
pub(crate) fn index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}
