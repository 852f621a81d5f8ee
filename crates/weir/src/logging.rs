//! Logging through `tracing`: readable text in a terminal, or one JSON object per line.

use tracing_subscriber::EnvFilter;
use weir_config::{Log, LogFormat};

/// The configured filter; `RUST_LOG`, when set, overrides it.
pub fn filter(log: &Log) -> Result<EnvFilter, String> {
    match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => EnvFilter::try_new(from_env).map_err(|e| format!("RUST_LOG: {e}")),
        _ => EnvFilter::try_new(&log.level).map_err(|e| format!("log.level {:?}: {e}", log.level)),
    }
}

/// Installs the global subscriber.
pub fn init(log: &Log) -> Result<(), String> {
    let filter = filter(log)?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))
}
