//! Structured logging with `tracing`, as text or JSON.
//!
//! Every line written while serving a client carries the `session` span
//! with that client's connection id, so one connection's story can be
//! followed with a single grep.

use crate::config::{parse_log_filter, LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides
/// `log.level`. Lines go to stderr.
pub fn init(config: &LogConfig) -> Result<(), String> {
    crate::privacy::set_log_values(config.values);
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| format!("invalid RUST_LOG {v:?}: {e}"))?
        }
        _ => parse_log_filter(&config.level)?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    result.map_err(|e| format!("cannot install the log subscriber: {e}"))
}
