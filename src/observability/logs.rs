//! Structured logging with `tracing`, as text or JSON.
//!
//! Every line written while serving a client carries the `session` span
//! with that client's connection id, so one connection's story can be
//! followed with a single grep.
//!
//! The `[log]` section of the config is defined here ([`LogConfig`]), so
//! logging depends on no layer above it; [`crate::config::Config`] holds it.

use serde::Deserialize;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;

/// `[log]`: logging.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Minimum level (`error`, `warn`, `info`, `debug`, `trace`) or a full
    /// `tracing` filter such as `info,pgshadow::proxy=debug`.
    /// `RUST_LOG` overrides it.
    pub level: LogFilter,
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
    /// Write parameter and row values into log lines. Off (default): lines
    /// carry lengths and keyed hashes instead, so production data never
    /// reaches the log pipeline.
    pub values: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: LogFilter::from_level(LevelFilter::INFO),
            format: LogFormat::Text,
            values: false,
        }
    }
}

/// `log.level`, parsed once at load: `tracing` directives known to
/// parse. An [`EnvFilter`] is not `Clone` and the config is, so the config
/// keeps the text and logging builds the filter from it
/// ([`LogFilter::env_filter`]) without an error path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct LogFilter {
    /// Directives that [`EnvFilter::try_new`] accepted.
    directives: String,
}

impl LogFilter {
    /// A bare level applies to pgshadow's own lines; libraries log at most
    /// at `info`, so `debug` shows what the proxy decides, not every token
    /// the SQL parser reads.
    fn from_level(level: LevelFilter) -> LogFilter {
        let libraries = level.min(LevelFilter::INFO);
        LogFilter {
            directives: format!("{libraries},pgshadow={level}"),
        }
    }

    /// The filter to install; the same directives parsed before, so none
    /// is dropped.
    pub fn env_filter(&self) -> EnvFilter {
        EnvFilter::new(&self.directives)
    }
}

impl FromStr for LogFilter {
    type Err = String;

    /// A bare level (`info`) or a `tracing` filter
    /// (`info,pgshadow::proxy=debug`), which is taken as written.
    fn from_str(level: &str) -> Result<LogFilter, String> {
        let level = level.trim();
        if level.contains('=') || level.contains(',') {
            EnvFilter::try_new(level).map_err(|e| format!("invalid filter {level:?}: {e}"))?;
            return Ok(LogFilter {
                directives: level.to_owned(),
            });
        }
        let parsed = LevelFilter::from_str(level).map_err(|_| {
            format!("unknown level {level:?}: use error, warn, info, debug, trace or a filter like \"info,pgshadow::proxy=debug\"")
        })?;
        Ok(LogFilter::from_level(parsed))
    }
}

impl TryFrom<String> for LogFilter {
    type Error = String;

    fn try_from(level: String) -> Result<LogFilter, String> {
        level.parse()
    }
}

impl fmt::Display for LogFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.directives)
    }
}

/// Parses `log.level` into the filter logging installs ([`LogFilter`]).
pub fn parse_log_filter(level: &str) -> Result<EnvFilter, String> {
    level.parse::<LogFilter>().map(|f| f.env_filter())
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `log.values`, set once when logging starts: read wherever a value could
/// reach a log line ([`crate::privacy`] decides the value-free form).
static LOG_VALUES: AtomicBool = AtomicBool::new(false);

/// Whether log lines may carry parameter and row values (`log.values`).
pub fn log_values() -> bool {
    LOG_VALUES.load(Ordering::Relaxed)
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides
/// `log.level`. Lines go to stderr.
pub fn init(config: &LogConfig) -> Result<(), String> {
    LOG_VALUES.store(config.values, Ordering::Relaxed);
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| format!("invalid RUST_LOG {v:?}: {e}"))?
        }
        _ => config.level.env_filter(),
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
        assert!(parse_log_filter("info").is_ok());
        assert!(parse_log_filter("DEBUG").is_ok());
        assert!(parse_log_filter("info,pgshadow::proxy=debug").is_ok());
        assert!(parse_log_filter("loud")
            .unwrap_err()
            .contains("unknown level"));
    }

    #[test]
    fn a_bare_level_keeps_libraries_at_info() {
        let filter = parse_log_filter("debug").unwrap().to_string();
        assert!(filter.contains("pgshadow=debug"), "{filter}");
        assert!(
            !filter.replace("pgshadow=debug", "").contains("debug"),
            "{filter}"
        );
        let quiet = parse_log_filter("warn").unwrap().to_string();
        assert!(!quiet.contains("info"), "{quiet}");
    }
}
