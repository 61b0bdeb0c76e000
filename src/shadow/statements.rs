//! Prepared statements a shadow connection keeps between samples.
//!
//! Every sample runs the same handful of statements of pgshadow's own
//! (BEGIN, the settings, the search_path switch, the unlock, ROLLBACK) and,
//! for a busy fingerprint, the same old and new query again and again.
//! Parsing, analysing and planning them anew each time is most of what a
//! sample costs the database, so each connection prepares them once under
//! a name of its own and afterwards only binds and executes them.
//!
//! The cache is bounded per connection; when it is full it starts over
//! (the names are closed on the server in the same pipeline). A statement
//! whose step failed is closed and forgotten, so a name in the cache always
//! exists on the server.

use std::collections::HashMap;

/// Prepared statements kept per connection at most.
pub const MAX_STATEMENTS: usize = 64;

/// SQLSTATE `feature_not_supported`, which PostgreSQL raises as "cached
/// plan must not change result type" when a relation behind a prepared
/// statement changed its columns (the new schema being migrated).
pub const CACHED_PLAN_CHANGED: &str = "0A000";

/// One connection's prepared statements, by search_path, SQL text and
/// parameter types. The search_path is part of the key because a prepared
/// statement resolves its relations when it is planned: the old and the
/// new query, even when their texts are equal, are two statements (and
/// PostgreSQL would re-plan one statement at every switch of search_path).
#[derive(Debug, Default)]
pub struct StatementCache {
    names: HashMap<(String, String, Vec<u32>), u32>,
    next: u32,
}

/// What [`StatementCache::prepare`] decided for one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    /// The statement's server-side name is `pgshadow_<id>`.
    pub id: u32,
    /// It must be parsed in this pipeline (first use on this connection).
    pub parse: bool,
}

impl Prepared {
    /// The server-side statement name.
    pub fn name(self) -> String {
        statement_name(self.id)
    }
}

/// The server-side name of statement `id`.
pub fn statement_name(id: u32) -> String {
    format!("pgshadow_{id}")
}

impl StatementCache {
    /// The statement for `sql` with `types`: already prepared on this
    /// connection, or a new name to parse it under. `None` when the cache
    /// is full: the caller closes [`StatementCache::drain`]'s names first.
    pub fn prepare(&mut self, search_path: &str, sql: &str, types: &[u32]) -> Option<Prepared> {
        // Looking up by a borrowed key would need the raw-entry API; the
        // copy is a few hundred bytes, far cheaper than a server-side parse.
        let key = (search_path.to_owned(), sql.to_owned(), types.to_vec());
        if let Some(&id) = self.names.get(&key) {
            return Some(Prepared { id, parse: false });
        }
        if self.names.len() >= MAX_STATEMENTS {
            return None;
        }
        let id = self.next;
        self.next = self.next.wrapping_add(1);
        self.names.insert(key, id);
        Some(Prepared { id, parse: true })
    }

    /// Whether the cache has room for `n` more statements.
    pub fn has_room(&self, n: usize) -> bool {
        self.names.len() + n <= MAX_STATEMENTS
    }

    /// Forgets one statement (its step failed: it may not exist).
    pub fn forget(&mut self, id: u32) {
        self.names.retain(|_, v| *v != id);
    }

    /// Forgets everything and returns the ids to close on the server.
    pub fn drain(&mut self) -> Vec<u32> {
        self.names.drain().map(|(_, id)| id).collect()
    }

    /// Forgets everything without closing (after `DISCARD ALL`, which
    /// deallocated them on the server).
    pub fn clear(&mut self) {
        self.names.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_is_parsed_once_then_reused_until_forgotten() {
        let mut c = StatementCache::default();
        let first = c.prepare("public", "SELECT 1", &[]).unwrap();
        assert!(first.parse);
        assert_eq!(
            c.prepare("public", "SELECT 1", &[]),
            Some(Prepared {
                id: first.id,
                parse: false
            })
        );
        let typed = c.prepare("public", "SELECT 1", &[23]).unwrap();
        assert!(typed.parse, "other parameter types are another statement");
        let elsewhere = c.prepare("v2", "SELECT 1", &[]).unwrap();
        assert!(elsewhere.parse, "another search_path is another statement");
        c.forget(first.id);
        let again = c.prepare("public", "SELECT 1", &[]).unwrap();
        assert!(again.parse);
        assert_ne!(again.id, first.id, "a forgotten name is never reused");
    }

    #[test]
    fn a_full_cache_refuses_until_drained() {
        let mut c = StatementCache::default();
        for i in 0..MAX_STATEMENTS {
            assert!(c.prepare("", &format!("SELECT {i}"), &[]).is_some());
        }
        assert!(!c.has_room(1));
        assert_eq!(c.prepare("", "SELECT 'one more'", &[]), None);
        assert_eq!(c.drain().len(), MAX_STATEMENTS);
        assert!(c.prepare("", "SELECT 'one more'", &[]).unwrap().parse);
    }
}
