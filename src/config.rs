//! Configuration: one typed tree loaded from TOML, validated once.
//!
//! Key names follow DESIGN §8 and are part of pgshadow's interface.
//! Unknown keys are errors (a typo must not silently fall back to a
//! default), and every error names the offending key.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

use crate::protocol::framing::POSTGRES_MAX_MESSAGE_BYTES;

/// Why a configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{origin}: {source}")]
    Syntax {
        origin: String,
        source: Box<toml::de::Error>,
    },
    /// A key has the wrong type or is unknown.
    #[error("{origin}: key `{key}`: {source}")]
    Key {
        origin: String,
        key: String,
        source: Box<toml::de::Error>,
    },
    /// A value is well-typed but not acceptable.
    #[error("{origin}: key `{key}`: {message}")]
    Invalid {
        origin: String,
        key: &'static str,
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where applications connect.
    #[serde(default)]
    pub listen: ListenConfig,
    /// The database the application really uses.
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// Shadow comparison of sampled reads.
    #[serde(default)]
    pub shadow: ShadowConfig,
    /// Stable id columns appended to ORDER BY.
    #[serde(default)]
    pub tiebreak: TiebreakConfig,
    /// How result sets are compared.
    #[serde(default)]
    pub compare: CompareConfig,
    /// Where mismatches are kept.
    #[serde(default)]
    pub store: StoreConfig,
    /// The admin HTTP server.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
}

/// `[listen]`: the client-facing side of the proxy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// Address and port applications connect to. Port 0 picks a free port
    /// (logged at startup).
    pub address: SocketAddr,
    /// Largest message body a client may send, in bytes. Larger messages
    /// are refused with SQLSTATE 08P01. Defaults to Postgres's own limit.
    pub max_message_bytes: usize,
    /// Time a new client has to send its StartupMessage (or cancel request).
    pub startup_timeout_ms: u64,
    /// On SIGTERM/SIGINT, how long open sessions may keep running before
    /// they are closed.
    pub shutdown_timeout_ms: u64,
    /// Runtime worker threads serving connections; 0 means one per CPU.
    pub worker_threads: usize,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 6432)),
            max_message_bytes: POSTGRES_MAX_MESSAGE_BYTES,
            startup_timeout_ms: 15_000,
            shutdown_timeout_ms: 30_000,
            worker_threads: 0,
        }
    }
}

impl ListenConfig {
    /// `startup_timeout_ms` as a duration.
    pub fn startup_timeout(&self) -> Duration {
        Duration::from_millis(self.startup_timeout_ms)
    }

    /// `shutdown_timeout_ms` as a duration.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

/// `[upstream]`: the PostgreSQL server the application really uses.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// How long to wait for the TCP connection to the upstream.
    pub connect_timeout_ms: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 5432,
            connect_timeout_ms: 5_000,
        }
    }
}

impl UpstreamConfig {
    /// `host:port`, as shown in logs and client-facing errors.
    pub fn display_address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `connect_timeout_ms` as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// `[shadow]`: sampling and shadow execution of reads.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShadowConfig {
    /// Master switch for shadow comparison.
    pub enabled: bool,
    /// Fraction of eligible reads compared, 0 to 1.
    pub sample_rate: f64,
    /// Host of the shadow connections; defaults to `upstream.host`.
    pub host: Option<String>,
    /// Port of the shadow connections; defaults to `upstream.port`.
    pub port: Option<u16>,
    /// Role the shadow connections log in as (ideally read-only).
    pub user: String,
    /// Environment variable holding that role's password.
    pub password_env: Option<String>,
    /// search_path of the schema the application uses today.
    pub old_search_path: String,
    /// search_path of the migrated schema.
    pub new_search_path: String,
    /// Shadow comparisons running at once (and shadow connections per
    /// database).
    pub max_in_flight: usize,
    /// Samples waiting for a worker; beyond this they are dropped.
    pub queue_capacity: usize,
    /// `statement_timeout` of each shadow statement.
    pub statement_timeout_ms: u64,
    /// Samples started per second at most, over all sessions (0 = no cap).
    pub max_samples_per_second: u64,
    /// Each fingerprint's first executions are sampled whatever the rate,
    /// so rare queries are covered too.
    pub first_executions: u32,
    /// Per-fingerprint sample rates (fingerprint in hex → rate 0..1).
    pub fingerprint_sample_rates: BTreeMap<String, f64>,
    /// More functions that must never run on the shadow (lowercase; a
    /// trailing `*` matches a prefix), added to the built-in deny list.
    pub deny_functions: Vec<String>,
    /// Relations renamed by the migration: old name → new name (`table` or
    /// `schema.table`), applied to the new query.
    pub table_map: BTreeMap<String, String>,
    /// Largest Query/Parse/Bind message copied for capture; larger
    /// statements are skipped as `too_large` (they still run normally).
    pub max_capture_bytes: usize,
    /// Re-run a mismatch once in a fresh snapshot before reporting it, and
    /// say whether it was confirmed.
    pub recheck_mismatches: bool,
    /// Distinct SQL texts whose parse and rewrite are cached.
    pub plan_cache_size: usize,
    /// `shared` (default): old and new run in one snapshot. `separate`:
    /// in two transactions, so concurrent writes cause false alarms; only
    /// for showing why the shared snapshot matters.
    pub snapshot: SnapshotMode,
}

/// How the old and new query share a snapshot.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotMode {
    /// One REPEATABLE READ READ ONLY transaction for both.
    Shared,
    /// Two transactions (demonstrations only).
    Separate,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            sample_rate: 0.01,
            host: None,
            port: None,
            user: "pgshadow".into(),
            password_env: None,
            old_search_path: "public".into(),
            new_search_path: "v2".into(),
            max_in_flight: 4,
            queue_capacity: 1024,
            statement_timeout_ms: 5_000,
            max_samples_per_second: 0,
            first_executions: 3,
            fingerprint_sample_rates: BTreeMap::new(),
            deny_functions: Vec::new(),
            table_map: BTreeMap::new(),
            max_capture_bytes: 1024 * 1024,
            recheck_mismatches: true,
            plan_cache_size: 10_000,
            snapshot: SnapshotMode::Shared,
        }
    }
}

/// `[tiebreak]`: stable id columns that make ORDER BY total.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TiebreakConfig {
    /// Append the tiebreaker to the shadow's queries. Off, rows that tie on
    /// the sort key are compared tie-tolerantly, and paginated queries
    /// with ties raise false alarms.
    pub enabled: bool,
    /// Id column for tables not listed in `columns`.
    pub default_column: String,
    /// Table name to its stable id column.
    pub columns: BTreeMap<String, String>,
    /// Also append the tiebreaker to the application's own ORDER BY queries.
    pub apply_to_primary: bool,
}

impl Default for TiebreakConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            default_column: "id".into(),
            columns: BTreeMap::new(),
            apply_to_primary: false,
        }
    }
}

/// `[compare]`: how two result sets are compared.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompareConfig {
    /// Columns left out of every comparison.
    pub ignore_columns: Vec<String>,
    /// Rows compared per side at most; further rows are compared through
    /// digests only.
    pub max_rows: usize,
    /// Relative tolerance for float4/float8 values (0 = exact).
    pub float_tolerance: f64,
    /// Treat numeric values that differ only in trailing zeros (1.50 vs
    /// 1.5) as equal.
    pub numeric_scale: bool,
    /// Require identical column types. By default compatible types are
    /// equal: int2/int4/int8, text/varchar/bpchar/name, float4/float8.
    pub strict_types: bool,
    /// Differing rows listed per mismatch at most.
    pub max_reported: usize,
}

impl Default for CompareConfig {
    fn default() -> Self {
        Self {
            ignore_columns: Vec::new(),
            max_rows: 10_000,
            float_tolerance: 0.0,
            numeric_scale: false,
            strict_types: false,
            max_reported: 10,
        }
    }
}

/// `[store]`: the mismatch store.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://FILE` or `postgres://...`.
    pub url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://pgshadow-mismatches.db".into(),
        }
    }
}

/// `[admin]`: metrics, health and the on-call API.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin HTTP server.
    pub address: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 9930)),
        }
    }
}

/// `[log]`: logging.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Minimum level (`error`, `warn`, `info`, `debug`, `trace`) or a full
    /// `tracing` filter such as `info,pgshadow::proxy=debug`.
    /// `RUST_LOG` overrides it.
    pub level: String,
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
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

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|source| ConfigError::Syntax {
            origin: origin.to_string(),
            source: Box::new(source),
        })?;
        let config: Config =
            serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Key {
                origin: origin.to_string(),
                key: e.path().to_string(),
                source: Box::new(e.into_inner()),
            })?;
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                origin: origin.to_string(),
                key,
                message,
            })?;
        Ok(config)
    }

    /// Checks what types alone cannot; returns the key and the reason.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        fn check(
            ok: bool,
            key: &'static str,
            msg: impl FnOnce() -> String,
        ) -> Result<(), (&'static str, String)> {
            if ok {
                Ok(())
            } else {
                Err((key, msg()))
            }
        }
        let l = &self.listen;
        check(
            l.max_message_bytes >= 1024,
            "listen.max_message_bytes",
            || format!("must be at least 1024 bytes, got {}", l.max_message_bytes),
        )?;
        check(
            l.max_message_bytes <= POSTGRES_MAX_MESSAGE_BYTES,
            "listen.max_message_bytes",
            || {
                format!(
                    "must be at most {POSTGRES_MAX_MESSAGE_BYTES} (Postgres's own limit), got {}",
                    l.max_message_bytes
                )
            },
        )?;
        check(
            l.startup_timeout_ms > 0,
            "listen.startup_timeout_ms",
            || "must be greater than 0".into(),
        )?;
        check(l.worker_threads <= 1024, "listen.worker_threads", || {
            format!("must be at most 1024, got {}", l.worker_threads)
        })?;
        let u = &self.upstream;
        check(!u.host.trim().is_empty(), "upstream.host", || {
            "must not be empty".into()
        })?;
        check(u.port != 0, "upstream.port", || "must not be 0".into())?;
        check(
            u.connect_timeout_ms > 0,
            "upstream.connect_timeout_ms",
            || "must be greater than 0".into(),
        )?;
        let s = &self.shadow;
        check(
            (0.0..=1.0).contains(&s.sample_rate),
            "shadow.sample_rate",
            || format!("must be between 0 and 1, got {}", s.sample_rate),
        )?;
        check(!s.user.is_empty(), "shadow.user", || {
            "must not be empty".into()
        })?;
        check(s.max_in_flight > 0, "shadow.max_in_flight", || {
            "must be at least 1".into()
        })?;
        check(s.queue_capacity > 0, "shadow.queue_capacity", || {
            "must be at least 1".into()
        })?;
        check(
            s.statement_timeout_ms > 0,
            "shadow.statement_timeout_ms",
            || "must be greater than 0".into(),
        )?;
        check(
            !s.old_search_path.trim().is_empty(),
            "shadow.old_search_path",
            || "must not be empty".into(),
        )?;
        check(
            !s.new_search_path.trim().is_empty(),
            "shadow.new_search_path",
            || "must not be empty".into(),
        )?;
        check(
            s.max_capture_bytes >= 1024,
            "shadow.max_capture_bytes",
            || format!("must be at least 1024, got {}", s.max_capture_bytes),
        )?;
        check(s.plan_cache_size > 0, "shadow.plan_cache_size", || {
            "must be at least 1".into()
        })?;
        for (fingerprint, rate) in &s.fingerprint_sample_rates {
            check(
                fingerprint.len() == 16 && u64::from_str_radix(fingerprint, 16).is_ok(),
                "shadow.fingerprint_sample_rates",
                || {
                    format!(
                        "{fingerprint:?} is not a fingerprint (16 hex digits, as shown in logs)"
                    )
                },
            )?;
            check(
                (0.0..=1.0).contains(rate),
                "shadow.fingerprint_sample_rates",
                || format!("rate for {fingerprint} must be between 0 and 1, got {rate}"),
            )?;
        }
        if s.enabled {
            if let Some(var) = &s.password_env {
                check(
                    std::env::var_os(var).is_some(),
                    "shadow.password_env",
                    || format!("environment variable {var} is not set"),
                )?;
            }
        }
        check(
            self.compare.float_tolerance >= 0.0 && self.compare.float_tolerance.is_finite(),
            "compare.float_tolerance",
            || {
                format!(
                    "must be a finite number >= 0, got {}",
                    self.compare.float_tolerance
                )
            },
        )?;
        check(
            !self.tiebreak.default_column.is_empty(),
            "tiebreak.default_column",
            || "must not be empty".into(),
        )?;
        check(self.compare.max_rows > 0, "compare.max_rows", || {
            "must be at least 1".into()
        })?;
        check(
            self.store.url.starts_with("sqlite://")
                || self.store.url.starts_with("postgres://")
                || self.store.url.starts_with("postgresql://"),
            "store.url",
            || {
                format!(
                    "must start with sqlite:// or postgres://, got {:?}",
                    self.store.url
                )
            },
        )?;
        if let Err(e) = crate::observability::logs::parse_filter(&self.log.level) {
            return Err(("log.level", e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let c = Config::parse("", "test").unwrap();
        assert_eq!(c.listen.address.to_string(), "127.0.0.1:6432");
        assert_eq!(c.upstream.display_address(), "127.0.0.1:5432");
        assert_eq!(c.admin.address.to_string(), "127.0.0.1:9930");
        assert!(!c.shadow.enabled);
        assert_eq!(c.log.format, LogFormat::Text);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("[listen]\nadress = \"x\"\n", "f.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("listen.adress"), "{msg}");
        assert!(msg.contains("unknown field"), "{msg}");
    }

    #[test]
    fn type_errors_name_the_key_and_line() {
        let err = Config::parse("[upstream]\nport = \"five\"\n", "f.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("upstream.port"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        for (toml, key) in [
            ("[shadow]\nsample_rate = 1.5", "shadow.sample_rate"),
            (
                "[listen]\nmax_message_bytes = 10",
                "listen.max_message_bytes",
            ),
            ("[upstream]\nhost = \"\"", "upstream.host"),
            ("[store]\nurl = \"mysql://x\"", "store.url"),
            ("[log]\nlevel = \"loud\"", "log.level"),
            ("[shadow]\nmax_in_flight = 0", "shadow.max_in_flight"),
        ] {
            let msg = Config::parse(toml, "f.toml").unwrap_err().to_string();
            assert!(msg.contains(key), "{toml}: {msg}");
        }
    }

    #[test]
    fn ipv6_upstreams_are_bracketed_in_messages() {
        let c = Config::parse("[upstream]\nhost = \"::1\"\nport = 5433", "t").unwrap();
        assert_eq!(c.upstream.display_address(), "[::1]:5433");
    }
}
