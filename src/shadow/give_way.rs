//! Giving way: a shadow transaction that blocks another backend is
//! cancelled at once.
//!
//! `lock_timeout` keeps the shadow from queueing behind DDL, but a shadow
//! transaction that already holds AccessShareLock on a relation when an
//! `ALTER TABLE` arrives makes the ALTER wait, and everything queued
//! behind the ALTER with it. So while shadow transactions are open on a
//! database, and only then, one connection of the shadow's asks the server
//! every `shadow.give_way_check_ms` which of them block someone and
//! cancels those in the same statement:
//!
//! ```sql
//! SELECT b, pg_cancel_backend(b) FROM (
//!   SELECT DISTINCT b FROM pg_locks l, unnest(pg_blocking_pids(l.pid)) b
//!    WHERE NOT l.granted AND b IN (<open shadow pids>)) s
//! ```
//!
//! One statement, no round trip per sample: `pg_locks` is read once per
//! check and `pg_blocking_pids` runs only for waiting backends (usually
//! none). The shadow role may cancel its own backends without any grant.
//! With nothing open the watcher sleeps and holds no connection.
//!
//! The cancelled transaction's unfinished samples are skipped as
//! `gave_way`, and its connection is closed (a cancel may arrive late).

use super::conn::ShadowConn;
use super::decode::read_values;
use super::pool::Pool;
use crate::observability::metrics::GIVE_WAY_CHECKS_TOTAL;
use bytes::BytesMut;
use postgres_protocol::message::frontend;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

/// The watchers of all databases.
pub struct GiveWay {
    pool: Arc<Pool>,
    interval: Duration,
    databases: Mutex<HashMap<String, Arc<Watch>>>,
}

/// One database's open shadow transactions, by backend pid, each with the
/// flag its cancellation sets.
#[derive(Default)]
struct Watch {
    open: Mutex<HashMap<i32, Arc<AtomicBool>>>,
    wake: Notify,
}

/// A shadow transaction being watched; dropping it ends the watch.
pub struct Watched {
    watch: Arc<Watch>,
    pid: i32,
    flag: Arc<AtomicBool>,
}

impl Watched {
    /// Whether the watcher cancelled the transaction because it blocked
    /// another backend.
    pub fn gave_way(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.watch
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.pid);
    }
}

impl GiveWay {
    /// Watchers checking every `interval` (zero: none), on connections from
    /// `pool`.
    pub fn new(pool: Arc<Pool>, interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            pool,
            interval,
            databases: Mutex::new(HashMap::new()),
        })
    }

    /// Watches the transaction `conn` is about to run, until the returned
    /// guard is dropped. `None` when checks are off or the backend's pid is
    /// unknown.
    pub fn watch(self: &Arc<Self>, conn: &ShadowConn) -> Option<Watched> {
        let (pid, database) = (conn.pid(), conn.database());
        if self.interval.is_zero() || pid == 0 {
            return None;
        }
        let watch = {
            let mut databases = self
                .databases
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match databases.get(database) {
                Some(watch) => watch.clone(),
                None => {
                    let watch = Arc::new(Watch::default());
                    databases.insert(database.to_string(), watch.clone());
                    tokio::spawn(self.clone().run(database.to_string(), watch.clone()));
                    watch
                }
            }
        };
        let flag = Arc::new(AtomicBool::new(false));
        watch
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(pid, flag.clone());
        watch.wake.notify_one();
        Some(Watched { watch, pid, flag })
    }

    /// The watcher of `database`: checks while transactions are open,
    /// sleeps (without a connection) while none is.
    async fn run(self: Arc<Self>, database: String, watch: Arc<Watch>) {
        let checks = metrics::counter!(GIVE_WAY_CHECKS_TOTAL);
        let mut conn: Option<ShadowConn> = None;
        loop {
            let pids: Vec<i32> = watch
                .open
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .keys()
                .copied()
                .collect();
            if pids.is_empty() {
                if let Some(conn) = conn.take() {
                    self.pool.put(&database, conn);
                }
                watch.wake.notified().await;
                continue;
            }
            let mut c = match conn.take() {
                Some(c) => c,
                None => match self.pool.get(&database).await {
                    Ok(c) => c,
                    Err(error) => {
                        tracing::warn!(database, %error, "give-way watcher cannot connect");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            checks.increment(1);
            let limit = self.interval.max(Duration::from_millis(100)) * 10;
            match tokio::time::timeout(limit, cancel_blockers(&mut c, &pids)).await {
                Ok(Ok(cancelled)) => {
                    let open = watch.open.lock().unwrap_or_else(PoisonError::into_inner);
                    for pid in cancelled {
                        if let Some(flag) = open.get(&pid) {
                            flag.store(true, Ordering::Release);
                        }
                        tracing::info!(
                            database,
                            pid,
                            "shadow transaction blocked another backend: cancelled (gave way)"
                        );
                    }
                }
                Ok(Err(error)) => {
                    tracing::warn!(database, %error, "give-way check failed");
                    c.poisoned = true;
                }
                Err(_) => {
                    tracing::warn!(database, "give-way check timed out");
                    c.poisoned = true;
                }
            }
            if !c.poisoned {
                conn = Some(c);
            }
            tokio::time::sleep(self.interval).await;
        }
    }
}

/// Cancels those of `pids` that block another backend; returns them.
async fn cancel_blockers(
    conn: &mut ShadowConn,
    pids: &[i32],
) -> Result<Vec<i32>, super::conn::ConnError> {
    let mut list = String::new();
    for (i, pid) in pids.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        let _ = write!(list, "{pid}");
    }
    let sql = format!(
        "SELECT b, pg_cancel_backend(b) FROM (\
           SELECT DISTINCT b FROM pg_catalog.pg_locks l, unnest(pg_catalog.pg_blocking_pids(l.pid)) b \
            WHERE NOT l.granted AND b IN ({list})) s"
    );
    let mut out = BytesMut::new();
    frontend::query(&sql, &mut out).map_err(super::conn::protocol_error)?;
    conn.send(&out).await?;
    let rows = read_values(conn).await?;
    Ok(rows
        .iter()
        .filter_map(|row| super::decode::value_at::<i32>(row, 0))
        .collect())
}
