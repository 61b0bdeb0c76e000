//! The embedded SQLite backend: one file, one connection, one thread.
//!
//! rusqlite blocks, so the connection lives on a thread of its own and
//! async callers send it jobs and await the reply: file I/O and fsync never
//! run on the runtime's threads, let alone the relay's. The shared store
//! operations are async ([`super::db::Db`]); on this thread their futures
//! complete at once, so [`ready`] drives them with a single poll.
//!
//! Durability: WAL journal with `synchronous = FULL`. A transaction the
//! writer saw commit is in the WAL file and fsynced, so it survives a
//! SIGKILL of the proxy and an OS crash; the writer batches, so that costs
//! a few fsyncs a second. Other processes (the CLI, other instances) may
//! open the same file: writers wait for each other up to the busy timeout.

use super::db::{sqlite_placeholders, Db, DbRow, Dialect, Param, Value};
use super::error::StoreError;
use super::schema;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;
use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a write waits for another process holding the file's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce(&mut SqliteDb) + Send>;

/// Operations queued for the store's thread at most. Callers stop waiting
/// after `store.op_timeout_ms`, but a job already sent still runs: on a
/// hung disk, further jobs are refused ([`StoreError::Busy`]) instead of
/// piling up in memory.
const MAX_QUEUED_JOBS: usize = 16;

/// Handle to the store's thread. Clones share it; the thread ends when the
/// last clone is dropped.
#[derive(Clone)]
pub(crate) struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    /// Jobs sent and not finished yet.
    queued: Arc<AtomicUsize>,
}

impl SqliteStore {
    /// Opens or creates the file, sets WAL mode and migrates, on a new
    /// thread that then serves every operation.
    pub(crate) async fn open(path: PathBuf) -> Result<SqliteStore, StoreError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (opened_tx, opened_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("pgshadow-store".into())
            .spawn(move || {
                let mut db = match SqliteDb::open(&path) {
                    Ok(db) => db,
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                let migrated = ready(schema::migrate(&mut db));
                let failed = migrated.is_err();
                let _ = opened_tx.send(migrated);
                if failed {
                    return;
                }
                while let Ok(job) = queue.recv() {
                    job(&mut db);
                }
            })
            .map_err(|e| StoreError::Open {
                url: "sqlite".into(),
                message: format!("cannot start the store thread: {e}"),
            })?;
        opened_rx.await.map_err(|_| StoreError::Closed)??;
        Ok(SqliteStore {
            jobs,
            queued: Arc::default(),
        })
    }

    /// Runs `f` on the store's thread and returns its result.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteDb) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let queued = self.queued.fetch_add(1, Ordering::Relaxed);
        if queued >= MAX_QUEUED_JOBS {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(StoreError::Busy(queued));
        }
        let (tx, rx) = oneshot::channel();
        let done = self.queued.clone();
        self.jobs
            .send(Box::new(move |db| {
                let _ = tx.send(f(db));
                done.fetch_sub(1, Ordering::Relaxed);
            }))
            .map_err(|_| {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                StoreError::Closed
            })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// Drives a store operation on SQLite to completion. Its futures never
/// wait (every [`Db`] call returns at once), so one poll suffices; a
/// future that did wait would be a bug, reported as an error rather than
/// spun on.
pub(crate) fn ready<T>(
    operation: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let mut operation = pin!(operation);
    match operation
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => result,
        Poll::Pending => Err(StoreError::Corrupt(
            "an SQLite store operation did not complete".into(),
        )),
    }
}

/// The connection.
pub(crate) struct SqliteDb {
    conn: Connection,
}

impl SqliteDb {
    fn open(path: &std::path::Path) -> Result<SqliteDb, StoreError> {
        let failed = |e: rusqlite::Error| StoreError::Open {
            url: format!("sqlite://{}", path.display()),
            message: e.to_string(),
        };
        let conn = Connection::open(path).map_err(failed)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(failed)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(failed)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open {
                url: format!("sqlite://{}", path.display()),
                message: format!("cannot switch to WAL mode (journal_mode is {mode})"),
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(failed)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(failed)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(SqliteDb { conn })
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        use rusqlite::types::Value as V;
        Ok(match *self {
            Param::Int(Some(v)) => ToSqlOutput::Owned(V::Integer(v)),
            Param::Real(Some(v)) => ToSqlOutput::Owned(V::Real(v)),
            Param::Text(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Param::Int(None) | Param::Real(None) | Param::Text(None) => ToSqlOutput::Owned(V::Null),
        })
    }
}

fn value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(String::from_utf8_lossy(t).into()),
    }
}

impl Db for SqliteDb {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch(sql)?)
    }

    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let mut stmt = self.conn.prepare_cached(&sqlite_placeholders(sql))?;
        Ok(stmt.execute(rusqlite::params_from_iter(params.iter()))? as u64)
    }

    async fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<DbRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&sqlite_placeholders(sql))?;
        let width = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(value(row.get_ref(i)?));
            }
            out.push(DbRow(values));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hung_store_thread_refuses_jobs_beyond_its_queue_instead_of_holding_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("store.db"))
            .await
            .unwrap();
        // The first job hangs the thread (a disk that does not answer).
        // The others are queued only once it is running: one that reached
        // the thread first would finish, and the queue would never fill.
        let (release, hung) = mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel::<()>();
        let blocker = store.clone();
        let mut waiting = vec![tokio::spawn(async move {
            blocker
                .run(move |_| {
                    let _ = started.send(());
                    let _ = hung.recv();
                    Ok(())
                })
                .await
        })];
        running.await.unwrap();
        for _ in 1..MAX_QUEUED_JOBS {
            let s = store.clone();
            waiting.push(tokio::spawn(async move { s.run(|_| Ok(())).await }));
        }
        while store.queued.load(Ordering::Relaxed) < MAX_QUEUED_JOBS {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            store.run(|_| Ok(())).await,
            Err(StoreError::Busy(n)) if n == MAX_QUEUED_JOBS
        ));
        release.send(()).unwrap();
        for job in waiting {
            job.await.unwrap().unwrap();
        }
        assert_eq!(store.queued.load(Ordering::Relaxed), 0);
        store.run(|_| Ok(())).await.unwrap();
    }
}
