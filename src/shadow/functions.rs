//! Which user-defined functions are VOLATILE, from the catalog.
//!
//! The rewriter knows built-in functions by name
//! ([`crate::rewrite`]'s deny lists); a function the application defined
//! itself can do anything its body does: `pg_notify`, take an advisory
//! lock, write through `dblink`. READ ONLY stops writes to tables, the
//! shadow's ROLLBACK discards notifications and its unlock releases
//! advisory locks, but what else such a function does is not known. So a
//! statement calling a function that some schema other than `pg_catalog`
//! and `information_schema` defines as VOLATILE (by that name, whatever
//! its schema or arguments: on the safe side) is skipped as
//! `volatile_function`, unless `shadow.allow_functions` lists it. STABLE
//! and IMMUTABLE functions are replayed.
//!
//! Names are looked up per database on a shadow connection, never on the
//! relay, one round trip per batch for names not looked up recently, and
//! cached like relation keys (`tiebreak.key_cache_seconds`). A name whose
//! lookup failed counts as volatile until looked up again.

use super::conn::protocol_error;
use super::conn::{ConnError, ShadowConn};
use super::decode::{read_control, read_until_ready};
use super::write::bind_text;
use bytes::BytesMut;
use postgres_protocol::message::frontend;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The names of `$1` (a JSON array) that name a VOLATILE function outside
/// the system schemas, as one JSON array.
const VOLATILE_SQL: &str = "\
SELECT coalesce(json_agg(DISTINCT p.proname::text), '[]'::json)::text
  FROM pg_catalog.pg_proc p
 WHERE p.proname IN (SELECT json_array_elements_text($1::json))
   AND p.provolatile = 'v'
   AND p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)";

/// Names remembered at most; beyond, the cache starts over.
const MAX_NAMES: usize = 10_000;

/// Volatility of function names, per database.
pub struct FunctionCatalog {
    allowed: Vec<String>,
    max_age: Duration,
    /// (database, name) → (volatile, looked up at).
    known: Mutex<HashMap<(String, String), (bool, Instant)>>,
}

impl FunctionCatalog {
    /// A catalog that never skips `allowed` (lower-case names) and looks
    /// names up again after `max_age`.
    pub fn new(allowed: &[String], max_age: Duration) -> Self {
        Self {
            allowed: allowed.iter().map(|f| f.to_lowercase()).collect(),
            max_age,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Of `names` called in `database`, those to look up now: not
    /// allow-listed, and unknown or older than the cache age.
    pub fn due<'a>(&self, database: &str, names: impl Iterator<Item = &'a String>) -> Vec<String> {
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let mut due: Vec<String> = Vec::new();
        for name in names {
            if self.allowed.contains(name) || due.contains(name) {
                continue;
            }
            let fresh = known
                .get(&(database.to_string(), name.clone()))
                .is_some_and(|(_, at)| at.elapsed() < self.max_age);
            if !fresh {
                due.push(name.clone());
            }
        }
        due
    }

    /// Whether one of `names` is a volatile user function that is not
    /// allow-listed (or could not be looked up).
    pub fn calls_volatile(&self, database: &str, names: &[String]) -> bool {
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        names.iter().any(|name| {
            !self.allowed.contains(name)
                && known
                    .get(&(database.to_string(), name.clone()))
                    .is_none_or(|(volatile, _)| *volatile)
        })
    }

    /// Looks `names` up in `database` on `conn` and remembers the answers.
    pub async fn look_up(
        &self,
        conn: &mut ShadowConn,
        database: &str,
        names: &[String],
    ) -> Result<(), ConnError> {
        let asked = serde_json::to_string(names).unwrap_or_else(|_| "[]".into());
        let mut out = BytesMut::new();
        frontend::parse("", VOLATILE_SQL, std::iter::empty(), &mut out).map_err(protocol_error)?;
        bind_text("", &[asked.as_str()], &mut out)?;
        frontend::sync(&mut out);
        conn.send(&out).await?;
        let answer = read_control(conn).await?;
        read_until_ready(conn).await?;
        let volatile: Vec<String> = match answer {
            Ok(row) => {
                let text = row
                    .first()
                    .and_then(|v| v.as_ref())
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                serde_json::from_str(&text).map_err(|e| ConnError::Protocol(e.to_string()))?
            }
            Err(e) => {
                return Err(ConnError::Protocol(format!(
                    "function lookup failed: {} {}",
                    e.code, e.message
                )))
            }
        };
        let now = Instant::now();
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() + names.len() > MAX_NAMES {
            known.clear();
        }
        for name in names {
            known.insert(
                (database.to_string(), name.clone()),
                (volatile.contains(name), now),
            );
        }
        Ok(())
    }
}
