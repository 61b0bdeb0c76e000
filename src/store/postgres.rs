//! The PostgreSQL backend, for several proxy instances sharing one store.
//!
//! One connection per process, behind an async mutex (the writer's batches
//! and the admin API's reads take turns). A connection that broke is
//! replaced on the next operation, so a store restart costs a few failed
//! batches (kept in memory and retried by the writer), not a proxy
//! restart.
//!
//! TLS follows the URL's `sslmode` with libpq's meanings (`disable`,
//! `prefer` — the default, as in libpq —, `require`, `verify-ca`,
//! `verify-full`) and `sslrootcert` (a PEM bundle; default the system's
//! roots), through rustls ([`crate::tls::upstream`]).

use super::db::{Db, DbRow, Dialect, Param, Value};
use super::error::StoreError;
use super::schema;
use crate::tls::{TlsMode, UpstreamTls};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::config::SslMode;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Config, NoTls, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Statements prepared per connection at most; beyond, the cache starts
/// over (the store runs a few dozen distinct statements).
const STATEMENT_CACHE: usize = 128;

/// Handle to the store. Clones share the connection.
#[derive(Clone)]
pub(crate) struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    /// TLS as `sslmode` asks; `None` for `disable`.
    tls: Option<MakeRustlsConnect>,
    display: String,
    connection: Mutex<Option<Connected>>,
}

struct Connected {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl PostgresStore {
    /// Connects to `url` (with `password` if given) and migrates.
    pub(crate) async fn open(
        url: &str,
        password: Option<String>,
    ) -> Result<PostgresStore, StoreError> {
        let bad_url = |reason: String| StoreError::BadUrl {
            url: redact(url),
            reason,
        };
        let (url_rest, sslmode, sslrootcert) = split_tls_params(url);
        let mode = match sslmode.as_deref() {
            None => TlsMode::Prefer,
            Some(m) => TlsMode::parse(m).ok_or_else(|| {
                bad_url(format!(
                    "sslmode={m} is not one of disable, prefer, require, verify-ca, verify-full"
                ))
            })?,
        };
        let mut config = Config::from_str(&url_rest).map_err(|e| bad_url(e.to_string()))?;
        config.ssl_mode(match mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        let tls = UpstreamTls::new(
            mode,
            sslrootcert.as_deref().map(std::path::Path::new),
            &first_host(&config),
            "store",
        )
        .map_err(|e| bad_url(e.to_string()))?
        .client_config()
        .map(|c| MakeRustlsConnect::new((*c).clone()));
        if let Some(password) = password {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("pgshadow-store");
        let display = display(&config);
        let store = PostgresStore {
            inner: Arc::new(Inner {
                config,
                tls,
                display,
                connection: Mutex::new(None),
            }),
        };
        let mut session = store.session().await?;
        let migrated = schema::migrate(&mut session.db()).await;
        session.finish(migrated)?;
        Ok(store)
    }

    /// Exclusive use of the connection, (re)connecting if needed.
    pub(crate) async fn session(&self) -> Result<PgSession<'_>, StoreError> {
        let mut guard = self.inner.connection.lock().await;
        if guard.as_ref().is_none_or(|c| c.client.is_closed()) {
            *guard = None;
            let failed = |e: tokio_postgres::Error| StoreError::Open {
                url: self.inner.display.clone(),
                message: explain(&e),
            };
            let client = match &self.inner.tls {
                Some(tls) => {
                    let (client, connection) = self
                        .inner
                        .config
                        .connect(tls.clone())
                        .await
                        .map_err(failed)?;
                    tokio::spawn(drive(connection));
                    client
                }
                None => {
                    let (client, connection) =
                        self.inner.config.connect(NoTls).await.map_err(failed)?;
                    tokio::spawn(drive(connection));
                    client
                }
            };
            *guard = Some(Connected {
                client,
                statements: HashMap::new(),
            });
        }
        Ok(PgSession {
            guard,
            finished: false,
        })
    }
}

/// The connection, held for one operation.
pub(crate) struct PgSession<'a> {
    guard: MutexGuard<'a, Option<Connected>>,
    /// [`PgSession::finish`] ran. A session dropped without it was cut
    /// short (`store.op_timeout_ms`), maybe inside a transaction: its
    /// connection is dropped, which makes the server roll back.
    finished: bool,
}

impl Drop for PgSession<'_> {
    fn drop(&mut self) {
        if !self.finished {
            *self.guard = None;
        }
    }
}

impl PgSession<'_> {
    /// The connection as a [`Db`].
    pub(crate) fn db(&mut self) -> PgDb<'_> {
        PgDb {
            connected: self.guard.as_mut(),
        }
    }

    /// Ends the operation: a connection left broken or mid-transaction by
    /// an error is dropped, to be replaced next time.
    pub(crate) fn finish<T>(mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_err() {
            *self.guard = None;
        }
        self.finished = true;
        result
    }
}

/// A [`Db`] over the session's connection.
pub(crate) struct PgDb<'a> {
    connected: Option<&'a mut Connected>,
}

impl PgDb<'_> {
    fn connected(&mut self) -> Result<&mut Connected, StoreError> {
        self.connected.as_deref_mut().ok_or(StoreError::Closed)
    }

    async fn prepare(&mut self, sql: &str) -> Result<(Statement, &Client), StoreError> {
        let c = self.connected()?;
        if let Some(s) = c.statements.get(sql) {
            return Ok((s.clone(), &c.client));
        }
        let statement = c.client.prepare(sql).await?;
        if c.statements.len() >= STATEMENT_CACHE {
            c.statements.clear();
        }
        c.statements.insert(sql.to_owned(), statement.clone());
        Ok((statement, &c.client))
    }
}

fn boxed<'a>(p: &Param<'a>) -> Box<dyn ToSql + Sync + Send + 'a> {
    match *p {
        Param::Int(v) => Box::new(v),
        Param::Real(v) => Box::new(v),
        Param::Text(v) => Box::new(v),
    }
}

fn value(row: &tokio_postgres::Row, i: usize) -> Result<Value, StoreError> {
    let ty = row
        .columns()
        .get(i)
        .map(|c| c.type_().clone())
        .ok_or_else(|| StoreError::Corrupt(format!("result column {i} missing")))?;
    let v = match ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map(|v| Value::Int(v.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map(|v| Value::Int(v.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map(|v| Value::Int(v.into())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(Value::Real),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)?
            .map(|v| Value::Real(v.into())),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
            row.try_get::<_, Option<String>>(i)?.map(Value::Text)
        }
        Type::VOID => None,
        other => {
            return Err(StoreError::Corrupt(format!(
                "unexpected column type {other} in the store"
            )))
        }
    };
    Ok(v.unwrap_or(Value::Null))
}

impl Db for PgDb<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.connected()?.client.batch_execute(sql).await?)
    }

    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let values: Vec<_> = params.iter().map(boxed).collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|b| &**b as &(dyn ToSql + Sync)).collect();
        let (statement, client) = self.prepare(sql).await?;
        Ok(client.execute(&statement, &refs).await?)
    }

    async fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<DbRow>, StoreError> {
        let values: Vec<_> = params.iter().map(boxed).collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|b| &**b as &(dyn ToSql + Sync)).collect();
        let (statement, client) = self.prepare(sql).await?;
        let rows = client.query(&statement, &refs).await?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| value(row, i))
                    .collect::<Result<Vec<_>, _>>()
                    .map(DbRow)
            })
            .collect()
    }
}

/// A connection error with its cause: tokio-postgres's own text is just
/// "db error" or "error performing TLS handshake".
fn explain(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Runs a connection until it closes.
async fn drive<F>(connection: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>>,
{
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "mismatch store connection closed");
    }
}

/// The URL without its `sslmode` and `sslrootcert` parameters (which
/// tokio-postgres cannot take: it knows no `verify-*` and no root file),
/// and their values.
fn split_tls_params(url: &str) -> (String, Option<String>, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None, None);
    };
    let (mut sslmode, mut sslrootcert, mut kept) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => sslmode = Some(percent_decode(v)),
            Some(("sslrootcert", v)) => sslrootcert = Some(percent_decode(v)),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, sslmode, sslrootcert)
}

/// `%2F` → `/`; invalid escapes are kept as written.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first host of a parsed config (the one TLS names are checked for).
fn first_host(config: &Config) -> String {
    config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into())
}

/// `postgres://user@host:port/db` from a parsed config.
fn display(config: &Config) -> String {
    let host = first_host(config);
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("");
    let db = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{host}:{port}/{db}")
}

/// `postgres://user@host:port/db` for `url`, without password, before
/// (or without) connecting.
pub(crate) fn display_url(url: &str) -> String {
    let (rest, _, _) = split_tls_params(url);
    Config::from_str(&rest)
        .map(|c| display(&c))
        .unwrap_or_else(|_| redact(url))
}

/// The URL with any password replaced, for error messages.
fn redact(url: &str) -> String {
    crate::privacy::redact_url(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://app:secret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        let config = Config::from_str("postgres://app:secret@db:6543/store").unwrap();
        assert_eq!(display(&config), "postgres://app@db:6543/store");
    }

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        let (rest, mode, root) = split_tls_params(
            "postgres://app@db/store?connect_timeout=3&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        );
        assert_eq!(rest, "postgres://app@db/store?connect_timeout=3");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(
            split_tls_params("postgres://db/x"),
            ("postgres://db/x".into(), None, None)
        );
        assert_eq!(
            split_tls_params("postgres://db/x?sslmode=disable").0,
            "postgres://db/x"
        );
    }
}
