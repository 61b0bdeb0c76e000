//! The statement a session bound last, remembered with its facts and its
//! name inline (see [`super`] for what it saves).

use crate::capture::statement::{Facts, Statement};
use std::sync::Arc;

/// Longest statement name [`LastBound`] keeps.
const LAST_BOUND_NAME: usize = 32;

/// The named statement a session bound last, with its facts at hand.
/// Sessions bind the same few statements over and over: this spares the
/// name's hashing, and, once the statement's first executions are counted,
/// any read of the statement itself. The name is kept inline, so the
/// comparison reads no other memory either.
#[derive(Debug)]
pub(crate) struct LastBound {
    name: [u8; LAST_BOUND_NAME],
    name_len: usize,
    pub(crate) statement: Arc<Statement>,
    pub(crate) facts: Facts,
    /// The statement's count reached the limit: it is not read again.
    counted_out: bool,
}

impl LastBound {
    /// `None` when the name is longer than [`LAST_BOUND_NAME`].
    pub(crate) fn new(name: &[u8], statement: Arc<Statement>) -> Option<Self> {
        let mut inline = [0; LAST_BOUND_NAME];
        inline.get_mut(..name.len())?.copy_from_slice(name);
        Some(Self {
            name: inline,
            name_len: name.len(),
            facts: statement.facts(),
            statement,
            counted_out: false,
        })
    }

    /// Whether this is the statement called `name`.
    pub(crate) fn is(&self, name: &[u8]) -> bool {
        self.name.get(..self.name_len) == Some(name)
    }

    /// [`Statement::count_execution`], without touching the statement
    /// once its count has reached `limit`.
    pub(crate) fn count_execution(&mut self, limit: u32) -> u32 {
        if self.counted_out {
            return limit;
        }
        let before = self.statement.count_execution(limit);
        self.counted_out = before >= limit;
        before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn the_last_bound_statement_counts_up_to_the_limit_and_then_stops_looking() {
        let statement = Arc::new(Statement::new(b"SELECT 1", Arc::from([])));
        let mut last = LastBound::new(b"s1", statement.clone()).expect("a short name");
        assert!(last.is(b"s1"));
        assert!(!last.is(b"s"));
        assert!(!last.is(b"s12"));
        let counts: Vec<u32> = (0..5).map(|_| last.count_execution(3)).collect();
        assert_eq!(counts, [0, 1, 2, 3, 3]);
        assert_eq!(statement.executions.load(Ordering::Relaxed), 3);
        let long = [b'x'; LAST_BOUND_NAME + 1];
        assert!(LastBound::new(&long, statement).is_none());
    }
}
