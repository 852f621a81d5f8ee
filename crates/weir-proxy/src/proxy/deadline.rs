//! A request's deadline: the route's timeout, or less when the client sent a shorter one in
//! `grpc-timeout` or the configured deadline header, counted from the request's arrival. What is
//! left is sent upstream in the same headers before each try.

use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;
use weir_resilience::deadline::{budget, format_grpc_timeout, parse_grpc_timeout, parse_millis};

use crate::route::Route;

const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// When a request must be answered by.
pub struct Deadline {
    pub at: Instant,
    /// The client sent `grpc-timeout`, so the upstream gets one too.
    grpc: bool,
}

impl Deadline {
    pub fn of(route: &Route, headers: &HeaderMap, header: Option<&HeaderName>, arrived: Instant) -> Deadline {
        let grpc = headers.get(&GRPC_TIMEOUT).and_then(|v| parse_grpc_timeout(v.as_bytes()));
        let client = header.and_then(|h| headers.get(h)).and_then(|v| parse_millis(v.as_bytes()));
        Deadline { at: arrived + budget(route.timeout, grpc.into_iter().chain(client)), grpc: grpc.is_some() }
    }

    /// Writes the time left into the headers the upstream reads: `grpc-timeout` when the client
    /// sent one, and the configured deadline header. With neither, the clock is not read.
    pub fn stamp(&self, headers: &mut HeaderMap, header: Option<&HeaderName>) {
        if !self.grpc && header.is_none() {
            return;
        }
        let left = self.at.saturating_duration_since(Instant::now());
        if self.grpc {
            let value = HeaderValue::from_str(&format_grpc_timeout(left)).expect("digits and a unit");
            headers.insert(GRPC_TIMEOUT, value);
        }
        if let Some(header) = header {
            headers.insert(header.clone(), HeaderValue::from(left.as_millis() as u64));
        }
    }
}
