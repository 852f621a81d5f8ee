//! weir's configuration: the file format users write (YAML or TOML), the typed values inside it, and
//! the validation that turns a parsed file into a [`Config`] the data plane can compile without checks.
//!
//! Loading happens when weir starts (and for `weir validate`), never on the request path.

mod error;
pub mod fault;
mod file;
mod load;
mod locate;
mod protocol;
pub mod ratelimit;
mod resilience;
pub mod tls;
mod trace;
mod upstream;
mod validate;
pub mod values;
pub mod view;
mod websocket;

pub use error::{ConfigError, Problem};
pub use file::*;
pub use load::{Format, load_file, parse_str};
pub use protocol::{GrpcMatch, Http2, UpstreamProtocol};
pub use resilience::{AdaptiveConcurrency, Backoff, Budget, Concurrency, Fallback, Retry, RetryOn};
pub use tls::{Alpn, ClientAuth, ClientCertificate, ListenerTls, TlsVersion, UpstreamTls};
pub use trace::{OtlpProtocol, Tracing};
pub use upstream::*;
pub use validate::Config;
pub use websocket::WebSocket;
