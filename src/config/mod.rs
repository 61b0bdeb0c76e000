//! Configuration: one typed tree loaded from TOML, validated once.
//!
//! Key names follow DESIGN §8 and are part of pgshadow's interface.
//! Unknown keys are errors (a typo must not silently fall back to a
//! default), and every error names the offending key.
//!
//! One file per section, each with its struct, defaults and `validate()`:
//! [`listen`], [`upstream`], [`shadow`], [`tiebreak`], [`compare`],
//! [`store`], [`admin`], [`alerts`]; `[log]` is
//! [`crate::observability::logs::LogConfig`]. [`error`] holds the error
//! type and `certificates` the `tls_cert`/`tls_key` pair check. This
//! file loads, asks each section to check itself and keeps the checks
//! that span sections.

pub mod admin;
pub mod alerts;
mod certificates;
pub mod compare;
pub mod error;
pub mod listen;
pub mod shadow;
pub mod store;
pub mod tiebreak;
pub mod upstream;

pub use self::admin::AdminConfig;
pub use self::alerts::{AlertsConfig, WebhookUrl};
pub use self::compare::{CompareConfig, PAIR_WINDOW};
pub use self::error::ConfigError;
pub use self::listen::{ListenConfig, ListenTlsMode};
pub use self::shadow::{ShadowConfig, SnapshotMode};
pub use self::store::{StoreConfig, StoreUrl, StoreUrlError, StoreValues};
pub use self::tiebreak::{KeyColumns, TiebreakConfig};
pub use self::upstream::UpstreamConfig;
pub use crate::observability::logs::{parse_log_filter, LogConfig, LogFilter, LogFormat};
pub use crate::tls::TlsMode;

use self::error::Rejection;
use serde::Deserialize;
use std::path::Path;

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
    /// Webhook alerts about incidents.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
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

    /// How shadow comparisons compare: `[compare]`, with as many row ids
    /// per diff as an incident keeps (`store.max_ids_per_incident`).
    pub fn compare_options(&self) -> crate::diff::CompareOptions {
        let max_ids = usize::try_from(self.store.max_ids_per_incident).unwrap_or(usize::MAX);
        self.compare.options(max_ids)
    }

    /// Checks what types alone cannot, section by section, then the
    /// files that must load now; returns the key and the reason.
    fn validate(&self) -> Result<(), Rejection> {
        self.listen.validate()?;
        self.upstream.validate()?;
        self.shadow.validate()?;
        self.compare.validate()?;
        self.tiebreak.validate()?;
        self.store.validate()?;
        self.check_store_password()?;
        self.alerts.validate()?;
        self.admin.validate()?;
        self.listen.check_tls()?;
        self.upstream.check_tls()?;
        self.check_shadow_tls()?;
        self.admin.check_tls()?;
        self.admin.check_exposure()?;
        self.alerts.check_tls()?;
        Ok(())
    }

    /// `store.password_env` must be set when the shadow runs: only then is
    /// the store opened, and it must not fail later for want of it.
    fn check_store_password(&self) -> Result<(), Rejection> {
        if self.shadow.enabled {
            if let Some(var) = &self.store.password_env {
                if std::env::var_os(var).is_none() {
                    return Err((
                        "store.password_env",
                        format!("environment variable {var} is not set"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The shadow's own TLS settings, which fall back to `[upstream]`'s,
    /// must load now.
    fn check_shadow_tls(&self) -> Result<(), Rejection> {
        let u = &self.upstream;
        let s = &self.shadow;
        if s.tls.is_some() || s.tls_root_cert.is_some() {
            let host = s.host.as_deref().unwrap_or(&u.host);
            crate::tls::UpstreamTls::new(
                s.tls.unwrap_or(u.tls),
                s.tls_root_cert.as_deref().or(u.tls_root_cert.as_deref()),
                host,
                "shadow",
            )
            .map_err(|e| ("shadow.tls_root_cert", e.to_string()))?;
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
            ("[store]\nmax_examples = 0", "store.max_examples"),
            ("[store]\nretention_days = 0", "store.retention_days"),
            ("[store]\nqueue_capacity = 0", "store.queue_capacity"),
            ("[store]\nflush_interval_ms = 0", "store.flush_interval_ms"),
            ("[log]\nlevel = \"loud\"", "log.level"),
            ("[shadow]\nmax_in_flight = 0", "shadow.max_in_flight"),
            ("[shadow]\nmax_batch = 0", "shadow.max_batch"),
            (
                "[shadow]\nmax_in_flight = 4\nmax_connections = 4",
                "shadow.max_connections",
            ),
            (
                "[shadow]\nbatch_window_ms = 60000",
                "shadow.batch_window_ms",
            ),
            (
                "[alerts]\nwebhook_url = \"ftp://hooks.example.com/x\"",
                "alerts.webhook_url",
            ),
            ("[alerts]\npage_url = \"ftp://x\"", "alerts.page_url"),
            ("[alerts]\ntimeout_ms = 0", "alerts.timeout_ms"),
            ("[alerts]\nmax_retries = 100", "alerts.max_retries"),
            (
                "[shadow]\nmuted_fingerprints = [\"nope\"]",
                "shadow.muted_fingerprints",
            ),
            ("[shadow]\nbaseline_rate = 2.0", "shadow.baseline_rate"),
            ("[tiebreak]\ncolumns = { t = [] }", "tiebreak.columns"),
            (
                "[tiebreak]\ncolumns = { t = [\"a\", \"\"] }",
                "tiebreak.columns",
            ),
            (
                "[tiebreak]\nkey_cache_seconds = 0",
                "tiebreak.key_cache_seconds",
            ),
            (
                "[store]\nmax_ids_per_incident = 0",
                "store.max_ids_per_incident",
            ),
        ] {
            let msg = Config::parse(toml, "f.toml").unwrap_err().to_string();
            assert!(msg.contains(key), "{toml}: {msg}");
        }
    }

    #[test]
    fn a_tiebreak_key_is_one_column_or_a_list() {
        let c = Config::parse(
            "[tiebreak]\ncolumns = { entries = \"sys_id\", entry_fields = [\"env_id\", \"entry_id\", \"field\"] }",
            "t",
        )
        .unwrap();
        assert_eq!(c.tiebreak.columns["entries"].columns(), ["sys_id"]);
        assert_eq!(
            c.tiebreak.columns["entry_fields"].columns(),
            ["env_id", "entry_id", "field"]
        );
    }

    #[test]
    fn ipv6_upstreams_are_bracketed_in_messages() {
        let c = Config::parse("[upstream]\nhost = \"::1\"\nport = 5433", "t").unwrap();
        assert_eq!(c.upstream.display_address(), "[::1]:5433");
    }

    #[test]
    fn the_admin_token_comes_from_the_file_or_a_variable_and_is_never_printed() {
        let c = Config::parse("[admin]\ntoken = \"s3cret\"", "t").unwrap();
        assert_eq!(c.admin.resolve_token(), Ok(Some("s3cret".to_string())));
        assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
        assert_eq!(
            Config::parse("", "t").unwrap().admin.resolve_token(),
            Ok(None)
        );
        for (toml, key) in [
            ("[admin]\ntoken = \" \"", "admin.token"),
            (
                "[admin]\ntoken_env = \"PGSHADOW_TEST_UNSET_ADMIN_TOKEN\"",
                "admin.token_env",
            ),
            (
                "[admin]\ntoken = \"a\"\ntoken_env = \"PATH\"",
                "admin.token_env",
            ),
        ] {
            let msg = Config::parse(toml, "f.toml").unwrap_err().to_string();
            assert!(msg.contains(key), "{toml}: {msg}");
        }
        let c = Config::parse("[admin]\ntoken_env = \"PATH\"", "t").unwrap();
        assert_eq!(c.admin.resolve_token(), Ok(std::env::var("PATH").ok()));
    }
}
