//! weir's data plane: listeners and connections, TLS, weir's own HTTP/1.1 and HTTP/2 servers, route
//! matching, forwarding to upstreams, and the one place refusals become responses.
//!
//! A request's way: [`server`] accepts and serves a connection -> [`tls`] terminates TLS on TLS
//! listeners -> [`http1`] or [`http2`] parses (HTTP/1.1 held to the [`framing`] rules) -> [`handler::serve_request`]
//! loads the [`Snapshot`], matches a route ([`router`]) and runs its action -> [`refusal`] answers
//! for anything refused -> [`body`] streams the response and, at its end, finishes the request's
//! metrics, [`access`] log record and [`trace`] span.

pub mod access;
pub mod access_headers;
pub mod admin;
pub mod admin_faults;
pub mod admin_live;
pub mod admin_reload;
pub mod admin_views;
pub mod body;
pub mod client_body;
pub mod closing;
pub mod clusters;

pub mod forward;
pub mod framing;
pub mod handler;
pub mod http1;
pub mod http2;
pub mod inherited;
pub mod listeners;
pub(crate) mod parking;
pub mod proxy;
pub mod refusal;
pub mod reload;
pub mod route;
pub mod router;
pub mod server;
pub mod snapshot;
pub mod stages;
pub mod tls;
pub mod trace;
pub mod upstream_notes;
pub mod upstream_status;

pub use inherited::InheritedSockets;
pub use refusal::Refusal;
pub use reload::{ConfigDiff, ReloadError, Reloaded, Trigger};
pub use server::{Drained, Gateway, ServeError, Server, Stop};
pub use snapshot::{Snapshot, SnapshotError};
