//! A small pool of shadow connections per database, with one cap over
//! all databases.
//!
//! The dispatcher already bounds concurrency (`shadow.max_in_flight`), so
//! the pool only has to reuse connections: at most that many are kept
//! idle per database, none longer than `shadow.pool_idle_timeout_ms`. A
//! connection that is out of step is closed instead of returned.
//!
//! Every open connection holds a permit of `shadow.max_connections`: a
//! proxy serving many databases never opens more than that. When no permit
//! is left, an idle connection of another database is closed to make room;
//! when none is idle, the request waits (up to the connect timeout) for
//! one to be returned or closed.

use super::conn::{ConnError, ConnParams, ShadowConn};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// At the cap, how often a waiting request looks for an idle connection
/// again (one returned to the pool holds its permit).
const CAP_RECHECK: Duration = Duration::from_millis(20);

/// Idle connections by database, each with when it was returned.
pub struct Pool {
    template: ConnParams,
    max_idle: usize,
    idle_timeout: Duration,
    /// `shadow.max_connections` permits; one per open connection.
    open: Arc<Semaphore>,
    max_connections: usize,
    idle: Mutex<HashMap<String, Vec<(ShadowConn, Instant)>>>,
}

impl Pool {
    /// A pool that logs in with `template` (its database is replaced per
    /// request), keeps at most `max_idle` idle connections per database
    /// for at most `idle_timeout`, and opens at most `max_connections`.
    /// Starts a task that closes expired connections while the pool lives
    /// (call inside a Tokio runtime).
    pub fn new(
        template: ConnParams,
        max_idle: usize,
        max_connections: usize,
        idle_timeout: Duration,
    ) -> Arc<Self> {
        let pool = Arc::new(Self {
            template,
            max_idle,
            idle_timeout,
            open: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            idle: Mutex::new(HashMap::new()),
        });
        tokio::spawn(expire_idle(Arc::downgrade(&pool), idle_timeout));
        pool
    }

    /// An idle connection to `database`, or a new one.
    pub async fn get(&self, database: &str) -> Result<ShadowConn, ConnError> {
        let started = Instant::now();
        let permit = loop {
            if let Some(conn) = self.take_idle(database) {
                return Ok(conn);
            }
            if let Ok(permit) = self.open.clone().try_acquire_owned() {
                break permit;
            }
            // At the cap: make room by closing another database's idle
            // connection, or wait a moment for one to come back idle or
            // be closed.
            if self.close_one_idle() {
                continue;
            }
            let left = self
                .template
                .connect_timeout
                .saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(ConnError::Timeout {
                    address: format!(
                        "a free shadow connection (all shadow.max_connections = {} in use)",
                        self.max_connections
                    ),
                    timeout: self.template.connect_timeout,
                });
            }
            let wait = self.open.clone().acquire_owned();
            if let Ok(Ok(permit)) = tokio::time::timeout(left.min(CAP_RECHECK), wait).await {
                break permit;
            }
        };
        let mut params = self.template.clone();
        params.database = database.to_string();
        let mut conn = ShadowConn::connect(&params).await?;
        conn.permit = Some(permit);
        Ok(conn)
    }

    fn take_idle(&self, database: &str) -> Option<ShadowConn> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(database)
            .and_then(Vec::pop)
            .map(|(conn, _)| conn)
    }

    /// Returns a connection; poisoned ones are dropped (closed).
    pub fn put(&self, database: &str, conn: ShadowConn) {
        if conn.poisoned {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = idle.entry(database.to_string()).or_default();
        if slot.len() < self.max_idle {
            slot.push((conn, Instant::now()));
        }
    }

    /// Connections open now, idle or in use.
    pub fn open_connections(&self) -> usize {
        self.max_connections
            .saturating_sub(self.open.available_permits())
    }

    /// Closes the longest-idle connection of any database, to free a
    /// permit; false when none is idle.
    fn close_one_idle(&self) -> bool {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = idle
            .iter()
            .filter_map(|(db, conns)| conns.first().map(|(_, at)| (db.clone(), *at)))
            .min_by_key(|(_, at)| *at);
        match oldest.and_then(|(db, _)| idle.get_mut(&db)) {
            Some(conns) if !conns.is_empty() => {
                conns.remove(0);
                true
            }
            _ => false,
        }
    }

    /// Closes connections idle longer than the timeout.
    fn expire(&self) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        for conns in idle.values_mut() {
            conns.retain(|(_, at)| now.duration_since(*at) < self.idle_timeout);
        }
        idle.retain(|_, conns| !conns.is_empty());
    }
}

/// Closes expired idle connections every so often, until the pool is
/// gone.
async fn expire_idle(pool: Weak<Pool>, idle_timeout: Duration) {
    let every = (idle_timeout / 4).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(every).await;
        match pool.upgrade() {
            Some(pool) => pool.expire(),
            None => return,
        }
    }
}
