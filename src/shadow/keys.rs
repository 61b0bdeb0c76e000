//! Relation keys from the catalog (DESIGN §5): what the tiebreaker appends
//! when the user configured nothing.
//!
//! For every relation a statement reads, the shadow asks PostgreSQL, on one
//! of its own connections and never on the relay, for the relation's key
//! under the old search_path (the primary key, else the unique index over
//! NOT NULL columns with the fewest columns, then by name; not partial, not
//! on expressions; tables, partitioned tables and materialized views) and
//! for the columns of whatever the new query reads under that name (after
//! `[shadow] table_map`), which is often a view. [`crate::rewrite::choose`]
//! then decides what to append.
//!
//! The lookup never gets in the way of a migration: it runs in a READ ONLY
//! transaction with a short `lock_timeout`, resolves names with
//! `to_regclass` (which takes no lock on the relation) and reads only the
//! system catalogs by OID, so DDL on the user's tables neither waits for it
//! nor makes it wait; the transaction is rolled back.
//!
//! Answers are cached per database, search_path and relation name, and
//! looked up again after `tiebreak.key_cache_seconds`, or sooner when a
//! statement fails on a missing column or a changed relation, or a
//! mismatch is rechecked (the executor asks). A failed lookup is retried
//! after [`FAILED_RETRY`]; until then only configured keys are used.

use super::conn::{ConnError, ShadowConn};
use super::decode::{read_control, read_until_ready};
use super::write::bind_text;
use crate::observability::metrics::{
    KEY_LOOKUPS_TOTAL, KEY_LOOKUP_RELATIONS_TOTAL, KEY_LOOKUP_SECONDS,
};
use crate::protocol::error_response::ErrorFields;
use crate::rewrite::{
    choose, new_side_name, Catalog, CatalogRelation, Key, KeySource, RewriteRules,
};
use bytes::BytesMut;
use postgres_protocol::message::frontend;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long the lookup waits for a lock before giving up: it takes none
/// on user relations, so this only guards against the unexpected.
const LOCK_TIMEOUT_MS: &str = "100";

/// How long after a failed lookup a relation is looked up again.
pub const FAILED_RETRY: Duration = Duration::from_secs(10);

/// Relations remembered at most; beyond, the cache starts over (a forgotten
/// relation costs one lookup).
const MAX_RELATIONS: usize = 10_000;

/// One relation per row: its columns and its best key. `$1` is a JSON
/// array of qualified names (each part double-quoted), resolved under the
/// transaction's search_path. The answer is one JSON array, in order.
const LOOKUP_SQL: &str = "\
SELECT coalesce(json_agg(json_build_object(
    'found', c.oid IS NOT NULL,
    'columns', (SELECT coalesce(json_agg(a.attname::text ORDER BY a.attnum), '[]'::json)
                  FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
    'key', (SELECT json_agg(a.attname::text ORDER BY k.ord)
              FROM unnest(best.indkey::int2[]) WITH ORDINALITY AS k (attnum, ord)
              JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE k.ord <= best.indnkeyatts),
    'primary', coalesce(best.indisprimary, false)
) ORDER BY r.n), '[]'::json)::text
FROM json_array_elements_text($1::json) WITH ORDINALITY AS r (name, n)
LEFT JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(r.name)
LEFT JOIN LATERAL (
    SELECT i.indkey, i.indnkeyatts, i.indisprimary
      FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
     WHERE i.indrelid = c.oid AND c.relkind IN ('r', 'p', 'm')
       AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
       AND NOT EXISTS (
           SELECT 1 FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k (attnum, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE k.ord <= i.indnkeyatts AND NOT a.attnotnull)
     ORDER BY i.indisprimary DESC, i.indnkeyatts, ic.relname
     LIMIT 1) best ON true";

/// One relation of the lookup's answer.
#[derive(Debug, Deserialize)]
struct Found {
    found: bool,
    columns: Vec<String>,
    key: Option<Vec<String>>,
    primary: bool,
}

/// What is known of one relation name.
#[derive(Debug, Clone)]
struct Fact {
    /// `Err`: the lookup failed.
    relation: Result<Arc<CatalogRelation>, ()>,
    /// The key chosen from it (computed once: every sample asks).
    choice: Option<Key>,
    at: Instant,
}

/// Relation facts by database, then relation name (folded parts): looked
/// up by `&str` and `&[String]`, without building a key per question.
type Facts = HashMap<Arc<str>, HashMap<Vec<String>, Fact>>;

/// The key cache of one executor: relation facts by database and name.
pub struct KeyCatalog {
    rules: RewriteRules,
    old_search_path: String,
    new_search_path: String,
    statement_timeout: Duration,
    max_age: Duration,
    facts: Mutex<Facts>,
}

impl KeyCatalog {
    /// A cache for statements planned with `rules`, whose old and new
    /// sides run under these search_paths; answers are kept `max_age`.
    pub fn new(
        rules: RewriteRules,
        (old_search_path, new_search_path): (&str, &str),
        statement_timeout: Duration,
        max_age: Duration,
    ) -> Self {
        Self {
            rules,
            old_search_path: old_search_path.to_string(),
            new_search_path: new_search_path.to_string(),
            statement_timeout,
            max_age,
            facts: Mutex::new(HashMap::new()),
        }
    }

    /// The key to append for the relation named `parts` in `database`,
    /// from what is known now (configured keys only until it is looked up).
    pub fn choose(&self, database: &str, parts: &[String]) -> Option<Key> {
        let facts = self.lock();
        match facts.get(database).and_then(|names| names.get(parts)) {
            Some(fact) => fact.choice.clone(),
            None => choose(parts, &self.rules, Catalog::Unavailable),
        }
    }

    /// Which of `names` need a lookup in `database`: never looked up, or
    /// looked up longer ago than `max_age` (`refresh`: longer ago than
    /// that; a failed lookup after [`FAILED_RETRY`]).
    pub fn stale<'n>(
        &self,
        database: &str,
        names: impl IntoIterator<Item = &'n Vec<String>>,
        refresh: Option<Duration>,
    ) -> Vec<Vec<String>> {
        let facts = self.lock();
        let known = facts.get(database);
        let mut out: Vec<Vec<String>> = Vec::new();
        for name in names {
            let due = match known.and_then(|names| names.get(name)) {
                None => true,
                Some(Fact {
                    relation: Err(()),
                    at,
                    ..
                }) => at.elapsed() >= FAILED_RETRY,
                Some(Fact { at, .. }) => at.elapsed() >= refresh.unwrap_or(self.max_age),
            };
            if due && !out.contains(name) {
                out.push(name.clone());
            }
        }
        out
    }

    /// Looks `names` up in `conn`'s database and remembers the answers (or
    /// the failure, which is also returned).
    pub async fn look_up(
        &self,
        conn: &mut ShadowConn,
        database: &str,
        names: &[Vec<String>],
    ) -> Result<(), LookupError> {
        if names.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let result = self.query(conn, names).await;
        metrics::histogram!(KEY_LOOKUP_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::counter!(KEY_LOOKUP_RELATIONS_TOTAL).increment(names.len() as u64);
        let label = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(KEY_LOOKUPS_TOTAL, "result" => label).increment(1);
        let mut all = self.lock();
        if all.values().map(HashMap::len).sum::<usize>() + names.len() > MAX_RELATIONS {
            all.clear();
        }
        let facts = all.entry(Arc::from(database)).or_default();
        let at = Instant::now();
        match result {
            Ok(found) => {
                for (name, relation) in names.iter().zip(found) {
                    if let Some(Fact {
                        relation: Ok(before),
                        ..
                    }) = facts.get(name)
                    {
                        if **before != relation {
                            tracing::info!(
                                database = %database,
                                relation = %name.join("."),
                                key = %describe(&relation),
                                "relation key changed in the catalog"
                            );
                        }
                    }
                    let choice = choose(name, &self.rules, Catalog::Known(&relation));
                    let fact = Fact {
                        relation: Ok(Arc::new(relation)),
                        choice,
                        at,
                    };
                    facts.insert(name.clone(), fact);
                }
                Ok(())
            }
            Err(e) => {
                for name in names {
                    let fact = Fact {
                        relation: Err(()),
                        choice: choose(name, &self.rules, Catalog::Unavailable),
                        at,
                    };
                    facts.insert(name.clone(), fact);
                }
                Err(e)
            }
        }
    }

    /// The lookup's transaction: both sides' answers, in the order of
    /// `names`.
    async fn query(
        &self,
        conn: &mut ShadowConn,
        names: &[Vec<String>],
    ) -> Result<Vec<CatalogRelation>, LookupError> {
        let old_names = qualified_names(names.iter().cloned());
        let new_names = qualified_names(names.iter().map(|n| new_side_name(n, &self.rules)));
        let timeout = self.statement_timeout.as_millis().max(1).to_string();
        let steps: [(&str, Vec<&str>); 6] = [
            ("BEGIN READ ONLY", vec![]),
            (
                "SELECT set_config('lock_timeout', $1, true), \
                 set_config('statement_timeout', $2, true), \
                 set_config('search_path', $3, true)",
                vec![
                    LOCK_TIMEOUT_MS,
                    timeout.as_str(),
                    self.old_search_path.as_str(),
                ],
            ),
            (LOOKUP_SQL, vec![old_names.as_str()]),
            (
                "SELECT set_config('search_path', $1, true)",
                vec![self.new_search_path.as_str()],
            ),
            (LOOKUP_SQL, vec![new_names.as_str()]),
            ("ROLLBACK", vec![]),
        ];
        let mut out = BytesMut::new();
        for (sql, params) in &steps {
            encode(sql, params, &mut out)?;
        }
        frontend::sync(&mut out);
        conn.send(&out).await?;
        let mut answers: Vec<Option<String>> = Vec::new();
        let mut failure: Option<ErrorFields> = None;
        for _ in &steps {
            match read_control(conn).await? {
                Ok(row) => answers.push(
                    row.first()
                        .and_then(|v| v.as_ref())
                        .map(|v| String::from_utf8_lossy(v).into_owned()),
                ),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if read_until_ready(conn).await? != b'I' {
            let mut rollback = BytesMut::new();
            frontend::query("ROLLBACK", &mut rollback).map_err(io)?;
            conn.send(&rollback).await?;
            if read_until_ready(conn).await? != b'I' {
                conn.poisoned = true;
            }
        }
        if let Some(e) = failure {
            return Err(LookupError::Server(e));
        }
        let side = |i: usize| -> Result<Vec<Found>, LookupError> {
            let text = answers.get(i).cloned().flatten().unwrap_or_default();
            let found: Vec<Found> =
                serde_json::from_str(&text).map_err(|e| LookupError::Answer(e.to_string()))?;
            if found.len() != names.len() {
                return Err(LookupError::Answer(format!(
                    "{} relations asked, {} answered",
                    names.len(),
                    found.len()
                )));
            }
            Ok(found)
        };
        let (old, new) = (side(2)?, side(4)?);
        Ok(old
            .into_iter()
            .zip(new)
            .map(|(old, new)| relation_of(old, new))
            .collect())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Facts> {
        self.facts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for KeyCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let relations: usize = self.lock().values().map(HashMap::len).sum();
        f.debug_struct("KeyCatalog")
            .field("relations", &relations)
            .finish_non_exhaustive()
    }
}

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The connection failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// The server refused the lookup.
    #[error("catalog lookup failed: {} {}", .0.code, .0.message)]
    Server(ErrorFields),
    /// The answer was not what the lookup asks for.
    #[error("catalog lookup: unexpected answer: {0}")]
    Answer(String),
}

fn io(e: std::io::Error) -> ConnError {
    ConnError::Protocol(e.to_string())
}

/// Parse (unnamed), Bind with text parameters, Execute.
fn encode(sql: &str, params: &[&str], out: &mut BytesMut) -> Result<(), ConnError> {
    frontend::parse("", sql, std::iter::empty(), out).map_err(io)?;
    bind_text("", params, out)
}

/// The names as a JSON array of qualified names that `to_regclass` reads
/// back exactly: every part double-quoted (parts are already folded).
fn qualified_names(names: impl Iterator<Item = Vec<String>>) -> String {
    let quoted: Vec<String> = names
        .map(|parts| {
            parts
                .iter()
                .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect();
    serde_json::to_string(&quoted).unwrap_or_else(|_| "[]".into())
}

/// Both sides' answers for one name.
fn relation_of(old: Found, new: Found) -> CatalogRelation {
    let old_key = old.key.filter(|k| !k.is_empty()).map(|columns| Key {
        columns,
        source: if old.primary {
            KeySource::PrimaryKey
        } else {
            KeySource::UniqueIndex
        },
    });
    CatalogRelation {
        old_columns: if old.found { old.columns } else { Vec::new() },
        old_key,
        new_columns: if new.found { new.columns } else { Vec::new() },
    }
}

/// `(env_id, entry_id) primary_key`, or `no key`, for a log line.
fn describe(relation: &CatalogRelation) -> String {
    match &relation.old_key {
        Some(key) => format!("({}) {}", key.columns.join(", "), key.source.label()),
        None => "no key".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_so_that_to_regclass_reads_them_back_exactly() {
        let names = vec![
            vec!["entries".to_string()],
            vec!["public".to_string(), "Weird \"Table\"".to_string()],
        ];
        assert_eq!(
            qualified_names(names.into_iter()),
            r#"["\"entries\"","\"public\".\"Weird \"\"Table\"\"\""]"#
        );
    }

    #[test]
    fn an_answer_becomes_a_relation_with_its_key_and_both_sides_columns() {
        let old: Found = serde_json::from_str(
            r#"{"found": true, "columns": ["env_id", "entry_id", "title"], "key": ["env_id", "entry_id"], "primary": true}"#,
        )
        .unwrap();
        let new: Found = serde_json::from_str(
            r#"{"found": true, "columns": ["env_id", "entry_id", "title"], "key": null, "primary": false}"#,
        )
        .unwrap();
        let relation = relation_of(old, new);
        assert_eq!(
            relation.old_key,
            Some(Key {
                columns: vec!["env_id".into(), "entry_id".into()],
                source: KeySource::PrimaryKey
            })
        );
        assert_eq!(relation.new_columns.len(), 3);
        let missing: Found = serde_json::from_str(
            r#"{"found": false, "columns": [], "key": null, "primary": false}"#,
        )
        .unwrap();
        let unique: Found = serde_json::from_str(
            r#"{"found": true, "columns": ["code"], "key": ["code"], "primary": false}"#,
        )
        .unwrap();
        let relation = relation_of(unique, missing);
        assert_eq!(
            relation.old_key.map(|k| k.source),
            Some(KeySource::UniqueIndex)
        );
        assert!(relation.new_columns.is_empty());
    }
}
