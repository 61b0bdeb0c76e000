//! Configuration: one typed tree loaded from TOML, validated once.
//!
//! Key names follow DESIGN §8 and are part of pgshadow's interface.
//! Unknown keys are errors (a typo must not silently fall back to a
//! default), and every error names the offending key.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

use crate::protocol::framing::POSTGRES_MAX_MESSAGE_BYTES;
pub use crate::tls::TlsMode;

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
    /// Webhook alerts about incidents.
    #[serde(default)]
    pub alerts: AlertsConfig,
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
    /// Client connections served at once; beyond, a new client gets
    /// SQLSTATE 53300 and is closed (a cancel request is still routed).
    /// 0 means no limit.
    pub max_client_connections: usize,
    /// Time a new client has to send its StartupMessage (or cancel request).
    pub startup_timeout_ms: u64,
    /// On SIGTERM/SIGINT, how long open sessions may keep running before
    /// they are closed.
    pub shutdown_timeout_ms: u64,
    /// Runtime worker threads serving connections; 0 means one per CPU.
    pub worker_threads: usize,
    /// PEM certificate chain presented to clients that ask for TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Whether clients may, must or cannot use TLS.
    pub tls_mode: ListenTlsMode,
}

/// `listen.tls_mode`: TLS for the applications' connections.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ListenTlsMode {
    /// SSLRequest is answered `N`: plain connections only.
    Disable,
    /// TLS for clients that ask (with a certificate configured), plain
    /// for the others.
    #[default]
    Prefer,
    /// Clients must use TLS; a plain StartupMessage gets FATAL 28000.
    Require,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 6432)),
            max_message_bytes: POSTGRES_MAX_MESSAGE_BYTES,
            max_client_connections: 10_000,
            startup_timeout_ms: 15_000,
            shutdown_timeout_ms: 30_000,
            worker_threads: 0,
            tls_cert: None,
            tls_key: None,
            tls_mode: ListenTlsMode::Prefer,
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
    /// TLS to the upstream, with libpq's `sslmode` meanings.
    pub tls: TlsMode,
    /// PEM bundle of the CAs trusted for the upstream's certificate
    /// (`verify-ca`, `verify-full`); unset: the system's roots.
    pub tls_root_cert: Option<PathBuf>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 5432,
            connect_timeout_ms: 5_000,
            tls: TlsMode::Prefer,
            tls_root_cert: None,
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
    /// Samples a worker runs together on one connection at most.
    pub max_batch: usize,
    /// How long the dispatcher lets samples gather before handing a batch
    /// that is not full to a worker (0: at once).
    pub batch_window_ms: u64,
    /// `statement_timeout` of each shadow statement.
    pub statement_timeout_ms: u64,
    /// Samples started per second at most, over all sessions (0 = no cap).
    pub max_samples_per_second: u64,
    /// Each fingerprint's first executions are sampled whatever the rate,
    /// so rare queries are covered too.
    pub first_executions: u32,
    /// Per-fingerprint sample rates (fingerprint in hex → rate 0..1).
    pub fingerprint_sample_rates: BTreeMap<String, f64>,
    /// Fingerprints (hex, as logged) never sampled: their executions are
    /// skipped as `muted`. Reloaded on SIGHUP.
    pub muted_fingerprints: Vec<String>,
    /// More functions that must never run on the shadow (lowercase; a
    /// trailing `*` matches a prefix), added to the built-in deny list.
    pub deny_functions: Vec<String>,
    /// Relations renamed by the migration: old name → new name (`table` or
    /// `schema.table`), applied to the new query.
    pub table_map: BTreeMap<String, String>,
    /// Largest Query/Parse/Bind message copied for capture; larger
    /// statements are skipped as `too_large` (they still run normally).
    pub max_capture_bytes: usize,
    /// Bytes of named prepared statements one session's capture remembers
    /// (text, name, parameter types); statements prepared beyond are not
    /// tracked and their executions are skipped as `too_large`. The relay
    /// forwards them all the same.
    pub max_session_statement_bytes: usize,
    /// Re-run a mismatch once in a fresh snapshot before reporting it, and
    /// say whether it was confirmed.
    pub recheck_mismatches: bool,
    /// Distinct SQL texts whose parse and rewrite are cached.
    pub plan_cache_size: usize,
    /// `shared` (default): old and new run in one snapshot. `separate`:
    /// in two transactions, so concurrent writes cause false alarms; only
    /// for showing why the shared snapshot matters.
    pub snapshot: SnapshotMode,
    /// Fraction of comparisons that also run the old query a second time in
    /// the same snapshot (the A/A baseline): a statement whose two old runs
    /// differ is nondeterministic and labelled noisy instead of raising
    /// incidents. Every recheck of a mismatch runs the A/A pair as well.
    pub baseline_rate: f64,
    /// TLS of the shadow connections; unset: `upstream.tls`.
    pub tls: Option<TlsMode>,
    /// CAs for the shadow connections; unset: `upstream.tls_root_cert`.
    pub tls_root_cert: Option<PathBuf>,
    /// `lock_timeout` of every shadow statement: a shadow statement that
    /// would wait this long for a lock (DDL holds or awaits it) gives up,
    /// skipped as `lock_timeout`, so the shadow never queues behind DDL.
    pub lock_timeout_ms: u64,
    /// Wall-clock budget of a batch's shadow transaction(s): no transaction
    /// is started once it is spent (samples left are skipped as
    /// `transaction_budget`), one still open past it is cancelled, and
    /// each statement's `statement_timeout` is cut to what is left of it.
    pub max_transaction_ms: u64,
    /// While shadow transactions are open, how often one connection per
    /// database looks for backends they block (`pg_locks`,
    /// `pg_blocking_pids`); a blocking shadow transaction is cancelled
    /// (`gave_way`). 0 switches the check off.
    pub give_way_check_ms: u64,
    /// User-defined functions (lower-case names) replayed although the
    /// catalog says they are VOLATILE; other statements calling a volatile
    /// function outside pg_catalog are skipped as `volatile_function`.
    pub allow_functions: Vec<String>,
    /// Result rows kept per side at most in bytes; further rows are
    /// compared through digests only (like rows beyond `compare.max_rows`).
    pub max_result_bytes: usize,
    /// Result rows kept at most in bytes over all sides of a batch; once
    /// spent, later sides of the batch are compared through digests only.
    pub max_batch_result_bytes: usize,
    /// Bytes (SQL and parameters) of the samples waiting in the queue at
    /// most; beyond, samples are skipped as `queue_full`.
    pub max_queue_bytes: usize,
    /// Idle shadow connections are closed after this long.
    pub pool_idle_timeout_ms: u64,
    /// Shadow connections open at most over all databases (the give-way
    /// watchers' included).
    pub max_connections: usize,
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
            max_in_flight: 2,
            queue_capacity: 1024,
            max_batch: 32,
            batch_window_ms: 500,
            statement_timeout_ms: 5_000,
            max_samples_per_second: 0,
            first_executions: 3,
            fingerprint_sample_rates: BTreeMap::new(),
            muted_fingerprints: Vec::new(),
            deny_functions: Vec::new(),
            table_map: BTreeMap::new(),
            max_capture_bytes: 1024 * 1024,
            max_session_statement_bytes: crate::capture::tracker::DEFAULT_STATEMENT_BUDGET,
            recheck_mismatches: true,
            plan_cache_size: 10_000,
            snapshot: SnapshotMode::Shared,
            baseline_rate: 0.01,
            tls: None,
            tls_root_cert: None,
            lock_timeout_ms: 50,
            max_transaction_ms: 500,
            give_way_check_ms: 20,
            allow_functions: Vec::new(),
            max_result_bytes: 16 * 1024 * 1024,
            max_batch_result_bytes: 64 * 1024 * 1024,
            max_queue_bytes: 16 * 1024 * 1024,
            pool_idle_timeout_ms: 60_000,
            max_connections: 16,
        }
    }
}

/// `[tiebreak]`: the keys that make ORDER BY total. They come from the
/// catalog (primary key, else a unique index over NOT NULL columns); these
/// settings only override or fill gaps.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TiebreakConfig {
    /// Append each relation's key to the shadow's queries. Off, rows that
    /// tie on the sort key are compared tie-tolerantly only, which finds
    /// less and cannot follow every query.
    pub enabled: bool,
    /// Last resort for a relation with neither a configured nor a catalog
    /// key: this column, when both schemas' relations have it.
    pub default_column: String,
    /// Relation (`table` or `schema.table`) to its key: one column or a
    /// list. Overrides the catalog.
    pub columns: BTreeMap<String, KeyColumns>,
    /// Also append the tiebreaker to the application's own ORDER BY queries.
    pub apply_to_primary: bool,
    /// Keys learned from the catalog are looked up again after this many
    /// seconds (and at once when a statement fails on a missing column or
    /// a changed relation, or a mismatch is rechecked).
    pub key_cache_seconds: u64,
}

impl Default for TiebreakConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            default_column: "id".into(),
            columns: BTreeMap::new(),
            apply_to_primary: false,
            key_cache_seconds: 300,
        }
    }
}

/// A `tiebreak.columns` value: one column (`"sys_id"`) or the columns of a
/// composite key (`["env_id", "entry_id"]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum KeyColumns {
    /// A single-column key.
    One(String),
    /// A composite key, in ORDER BY order.
    Many(Vec<String>),
}

impl KeyColumns {
    /// The key's columns, in order.
    pub fn columns(&self) -> Vec<String> {
        match self {
            KeyColumns::One(column) => vec![column.clone()],
            KeyColumns::Many(columns) => columns.clone(),
        }
    }
}

impl From<&str> for KeyColumns {
    fn from(column: &str) -> Self {
        KeyColumns::One(column.to_string())
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
    /// A statement's new side is `slower` when it takes at least this many
    /// times as long as the old side, reliably (see `slower_min_samples`).
    pub slower_factor: f64,
    /// Paired samples (old and new time of one sample) needed before a
    /// statement can be judged slower; a sign test over them must pass
    /// (with 20: at least 18 clearly slower), so a few unlucky samples
    /// cannot. At most 128.
    pub slower_min_samples: usize,
    /// A sample counts as slower only when the new side also takes at
    /// least this many milliseconds longer: a 0.1 ms lookup that takes
    /// 0.4 ms is not worth an incident.
    pub slower_min_ms: f64,
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
            slower_factor: 3.0,
            slower_min_samples: 20,
            slower_min_ms: 5.0,
        }
    }
}

/// `[store]`: the mismatch store (incidents, examples, coverage).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://FILE` (relative to the working directory; `sqlite:///abs`
    /// for an absolute path) or `postgres://user@host:port/db`, which
    /// several proxy instances can share.
    pub url: String,
    /// Environment variable holding the PostgreSQL store's password, so it
    /// need not be written into `url`.
    pub password_env: Option<String>,
    /// Reproduction bundles kept per incident.
    pub max_examples: u64,
    /// Incidents kept; beyond, acknowledged ones go first, then open, then
    /// muted, least recently seen first.
    pub max_incidents: u64,
    /// Incidents, examples and coverage not seen for this many days are
    /// deleted.
    pub retention_days: u64,
    /// Longest time an outcome waits in memory before it is written.
    pub flush_interval_ms: u64,
    /// Outcomes that trigger a write at once.
    pub flush_max_outcomes: u64,
    /// Outcomes waiting for the store writer; beyond, they are dropped
    /// and counted (`pgshadow_store_dropped_total`).
    pub queue_capacity: usize,
    /// Distinct differing row ids kept per incident (with first and last
    /// seen); further ids are only counted.
    pub max_ids_per_incident: u64,
    /// `keep` (default): examples keep parameters and row values for
    /// on-call; `hash`: they are replaced by keyed hashes before writing.
    pub values: StoreValues,
    /// Longest any one store operation (a batch write, an admin query, the
    /// writer's upkeep) may take; past it the operation fails, the admin
    /// API answers 503 and the writer keeps its batch for a retry.
    pub op_timeout_ms: u64,
    /// Outcomes the writer holds in memory while the store cannot be
    /// written; beyond, further outcomes are dropped and counted
    /// (`pgshadow_store_dropped_total`) until a write succeeds.
    pub max_pending_outcomes: u64,
}

/// `store.values`: what examples keep of production values.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreValues {
    /// Parameters and row values as they were.
    #[default]
    Keep,
    /// Each value replaced by its length and a keyed hash.
    Hash,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://pgshadow-mismatches.db".into(),
            password_env: None,
            max_examples: 5,
            max_incidents: 10_000,
            retention_days: 30,
            flush_interval_ms: 200,
            flush_max_outcomes: 500,
            queue_capacity: 10_000,
            max_ids_per_incident: 10_000,
            values: StoreValues::Keep,
            op_timeout_ms: 5_000,
            max_pending_outcomes: 100_000,
        }
    }
}

/// `[admin]`: metrics, health and the on-call API.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin HTTP server.
    pub address: SocketAddr,
    /// Bearer token that every mutating admin request (ack, mute, unmute,
    /// sampling changes) must carry. Unset: no token is required, so keep
    /// the admin address on loopback or a private network.
    pub token: Option<String>,
    /// Environment variable holding the token, instead of writing it into
    /// the file. At most one of `token` and `token_env` may be set.
    pub token_env: Option<String>,
    /// Host names (without port) the admin server answers to besides
    /// `localhost` and IP addresses: a browser tricked by DNS rebinding
    /// sends another name and is refused.
    pub allowed_hosts: Vec<String>,
    /// PEM certificate chain: serve HTTPS instead of HTTP.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 9930)),
            token: None,
            token_env: None,
            allowed_hosts: Vec::new(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

// By hand, so that the token never reaches a log line or an error.
impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_env", &self.token_env)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .finish()
    }
}

impl AdminConfig {
    /// The bearer token mutating admin requests need: `token`, or the value
    /// of the variable `token_env` names. `Ok(None)`: no token configured.
    /// An error names the variable when it is unset or empty, so a
    /// misconfigured proxy never runs with its admin API open.
    pub fn resolve_token(&self) -> Result<Option<String>, String> {
        match (&self.token, &self.token_env) {
            (Some(token), None) => Ok(Some(token.clone())),
            (None, Some(var)) => match std::env::var(var) {
                Ok(token) if !token.is_empty() => Ok(Some(token)),
                Ok(_) => Err(format!("environment variable {var} is empty")),
                Err(_) => Err(format!("environment variable {var} is not set")),
            },
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err("set either admin.token or admin.token_env, not both".into()),
        }
    }
}

/// `[alerts]`: a Slack-compatible webhook on new incidents (and on the end
/// of a mute), rate-limited per incident.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Where alerts are POSTed (`http://` or `https://`); unset: no webhook.
    pub webhook_url: Option<String>,
    /// Base URL of the admin web page in alert links; default
    /// `http://<admin.address>` (the bound address).
    pub page_url: Option<String>,
    /// Least time between two alerts about the same incident (0 = none).
    pub min_interval_seconds: u64,
    /// Bound on one delivery attempt (connect, send, answer).
    pub timeout_ms: u64,
    /// Further attempts after a failure that may pass (no answer, 5xx,
    /// 429), with exponential backoff from 0.5 s.
    pub max_retries: u32,
    /// PEM bundle of the CAs trusted for an `https://` webhook (a private
    /// CA); unset: the system's roots.
    pub tls_root_cert: Option<PathBuf>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            page_url: None,
            min_interval_seconds: 300,
            timeout_ms: 5_000,
            max_retries: 3,
            tls_root_cert: None,
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
    /// Write parameter and row values into log lines. Off (default): lines
    /// carry lengths and keyed hashes instead, so production data never
    /// reaches the log pipeline.
    pub values: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
            values: false,
        }
    }
}

/// Parses `log.level`: a bare level (`info`) or a `tracing` filter
/// (`info,pgshadow::proxy=debug`).
///
/// A bare level applies to pgshadow's own lines; libraries log at most at
/// `info`, so `debug` shows what the proxy decides, not every token the SQL
/// parser reads. A filter is taken as written.
pub fn parse_log_filter(level: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    use std::str::FromStr;
    use tracing::level_filters::LevelFilter;
    use tracing_subscriber::EnvFilter;
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
        check(s.max_batch > 0, "shadow.max_batch", || {
            "must be at least 1".into()
        })?;
        check(
            s.batch_window_ms <= 10_000,
            "shadow.batch_window_ms",
            || format!("must be at most 10000 (10 s), got {}", s.batch_window_ms),
        )?;
        check(
            s.statement_timeout_ms > 0,
            "shadow.statement_timeout_ms",
            || "must be greater than 0".into(),
        )?;
        check(s.lock_timeout_ms > 0, "shadow.lock_timeout_ms", || {
            "must be greater than 0 (0 would let the shadow wait for locks forever)".into()
        })?;
        check(
            s.max_transaction_ms > 0,
            "shadow.max_transaction_ms",
            || "must be greater than 0".into(),
        )?;
        check(
            s.give_way_check_ms <= 10_000,
            "shadow.give_way_check_ms",
            || format!("must be at most 10000 (10 s), got {}", s.give_way_check_ms),
        )?;
        check(
            s.max_result_bytes >= 1024,
            "shadow.max_result_bytes",
            || format!("must be at least 1024, got {}", s.max_result_bytes),
        )?;
        check(
            s.max_batch_result_bytes >= s.max_result_bytes,
            "shadow.max_batch_result_bytes",
            || {
                format!(
                    "must be at least shadow.max_result_bytes ({}), got {}",
                    s.max_result_bytes, s.max_batch_result_bytes
                )
            },
        )?;
        check(
            s.max_queue_bytes >= s.max_capture_bytes,
            "shadow.max_queue_bytes",
            || {
                format!(
                    "must be at least shadow.max_capture_bytes ({}), got {}",
                    s.max_capture_bytes, s.max_queue_bytes
                )
            },
        )?;
        check(s.max_connections > 0, "shadow.max_connections", || {
            "must be at least 1".into()
        })?;
        // The give-way watcher needs a connection of its own while the
        // workers hold theirs, or it waits exactly when it is needed.
        check(
            s.give_way_check_ms == 0 || s.max_connections > s.max_in_flight,
            "shadow.max_connections",
            || {
                format!(
                    "must be greater than shadow.max_in_flight ({}) so the give-way watcher \
                     has a connection while every worker holds one, got {} \
                     (or set shadow.give_way_check_ms = 0)",
                    s.max_in_flight, s.max_connections
                )
            },
        )?;
        check(
            s.pool_idle_timeout_ms > 0,
            "shadow.pool_idle_timeout_ms",
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
        check(
            s.max_session_statement_bytes >= 1024,
            "shadow.max_session_statement_bytes",
            || {
                format!(
                    "must be at least 1024, got {}",
                    s.max_session_statement_bytes
                )
            },
        )?;
        check(s.plan_cache_size > 0, "shadow.plan_cache_size", || {
            "must be at least 1".into()
        })?;
        check(
            (0.0..=1.0).contains(&s.baseline_rate),
            "shadow.baseline_rate",
            || format!("must be between 0 and 1, got {}", s.baseline_rate),
        )?;
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
        for fingerprint in &s.muted_fingerprints {
            check(
                fingerprint.len() == 16 && u64::from_str_radix(fingerprint, 16).is_ok(),
                "shadow.muted_fingerprints",
                || {
                    format!(
                        "{fingerprint:?} is not a fingerprint (16 hex digits, as shown in logs)"
                    )
                },
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
        self.validate_slower()?;
        self.validate_tiebreak()?;
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
        self.validate_store()?;
        self.validate_alerts()?;
        self.validate_admin()?;
        self.validate_tls()?;
        if let Err(e) = parse_log_filter(&self.log.level) {
            return Err(("log.level", e));
        }
        Ok(())
    }
}

impl Config {
    /// `compare.slower_*` checks.
    fn validate_slower(&self) -> Result<(), (&'static str, String)> {
        let c = &self.compare;
        if !(c.slower_factor.is_finite() && c.slower_factor > 1.0) {
            return Err((
                "compare.slower_factor",
                format!("must be a finite number > 1, got {}", c.slower_factor),
            ));
        }
        let window = crate::shadow::latency::PAIR_WINDOW;
        if !(1..=window).contains(&c.slower_min_samples) {
            return Err((
                "compare.slower_min_samples",
                format!(
                    "must be between 1 and {window}, got {}",
                    c.slower_min_samples
                ),
            ));
        }
        if !(c.slower_min_ms.is_finite() && c.slower_min_ms >= 0.0) {
            return Err((
                "compare.slower_min_ms",
                format!("must be a finite number >= 0, got {}", c.slower_min_ms),
            ));
        }
        Ok(())
    }

    /// `[admin]` checks: a token that is set must be usable, so a typo
    /// never leaves the admin API open by accident.
    fn validate_admin(&self) -> Result<(), (&'static str, String)> {
        let a = &self.admin;
        if let Some(token) = &a.token {
            if token.trim().is_empty() {
                return Err((
                    "admin.token",
                    "must not be empty (leave it out for no token)".into(),
                ));
            }
            if a.token_env.is_some() {
                return Err((
                    "admin.token_env",
                    "set either admin.token or admin.token_env, not both".into(),
                ));
            }
        }
        if a.token_env.is_some() {
            if let Err(e) = a.resolve_token() {
                return Err(("admin.token_env", e));
            }
        }
        Ok(())
    }

    /// `[store]` checks.
    fn validate_store(&self) -> Result<(), (&'static str, String)> {
        let s = &self.store;
        let at_least_1 = |ok: bool, key: &'static str| {
            if ok {
                Ok(())
            } else {
                Err((key, "must be at least 1".to_string()))
            }
        };
        if s.url == "sqlite://" {
            return Err(("store.url", "sqlite:// needs a file name".into()));
        }
        at_least_1(s.max_examples >= 1, "store.max_examples")?;
        if s.max_examples > 1000 {
            return Err((
                "store.max_examples",
                format!("must be at most 1000, got {}", s.max_examples),
            ));
        }
        at_least_1(s.max_incidents >= 1, "store.max_incidents")?;
        at_least_1(s.retention_days >= 1, "store.retention_days")?;
        at_least_1(s.flush_interval_ms >= 1, "store.flush_interval_ms")?;
        if s.flush_interval_ms > 60_000 {
            return Err((
                "store.flush_interval_ms",
                format!("must be at most 60000, got {}", s.flush_interval_ms),
            ));
        }
        at_least_1(s.flush_max_outcomes >= 1, "store.flush_max_outcomes")?;
        at_least_1(s.queue_capacity >= 1, "store.queue_capacity")?;
        at_least_1(s.max_ids_per_incident >= 1, "store.max_ids_per_incident")?;
        at_least_1(s.op_timeout_ms >= 1, "store.op_timeout_ms")?;
        if s.op_timeout_ms > 600_000 {
            return Err((
                "store.op_timeout_ms",
                format!("must be at most 600000, got {}", s.op_timeout_ms),
            ));
        }
        at_least_1(s.max_pending_outcomes >= 1, "store.max_pending_outcomes")?;
        if self.shadow.enabled {
            if let Some(var) = &s.password_env {
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
}

impl Config {
    /// `[tiebreak]` checks: every configured key names at least one
    /// column, and no empty ones.
    fn validate_tiebreak(&self) -> Result<(), (&'static str, String)> {
        let t = &self.tiebreak;
        for (relation, key) in &t.columns {
            let columns = key.columns();
            if columns.is_empty() || columns.iter().any(|c| c.trim().is_empty()) {
                return Err((
                    "tiebreak.columns",
                    format!("{relation:?}: a key needs one or more non-empty column names"),
                ));
            }
        }
        if t.key_cache_seconds == 0 {
            return Err(("tiebreak.key_cache_seconds", "must be at least 1".into()));
        }
        Ok(())
    }
}

impl Config {
    /// `[alerts]` checks.
    fn validate_alerts(&self) -> Result<(), (&'static str, String)> {
        let a = &self.alerts;
        if let Some(url) = &a.webhook_url {
            crate::alerts::client::WebhookUrl::parse(url).map_err(|e| ("alerts.webhook_url", e))?;
        }
        if let Some(url) = &a.page_url {
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://")) || url.len() < 9 {
                return Err((
                    "alerts.page_url",
                    format!("must be an http:// or https:// URL, got {url:?}"),
                ));
            }
        }
        if a.timeout_ms == 0 || a.timeout_ms > 60_000 {
            return Err((
                "alerts.timeout_ms",
                format!("must be between 1 and 60000, got {}", a.timeout_ms),
            ));
        }
        if a.max_retries > 10 {
            return Err((
                "alerts.max_retries",
                format!("must be at most 10, got {}", a.max_retries),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// TLS and admin exposure checks: certificates must load now (not at
    /// the first client), and an admin server reachable from other hosts
    /// must have a token, because incidents carry production values.
    fn validate_tls(&self) -> Result<(), (&'static str, String)> {
        let l = &self.listen;
        let listen_cert = certificate_pair(
            (&l.tls_cert, "listen.tls_cert"),
            (&l.tls_key, "listen.tls_key"),
        )?;
        if !listen_cert && l.tls_mode == ListenTlsMode::Require {
            return Err((
                "listen.tls_mode",
                "\"require\" needs listen.tls_cert and listen.tls_key".into(),
            ));
        }
        let u = &self.upstream;
        crate::tls::UpstreamTls::new(u.tls, u.tls_root_cert.as_deref(), &u.host, "upstream")
            .map_err(|e| ("upstream.tls_root_cert", e.to_string()))?;
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
        let a = &self.admin;
        certificate_pair(
            (&a.tls_cert, "admin.tls_cert"),
            (&a.tls_key, "admin.tls_key"),
        )?;
        if !a.address.ip().is_loopback() && a.token.is_none() && a.token_env.is_none() {
            return Err((
                "admin.token",
                format!(
                    "admin.address {} is not a loopback address, so the admin server (incidents \
                     with production values, sampling controls) is reachable from other hosts: \
                     set admin.token or admin.token_env",
                    a.address
                ),
            ));
        }
        for host in &a.allowed_hosts {
            if host.is_empty() || host.contains([':', '/', ' ']) {
                return Err((
                    "admin.allowed_hosts",
                    format!("{host:?} is not a host name (write it without scheme or port)"),
                ));
            }
        }
        if let Some(root) = &self.alerts.tls_root_cert {
            crate::tls::root_store(Some(root))
                .map_err(|e| ("alerts.tls_root_cert", e.to_string()))?;
        }
        Ok(())
    }
}

/// Checks a `tls_cert`/`tls_key` pair: both or neither set, and when set,
/// loadable now. Returns whether a certificate is configured.
fn certificate_pair(
    (cert, cert_key): (&Option<PathBuf>, &'static str),
    (key, key_key): (&Option<PathBuf>, &'static str),
) -> Result<bool, (&'static str, String)> {
    match (cert, key) {
        (Some(cert), Some(key)) => crate::tls::ServerTls::load(cert, key, &[])
            .map(|_| true)
            .map_err(|e| (cert_key, e.to_string())),
        (Some(_), None) => Err((key_key, format!("must be set with {cert_key}"))),
        (None, Some(_)) => Err((cert_key, format!("must be set with {key_key}"))),
        (None, None) => Ok(false),
    }
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
