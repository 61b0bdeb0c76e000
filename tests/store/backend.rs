//! The two stores the suite runs against, and raw SQL on them for the
//! few checks the store's API does not expose (ageing rows, the schema
//! version).

use crate::harness::{Pg, TRUST_USER};
use pgshadow::store::{Store, StoreOptions};
use std::time::Duration;

/// The database the PostgreSQL store lives in.
pub const STORE_DB: &str = "pgshadow_store";

/// A store location that lives as long as the test.
pub enum Backend {
    /// A file in a temporary directory.
    Sqlite { dir: tempfile::TempDir },
    /// A database in a throw-away cluster.
    Postgres { pg: Pg },
}

impl Backend {
    /// An SQLite file that does not exist yet.
    pub fn sqlite() -> Backend {
        Backend::Sqlite {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// An empty database in a new cluster.
    pub fn postgres() -> Backend {
        let pg = Pg::start();
        Self::create_store_database(&pg);
        Backend::Postgres { pg }
    }

    /// Creates [`STORE_DB`] in `pg`, owned by the trust user.
    pub fn create_store_database(pg: &Pg) {
        pg.cluster
            .psql(
                "postgres",
                &format!("CREATE DATABASE {STORE_DB} OWNER {TRUST_USER}"),
            )
            .expect("create store database");
    }

    /// The PostgreSQL store URL in `pg`.
    pub fn postgres_url(pg: &Pg) -> String {
        format!("postgres://{TRUST_USER}@127.0.0.1:{}/{STORE_DB}", pg.port())
    }

    /// `store.url` of this store.
    pub fn url(&self) -> String {
        match self {
            Backend::Sqlite { dir } => {
                format!("sqlite://{}", dir.path().join("store.db").display())
            }
            Backend::Postgres { pg } => Self::postgres_url(pg),
        }
    }

    /// Opens the store with the default options.
    pub async fn open(&self) -> Store {
        self.open_with(StoreOptions::default()).await
    }

    /// Opens the store.
    pub async fn open_with(&self, options: StoreOptions) -> Store {
        Store::open(&self.url(), options)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.url()))
    }

    /// Runs SQL on the store behind the store's back.
    pub async fn sql(&self, sql: &str) {
        sql_on(&self.url(), sql).await;
    }
}

/// Runs SQL directly on the store at `url`.
pub async fn sql_on(url: &str, sql: &str) {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let conn = rusqlite::Connection::open(path).expect("open SQLite file");
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.execute_batch(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    } else {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to the store");
        tokio::spawn(connection);
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}
