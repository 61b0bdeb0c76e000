//! Structured logging with `tracing`, as text or JSON.
//!
//! Every line written while serving a client carries the `session` span
//! with that client's connection id, so one connection's story can be
//! followed with a single grep.

use crate::config::{LogConfig, LogFormat};
use std::str::FromStr;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;

/// Parses `log.level`: a bare level (`info`) or a `tracing` filter
/// (`info,pgshadow::proxy=debug`).
///
/// A bare level applies to pgshadow's own lines; libraries log at most at
/// `info`, so `debug` shows what the proxy decides, not every token the SQL
/// parser reads. A filter is taken as written.
pub fn parse_filter(level: &str) -> Result<EnvFilter, String> {
    let level = level.trim();
    if level.contains('=') || level.contains(',') {
        return EnvFilter::try_new(level).map_err(|e| format!("invalid filter {level:?}: {e}"));
    }
    let parsed = LevelFilter::from_str(level).map_err(|_| {
        format!("unknown level {level:?}: use error, warn, info, debug, trace or a filter like \"info,pgshadow::proxy=debug\"")
    })?;
    let libraries = parsed.min(LevelFilter::INFO);
    EnvFilter::try_new(format!("{libraries},pgshadow={parsed}"))
        .map_err(|e| format!("invalid level {level:?}: {e}"))
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides
/// `log.level`. Lines go to stderr.
pub fn init(config: &LogConfig) -> Result<(), String> {
    crate::privacy::set_log_values(config.values);
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| format!("invalid RUST_LOG {v:?}: {e}"))?
        }
        _ => parse_filter(&config.level)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_filters_parse_and_nonsense_does_not() {
        assert!(parse_filter("info").is_ok());
        assert!(parse_filter("DEBUG").is_ok());
        assert!(parse_filter("info,pgshadow::proxy=debug").is_ok());
        assert!(parse_filter("loud").unwrap_err().contains("unknown level"));
    }

    #[test]
    fn a_bare_level_keeps_libraries_at_info() {
        let filter = parse_filter("debug").unwrap().to_string();
        assert!(filter.contains("pgshadow=debug"), "{filter}");
        assert!(
            !filter.replace("pgshadow=debug", "").contains("debug"),
            "{filter}"
        );
        let quiet = parse_filter("warn").unwrap().to_string();
        assert!(!quiet.contains("info"), "{quiet}");
    }
}
