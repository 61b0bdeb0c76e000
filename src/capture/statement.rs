//! A statement as the tracker keeps it: its text and what every execution
//! needs to know about it, worked out once when it is prepared (or, for a
//! simple Query, when it arrives), so that the relay's per-execution work
//! is a few field reads.

use super::fingerprint::Fingerprint;
use super::lexer::{self, Lexed};
use super::skip::SkipReason;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// A statement the client prepared, with what every execution needs to
/// know worked out once, at Parse.
#[derive(Debug)]
pub(super) struct Statement {
    /// The SQL, when it is valid UTF-8 (otherwise it cannot be parsed).
    pub(super) sql: Option<Arc<str>>,
    pub(super) param_types: Arc<[u32]>,
    pub(super) fingerprint: Fingerprint,
    /// Why no execution can be compared, whatever the session does.
    pub(super) ineligible: Option<SkipReason>,
    /// What running it does to the session.
    pub(super) effect: SessionEffect,
    /// Executions bound so far in this session (saturating).
    pub(super) executions: AtomicU32,
}

impl Statement {
    pub(super) fn new(sql: &[u8], param_types: Arc<[u32]>) -> Self {
        let lexed = lexer::lex_bytes(sql);
        let sql = std::str::from_utf8(sql).ok().map(Arc::from);
        Self {
            ineligible: ineligible(&lexed, sql.is_some()),
            effect: SessionEffect::of(&lexed),
            fingerprint: lexed.fingerprint,
            sql,
            param_types,
            executions: AtomicU32::new(0),
        }
    }

    /// What an execution needs to know.
    pub(super) fn facts(&self) -> Facts {
        Facts {
            fingerprint: self.fingerprint,
            ineligible: self.ineligible,
            effect: self.effect,
        }
    }

    /// Counts one execution, up to `limit` (past it the count is neither
    /// needed nor written); returns the executions before this one.
    pub(super) fn count_execution(&self, limit: u32) -> u32 {
        let before = self.executions.load(Ordering::Relaxed);
        if before < limit {
            self.executions.store(before + 1, Ordering::Relaxed);
        }
        before
    }
}

/// What an execution needs to know about its statement.
#[derive(Debug, Clone, Copy)]
pub(super) struct Facts {
    pub(super) fingerprint: Fingerprint,
    pub(super) ineligible: Option<SkipReason>,
    pub(super) effect: SessionEffect,
}

/// Statements a session prepared lately, found again by their text.
const RECENT: usize = 8;
/// Longest SQL text remembered: bounds what a session keeps alive to
/// `RECENT` × this (a huge text is rarely re-sent in a loop).
const MAX_REMEMBERED_SQL: usize = 16 * 1024;

/// The statements a session prepared most recently, by SQL text and
/// parameter types. Most drivers send a fresh Parse of the unnamed
/// statement before every execution; finding the text here keeps the
/// statement's facts and its execution count, so the lexer does not run
/// again and, once the session has run the statement a few times, the
/// sampler no longer consults its shared count of first executions (a lock
/// every session running the same query would otherwise take).
#[derive(Debug, Default)]
pub(super) struct RecentStatements {
    ring: [Option<Arc<Statement>>; RECENT],
    /// Where the next new statement goes.
    next: usize,
}

impl RecentStatements {
    /// The statement for this Parse: a recent one with the same text and
    /// parameter types, or a new one (then remembered).
    pub(super) fn get_or_prepare(&mut self, sql: &[u8], param_types: Vec<u32>) -> Arc<Statement> {
        let same = |s: &&Arc<Statement>| {
            s.sql.as_deref().map(str::as_bytes) == Some(sql) && *s.param_types == *param_types
        };
        if let Some(found) = self.ring.iter().flatten().find(same) {
            return found.clone();
        }
        let statement = Arc::new(Statement::new(sql, Arc::from(param_types)));
        if statement.sql.is_some() && sql.len() <= MAX_REMEMBERED_SQL {
            if let Some(slot) = self.ring.get_mut(self.next) {
                *slot = Some(statement.clone());
            }
            self.next = (self.next + 1) % RECENT;
        }
        statement
    }
}

/// Named statements kept per session at most; beyond, new ones are not
/// tracked (their executions are skipped as `too_large`).
const MAX_TRACKED_STATEMENTS: usize = 10_000;

/// Default byte budget of [`NamedStatements`]
/// (`shadow.max_session_statement_bytes`).
pub const DEFAULT_STATEMENT_BUDGET: usize = 4 * 1024 * 1024;

/// What one remembered statement costs beyond its name, text and parameter
/// types: the map entry, the `Arc` and the statement's fixed fields.
const STATEMENT_OVERHEAD: usize = 128;

/// A session's named prepared statements, bounded in number and in bytes,
/// so that a client preparing without end cannot grow the proxy: a
/// statement that does not fit is simply not remembered. (The relay
/// forwards it all the same; only its capture is given up.)
#[derive(Debug)]
pub(super) struct NamedStatements {
    map: HashMap<Vec<u8>, Arc<Statement>>,
    /// What `map` holds, in [`remembered_bytes`].
    bytes: usize,
    /// Most `bytes` may reach.
    budget: usize,
}

/// Bytes a named statement is charged against the session's budget.
fn remembered_bytes(name: &[u8], statement: &Statement) -> usize {
    name.len()
        + statement.sql.as_deref().map_or(0, str::len)
        + 4 * statement.param_types.len()
        + STATEMENT_OVERHEAD
}

impl NamedStatements {
    /// No statements, at most `budget` bytes of them.
    pub(super) fn new(budget: usize) -> Self {
        Self {
            map: HashMap::new(),
            bytes: 0,
            budget,
        }
    }

    /// Bytes remembered now.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The statement called `name`.
    pub(super) fn get(&self, name: &[u8]) -> Option<&Arc<Statement>> {
        self.map.get(name)
    }

    /// Whether `name` is remembered.
    #[cfg(test)]
    pub(super) fn contains(&self, name: &[u8]) -> bool {
        self.map.contains_key(name)
    }

    /// Remembers `statement` as `name` (which must not be in use) if it
    /// fits; returns whether it did.
    pub(super) fn insert(&mut self, name: &[u8], statement: Arc<Statement>) -> bool {
        let cost = remembered_bytes(name, &statement);
        if self.map.len() >= MAX_TRACKED_STATEMENTS || self.bytes + cost > self.budget {
            return false;
        }
        self.bytes += cost;
        self.map.insert(name.to_vec(), statement);
        true
    }

    /// Forgets `name`, giving its bytes back.
    pub(super) fn remove(&mut self, name: &[u8]) {
        if let Some(statement) = self.map.remove(name) {
            self.bytes = self
                .bytes
                .saturating_sub(remembered_bytes(name, &statement));
        }
    }
}

/// What a statement does to the session, as far as replaying its reads
/// elsewhere is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SessionEffect {
    None,
    /// Creates temporary objects or changes the search_path: the session's
    /// reads can no longer be replayed on another connection.
    MakesPrivate,
    /// `DISCARD ALL`: back to a fresh session.
    Resets,
}

impl SessionEffect {
    pub(super) fn of(lexed: &Lexed) -> Self {
        let w = |i| lexed.word(i);
        let sets_search_path = w(0) == "set"
            && (w(1) == "search_path"
                || (matches!(w(1), "session" | "local") && w(2) == "search_path"));
        let creates_temp = w(0) == "create"
            && (matches!(w(1), "temp" | "temporary")
                || (matches!(w(1), "global" | "local") && matches!(w(2), "temp" | "temporary")));
        if sets_search_path || creates_temp {
            SessionEffect::MakesPrivate
        } else if w(0) == "discard" && w(1) == "all" {
            SessionEffect::Resets
        } else {
            SessionEffect::None
        }
    }
}

/// Why a text can never be compared, from its lexical shape alone.
pub(super) fn ineligible(lexed: &Lexed, valid_utf8: bool) -> Option<SkipReason> {
    if !valid_utf8 {
        Some(SkipReason::Unparsable)
    } else if lexed.statements > 1 {
        Some(SkipReason::MultiStatement)
    } else if !lexed.may_be_read() {
        Some(SkipReason::NotRead)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_prepared_again_with_the_same_text_is_the_same_statement() {
        let mut recent = RecentStatements::default();
        let a = recent.get_or_prepare(b"SELECT * FROM t WHERE id = $1", vec![23]);
        a.executions.store(5, Ordering::Relaxed);
        let again = recent.get_or_prepare(b"SELECT * FROM t WHERE id = $1", vec![23]);
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(again.executions.load(Ordering::Relaxed), 5);
        let other_types = recent.get_or_prepare(b"SELECT * FROM t WHERE id = $1", vec![20]);
        assert!(!Arc::ptr_eq(&a, &other_types), "parameter types differ");
        let other_text = recent.get_or_prepare(b"SELECT * FROM t WHERE id = $2", vec![23]);
        assert!(!Arc::ptr_eq(&a, &other_text), "text differs");
    }

    #[test]
    fn only_the_most_recent_statements_are_remembered() {
        let mut recent = RecentStatements::default();
        let first = recent.get_or_prepare(b"SELECT 0", Vec::new());
        for i in 1..RECENT {
            recent.get_or_prepare(format!("SELECT {i}").as_bytes(), Vec::new());
        }
        assert!(Arc::ptr_eq(
            &first,
            &recent.get_or_prepare(b"SELECT 0", Vec::new())
        ));
        recent.get_or_prepare(b"SELECT 'one too many'", Vec::new());
        assert!(!Arc::ptr_eq(
            &first,
            &recent.get_or_prepare(b"SELECT 0", Vec::new())
        ));
    }

    #[test]
    fn huge_texts_are_not_remembered() {
        let mut recent = RecentStatements::default();
        let huge = format!("SELECT '{}'", "x".repeat(MAX_REMEMBERED_SQL));
        let a = recent.get_or_prepare(huge.as_bytes(), Vec::new());
        assert!(!Arc::ptr_eq(
            &a,
            &recent.get_or_prepare(huge.as_bytes(), Vec::new())
        ));
    }

    #[test]
    fn text_that_is_not_utf8_is_never_remembered() {
        let mut recent = RecentStatements::default();
        let kept = recent.get_or_prepare(b"SELECT 1", Vec::new());
        let invalid = [b'S', 0xff, b'x'];
        let bad = recent.get_or_prepare(&invalid, Vec::new());
        assert!(bad.sql.is_none());
        for _ in 0..RECENT {
            let again = recent.get_or_prepare(&invalid, Vec::new());
            assert!(!Arc::ptr_eq(&bad, &again));
        }
        assert!(
            Arc::ptr_eq(&kept, &recent.get_or_prepare(b"SELECT 1", Vec::new())),
            "invalid texts take no slot"
        );
    }
}
