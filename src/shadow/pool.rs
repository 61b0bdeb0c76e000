//! A small pool of shadow connections per database.
//!
//! The dispatcher already bounds concurrency (`shadow.max_in_flight`), so
//! the pool only has to reuse connections: at most that many are kept
//! idle per database. A connection that is out of step is closed instead
//! of returned.

use super::conn::{ConnError, ConnParams, ShadowConn};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Idle connections by database.
pub struct Pool {
    template: ConnParams,
    max_idle: usize,
    idle: Mutex<HashMap<String, Vec<ShadowConn>>>,
}

impl Pool {
    /// A pool that logs in with `template` (its database is replaced per
    /// request).
    pub fn new(template: ConnParams, max_idle: usize) -> Self {
        Self {
            template,
            max_idle,
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// An idle connection to `database`, or a new one.
    pub async fn get(&self, database: &str) -> Result<ShadowConn, ConnError> {
        let reused = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(database)
            .and_then(Vec::pop);
        if let Some(conn) = reused {
            return Ok(conn);
        }
        let mut params = self.template.clone();
        params.database = database.to_string();
        ShadowConn::connect(&params).await
    }

    /// Returns a connection; poisoned ones are dropped (closed).
    pub fn put(&self, database: &str, conn: ShadowConn) {
        if conn.poisoned {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = idle.entry(database.to_string()).or_default();
        if slot.len() < self.max_idle {
            slot.push(conn);
        }
    }
}
