//! Parsing without risking the process's stack.
//!
//! sqlparser bounds the nesting of parentheses and subqueries (its
//! recursion limit), but not the length of an operator chain: `a = 0 OR a
//! = 1 OR …` parses iteratively into a left-deep tree, one level per
//! operator. Everything that walks that tree afterwards recurses once per
//! level, including `Clone`, `PartialEq`, `Display`, the visitors and even
//! `Drop`. A 2 MiB thread stack (tokio's default) overflows at a few
//! hundred levels in a debug build and a few thousand in release, and a
//! stack overflow aborts the whole proxy.
//!
//! So the tokens are counted first. Ordinary statements are planned on the
//! calling thread; statements with long operator chains on a short-lived
//! thread with a large stack (this happens once per distinct text, the
//! plan is cached); beyond that they are skipped as too large.

use crate::capture::skip::SkipReason;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// Up to this many operator tokens the calling thread's stack suffices.
const INLINE_OPERATORS: usize = 128;
/// Beyond this many operator tokens a statement is not planned.
pub(crate) const MAX_OPERATORS: usize = 4096;
/// Stack of the planning thread for long operator chains (reserved address
/// space; only the pages used are touched).
const DEEP_STACK: usize = 64 << 20;

/// Tokenizes `sql` and runs `plan` on the tokens, on a thread whose stack
/// fits the depth the tokens can produce.
pub(crate) fn with_tokens<T: Send>(
    sql: &str,
    plan: impl FnOnce(Vec<TokenWithSpan>) -> Result<T, SkipReason> + Send,
) -> Result<T, SkipReason> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|_| SkipReason::Unparsable)?;
    let operators = tokens.iter().filter(|t| is_operator(&t.token)).count();
    if operators <= INLINE_OPERATORS {
        return plan(tokens);
    }
    if operators > MAX_OPERATORS {
        return Err(SkipReason::TooLarge);
    }
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("pgshadow-plan".into())
            .stack_size(DEEP_STACK)
            .spawn_scoped(scope, move || plan(tokens));
        match thread {
            Ok(handle) => handle.join().unwrap_or(Err(SkipReason::Unparsable)),
            Err(_) => Err(SkipReason::TooLarge),
        }
    })
}

/// Whether a token can add a level to an expression tree: operators and
/// operator keywords. Literals, names and punctuation cannot; anything
/// unknown is counted.
fn is_operator(token: &Token) -> bool {
    match token {
        Token::Word(word) => matches!(
            word.keyword,
            Keyword::AND
                | Keyword::OR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::IN
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::BETWEEN
                | Keyword::AT
                | Keyword::COLLATE
                | Keyword::OVERLAPS
        ),
        Token::EOF
        | Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::Comma
        | Token::Whitespace(_)
        | Token::LParen
        | Token::RParen
        | Token::Period
        | Token::SemiColon
        | Token::LBracket
        | Token::RBracket
        | Token::Placeholder(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{plan, RewriteRules, Tiebreak};
    use super::*;

    fn or_chain(terms: usize) -> String {
        let mut sql = String::from("SELECT * FROM entries WHERE id = 0");
        for i in 1..terms {
            sql.push_str(&format!(" OR id = {i}"));
        }
        sql.push_str(" ORDER BY title");
        sql
    }

    fn rules() -> RewriteRules {
        RewriteRules {
            default_id_column: "id".into(),
            ..RewriteRules::default()
        }
    }

    #[test]
    fn literals_names_and_lists_are_not_operators() {
        let sql = "SELECT a, 'x', 1, $1 FROM t WHERE b IN (1, 2, 3) AND c = 'y'";
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize()
            .expect("tokens");
        // IN, AND, =
        assert_eq!(tokens.iter().filter(|t| is_operator(t)).count(), 3);
    }

    #[test]
    fn a_long_operator_chain_is_planned_on_a_large_stack() {
        // Run on a small stack like a tokio worker's: inline planning of
        // this chain would overflow it.
        let sql = or_chain(1500);
        let outcome = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || plan(&sql, &rules()).map(|p| p.tiebreak))
            .expect("thread")
            .join()
            .expect("no overflow");
        assert_eq!(outcome, Ok(Tiebreak::Appended));
    }

    #[test]
    fn a_chain_beyond_the_limit_is_too_large() {
        let sql = or_chain(MAX_OPERATORS);
        assert_eq!(plan(&sql, &rules()).err(), Some(SkipReason::TooLarge));
    }
}
