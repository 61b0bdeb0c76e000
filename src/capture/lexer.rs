//! A single cheap pass over SQL text, fit for the relay's hot path.
//!
//! The full parse (sqlparser, ~50 µs) happens off the relay, once per
//! distinct statement and only for samples. What the relay needs for every
//! statement is cheaper and comes from one lexical scan that allocates
//! nothing:
//!
//! - the first keywords, which rule out writes, DDL and session commands
//!   without parsing (`INSERT`, `SET search_path`, `CREATE TEMP TABLE`, …);
//! - the number of statements in the text (a simple Query may hold several);
//! - the [`Fingerprint`]: a hash of the statement with every literal
//!   masked, whitespace and comments dropped and unquoted words lowercased,
//!   so `SELECT * FROM t WHERE id = 42` and `select *  from T where id=7`
//!   group together. Lists of literals collapse (`IN (1, 2, 3)` and
//!   `IN (4)` share a fingerprint).
//!
//! The scanner follows PostgreSQL's lexical rules where they matter for
//! this: `'…'` with `''`, `E'…'` with backslash escapes, dollar quoting,
//! `"quoted identifiers"`, nested `/* */` comments, `$1` parameters.

use super::fingerprint::{Fingerprint, FingerprintHasher};

/// How many leading words are kept.
pub const LEADING_WORDS: usize = 4;
/// Longest leading word kept (longer words are truncated; no keyword the
/// relay looks at is longer).
pub const WORD_LEN: usize = 16;

/// A lowercased leading word, stored inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Word {
    bytes: [u8; WORD_LEN],
    len: u8,
}

impl Word {
    fn from_bytes(raw: &[u8]) -> Self {
        let mut w = Word::default();
        for (dst, src) in w.bytes.iter_mut().zip(raw) {
            *dst = src.to_ascii_lowercase();
        }
        w.len = raw.len().min(WORD_LEN) as u8;
        w
    }

    /// The word as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.bytes.get(..self.len as usize).unwrap_or_default()).unwrap_or("")
    }
}

/// What one scan learned about a SQL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexed {
    /// Non-empty statements in the text.
    pub statements: usize,
    /// The first words of the first statement, lowercased; opening
    /// parentheses are skipped (`(SELECT 1)`).
    pub leading: [Word; LEADING_WORDS],
    /// Stable id of the normalised text.
    pub fingerprint: Fingerprint,
}

impl Lexed {
    /// The `i`-th leading word, or "" when the statement is shorter.
    pub fn word(&self, i: usize) -> &str {
        self.leading.get(i).map(Word::as_str).unwrap_or("")
    }

    /// Whether the text could be a plain read: a single statement that
    /// starts with SELECT, WITH, VALUES or TABLE. The full parse decides;
    /// this only rules out what certainly is not.
    pub fn may_be_read(&self) -> bool {
        matches!(self.word(0), "select" | "with" | "values" | "table")
    }
}

/// Token classes, as far as normalisation cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    /// An unquoted word (keyword or identifier), lowercased when hashed.
    Word(&'a [u8]),
    /// A "quoted identifier", kept verbatim.
    Quoted(&'a [u8]),
    /// A literal: string, number, bit string; masked.
    Literal,
    /// `$n`.
    Param(&'a [u8]),
    /// Any other single character (operators, punctuation).
    Symbol(u8),
    /// `;`
    Semicolon,
}

/// Scans `sql` once.
pub fn lex(sql: &str) -> Lexed {
    lex_bytes(sql.as_bytes())
}

/// Scans SQL given as bytes (in the client encoding; non-ASCII bytes are
/// treated as identifier characters, which is what PostgreSQL does).
pub fn lex_bytes(sql: &[u8]) -> Lexed {
    let mut state = Normaliser::default();
    let mut tokens = Tokens {
        s: sql,
        i: 0,
        start: 0,
    };
    while let Some(t) = tokens.next_token() {
        state.push(t);
    }
    state.finish()
}

/// `sql` with every literal (string, number, bit string, dollar-quoted
/// text) replaced by `?`, the rest as written: SQL a log line or a
/// value-free store may show without showing data.
pub fn mask_literals(sql: &str) -> String {
    let mut tokens = Tokens {
        s: sql.as_bytes(),
        i: 0,
        start: 0,
    };
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    while let Some(token) = tokens.next_token() {
        if token == Token::Literal {
            out.push_str(sql.get(copied..tokens.start).unwrap_or_default());
            out.push('?');
            copied = tokens.i.min(sql.len());
        }
    }
    out.push_str(sql.get(copied..).unwrap_or_default());
    out
}

/// Builds the fingerprint and the leading words from a token stream.
#[derive(Default)]
struct Normaliser {
    hasher: FingerprintHasher,
    statements: usize,
    in_statement: bool,
    leading: [Word; LEADING_WORDS],
    leading_len: usize,
    /// Previous emitted token was a masked literal, and the one before a
    /// comma-separated literal list may continue.
    pending_list: ListState,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum ListState {
    #[default]
    None,
    /// Just emitted `?`.
    AfterLiteral,
    /// Saw `?` then `,`: the comma is held back until we know whether
    /// another literal follows.
    AfterComma,
}

impl Normaliser {
    fn push(&mut self, t: Token<'_>) {
        if t == Token::Semicolon {
            self.flush_list();
            if self.in_statement {
                self.hasher.write_token(b";");
            }
            self.in_statement = false;
            return;
        }
        if !self.in_statement {
            self.in_statement = true;
            self.statements += 1;
        }
        if self.statements == 1 && self.leading_len < LEADING_WORDS {
            match t {
                Token::Word(w) => {
                    self.leading[self.leading_len] = Word::from_bytes(w);
                    self.leading_len += 1;
                }
                Token::Symbol(b'(') if self.leading_len == 0 => {}
                _ => self.leading_len = LEADING_WORDS,
            }
        }
        match t {
            Token::Literal => match self.pending_list {
                // `?, ?` collapses into one `?`.
                ListState::AfterComma => self.pending_list = ListState::AfterLiteral,
                _ => {
                    self.hasher.write_token(b"?");
                    self.pending_list = ListState::AfterLiteral;
                }
            },
            Token::Symbol(b',') if self.pending_list == ListState::AfterLiteral => {
                self.pending_list = ListState::AfterComma;
            }
            other => {
                self.flush_list();
                match other {
                    Token::Word(w) => self.hasher.write_lowercase_token(w),
                    Token::Quoted(q) => {
                        self.hasher.write_token(b"\"");
                        self.hasher.write_raw(q);
                    }
                    Token::Param(p) => self.hasher.write_token(p),
                    Token::Symbol(c) => self.hasher.write_token(&[c]),
                    Token::Literal | Token::Semicolon => {}
                }
            }
        }
    }

    /// A held-back comma after a literal turned out not to continue a list.
    fn flush_list(&mut self) {
        if self.pending_list == ListState::AfterComma {
            self.hasher.write_token(b",");
        }
        self.pending_list = ListState::None;
    }

    fn finish(mut self) -> Lexed {
        self.flush_list();
        Lexed {
            statements: self.statements,
            leading: self.leading,
            fingerprint: self.hasher.finish(),
        }
    }
}

/// The tokenizer: a cursor over the bytes.
struct Tokens<'a> {
    s: &'a [u8],
    i: usize,
    /// Where the last token returned starts.
    start: usize,
}

impl<'a> Tokens<'a> {
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.s.get(self.i + ahead).copied()
    }

    fn next_token(&mut self) -> Option<Token<'a>> {
        loop {
            let c = self.peek(0)?;
            match c {
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => self.i += 1,
                b'-' if self.peek(1) == Some(b'-') => self.skip_line_comment(),
                b'/' if self.peek(1) == Some(b'*') => self.skip_block_comment(),
                _ => break,
            }
        }
        let c = self.peek(0)?;
        let start = self.i;
        self.start = start;
        let token = match c {
            b';' => {
                self.i += 1;
                Token::Semicolon
            }
            b'\'' => {
                self.skip_string(false);
                Token::Literal
            }
            b'e' | b'E' if self.peek(1) == Some(b'\'') => {
                self.i += 1;
                self.skip_string(true);
                Token::Literal
            }
            b'b' | b'B' | b'x' | b'X' | b'n' | b'N' if self.peek(1) == Some(b'\'') => {
                self.i += 1;
                self.skip_string(false);
                Token::Literal
            }
            b'u' | b'U' if self.peek(1) == Some(b'&') && self.peek(2) == Some(b'\'') => {
                self.i += 2;
                self.skip_string(false);
                Token::Literal
            }
            b'"' => {
                self.i += 1;
                let body_start = self.i;
                self.skip_quoted_identifier();
                let end = self.i.saturating_sub(1).max(body_start);
                Token::Quoted(self.s.get(body_start..end).unwrap_or_default())
            }
            b'$' => match self.peek(1) {
                Some(d) if d.is_ascii_digit() => {
                    self.i += 1;
                    while self.peek(0).is_some_and(|d| d.is_ascii_digit()) {
                        self.i += 1;
                    }
                    Token::Param(self.s.get(start..self.i).unwrap_or_default())
                }
                _ => {
                    if self.skip_dollar_quoted() {
                        Token::Literal
                    } else {
                        self.i += 1;
                        Token::Symbol(b'$')
                    }
                }
            },
            b'0'..=b'9' => {
                self.skip_number();
                Token::Literal
            }
            b'.' if self.peek(1).is_some_and(|d| d.is_ascii_digit()) => {
                self.skip_number();
                Token::Literal
            }
            c if is_word_start(c) => {
                while self.peek(0).is_some_and(is_word_continue) {
                    self.i += 1;
                }
                Token::Word(self.s.get(start..self.i).unwrap_or_default())
            }
            c => {
                self.i += 1;
                Token::Symbol(c)
            }
        };
        Some(token)
    }

    fn skip_line_comment(&mut self) {
        while let Some(c) = self.peek(0) {
            self.i += 1;
            if c == b'\n' {
                break;
            }
        }
    }

    /// `/* ... */`, nested as in PostgreSQL.
    fn skip_block_comment(&mut self) {
        let mut depth = 0usize;
        while let Some(c) = self.peek(0) {
            if c == b'/' && self.peek(1) == Some(b'*') {
                depth += 1;
                self.i += 2;
            } else if c == b'*' && self.peek(1) == Some(b'/') {
                depth = depth.saturating_sub(1);
                self.i += 2;
                if depth == 0 {
                    return;
                }
            } else {
                self.i += 1;
            }
        }
    }

    /// From an opening `'`: to after the closing quote (`''` continues the
    /// string; with `backslash`, `\'` does too).
    fn skip_string(&mut self, backslash: bool) {
        self.i += 1;
        while let Some(c) = self.peek(0) {
            self.i += 1;
            match c {
                b'\\' if backslash => self.i += 1,
                b'\'' if self.peek(0) == Some(b'\'') => self.i += 1,
                b'\'' => return,
                _ => {}
            }
        }
    }

    /// From an opening `"`: to after the closing one (`""` continues).
    fn skip_quoted_identifier(&mut self) {
        while let Some(c) = self.peek(0) {
            self.i += 1;
            if c == b'"' {
                if self.peek(0) == Some(b'"') {
                    self.i += 1;
                } else {
                    return;
                }
            }
        }
    }

    /// `$tag$ ... $tag$` starting at `$`. Returns false (consuming nothing)
    /// when the `$` does not open a dollar quote.
    fn skip_dollar_quoted(&mut self) -> bool {
        let start = self.i;
        let mut j = start + 1;
        while self
            .s
            .get(j)
            .is_some_and(|&c| is_word_continue(c) && c != b'$')
        {
            j += 1;
        }
        if self.s.get(j) != Some(&b'$') {
            return false;
        }
        let tag = self.s.get(start..=j).unwrap_or_default();
        let body = j + 1;
        let close = self
            .s
            .get(body..)
            .and_then(|rest| rest.windows(tag.len()).position(|w| w == tag));
        self.i = match close {
            Some(at) => body + at + tag.len(),
            None => self.s.len(),
        };
        true
    }

    fn skip_number(&mut self) {
        while let Some(c) = self.peek(0) {
            let exponent_sign = matches!(c, b'+' | b'-')
                && self
                    .i
                    .checked_sub(1)
                    .and_then(|p| self.s.get(p))
                    .is_some_and(|p| matches!(p, b'e' | b'E'));
            if c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || exponent_sign {
                self.i += 1;
            } else {
                break;
            }
        }
    }
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_word_continue(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

#[cfg(test)]
mod tests {
    #[test]
    fn literals_are_masked_and_everything_else_kept() {
        use super::mask_literals;
        assert_eq!(
            mask_literals("SELECT id, 'x' FROM t WHERE email = 'a@b.c' AND n > 42 -- 'c'"),
            "SELECT id, ? FROM t WHERE email = ? AND n > ? -- 'c'"
        );
        assert_eq!(
            mask_literals("SELECT $1, E'it''s', $$dollar$$, \"Ünïcode\" FROM t1"),
            "SELECT $1, ?, ?, \"Ünïcode\" FROM t1"
        );
        assert_eq!(mask_literals("SELECT 'unterminated"), "SELECT ?");
    }

    use super::*;

    fn fp(sql: &str) -> Fingerprint {
        lex(sql).fingerprint
    }

    #[test]
    fn literals_whitespace_comments_and_case_do_not_change_the_fingerprint() {
        let a = fp("SELECT * FROM entries WHERE id = 42 AND title = 'x'");
        assert_eq!(
            a,
            fp("select *\n  from ENTRIES -- a comment\n where id=7 and title = E'it''s'")
        );
        assert_eq!(a, fp("/* hi /* nested */ */ SELECT * FROM entries WHERE id = 1.5e3 AND title = $$dollar 'quoted'$$"));
        assert_ne!(a, fp("SELECT * FROM entries WHERE id = $1 AND title = $2"));
        assert_ne!(
            a,
            fp("SELECT * FROM \"Entries\" WHERE id = 42 AND title = 'x'")
        );
        assert_ne!(a, fp("SELECT * FROM entries WHERE id > 42 AND title = 'x'"));
    }

    #[test]
    fn literal_lists_collapse_but_other_commas_stay() {
        assert_eq!(
            fp("SELECT 1 FROM t WHERE id IN (1, 2, 3)"),
            fp("SELECT 1 FROM t WHERE id IN (4)")
        );
        assert_ne!(fp("SELECT a, b FROM t"), fp("SELECT a b FROM t"));
        assert_ne!(fp("SELECT f(1, x) FROM t"), fp("SELECT f(1 x) FROM t"));
    }

    #[test]
    fn leading_words_and_statement_counts() {
        let l = lex("  (SELECT 1)");
        assert_eq!(l.word(0), "select");
        assert!(l.may_be_read());
        let l = lex("SET search_path = v2, public");
        assert_eq!((l.word(0), l.word(1)), ("set", "search_path"));
        assert!(!l.may_be_read());
        assert_eq!(lex("CREATE TEMP TABLE x (a int)").word(1), "temp");
        assert_eq!(lex("SELECT 1; SELECT 2;").statements, 2);
        assert_eq!(lex("SELECT ';' ; ").statements, 1);
        assert_eq!(lex("SELECT 1 -- ; not a statement").statements, 1);
        assert_eq!(lex("").statements, 0);
        assert_eq!(lex(" ; ; ").statements, 0);
        assert_eq!(
            lex("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x").word(0),
            "with"
        );
    }

    #[test]
    fn unterminated_and_odd_input_does_not_panic() {
        for sql in [
            "'unterminated",
            "$tag$ never closed",
            "/* open",
            "\"open",
            "E'\\",
            "$",
            "$$",
            "1e+",
            "x'",
            "\u{fffd}\u{0}",
        ] {
            let _ = lex(sql);
        }
    }

    #[test]
    fn fingerprints_are_stable_across_runs() {
        // The fingerprint is part of the store's key: it must not change
        // between processes, versions of Rust or machines.
        assert_eq!(fp("SELECT 1").to_string(), fp("select 2").to_string());
        assert_eq!(
            fp("SELECT * FROM t WHERE id = 1").to_string(),
            "90356c2a5f55a6f1"
        );
    }
}
