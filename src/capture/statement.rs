//! A statement as the tracker keeps it: its text and what every execution
//! needs to know about it, worked out once when it is prepared (or, for a
//! simple Query, when it arrives), so that the relay's per-execution work
//! is a few field reads.

use super::fingerprint::Fingerprint;
use super::lexer::{self, Lexed};
use super::skip::SkipReason;
use std::sync::atomic::AtomicU32;
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
