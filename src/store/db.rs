//! The little both backends must do, so that every store operation is
//! written once ([`super::ops`], [`super::queries`]) and runs on SQLite and
//! PostgreSQL alike.
//!
//! SQL is written with PostgreSQL's `$1` placeholders and portable syntax
//! (`INSERT … ON CONFLICT … DO UPDATE`, `RETURNING`, `CASE` instead of
//! `GREATEST`); the SQLite backend turns `$1` into `?1`. Every integer
//! column is a 64-bit integer on both, every number read back an `i64`.

use super::error::StoreError;

/// Which database a [`Db`] talks to, for the few statements that differ
/// (DDL, locking).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// A statement parameter. Typed even when NULL, because PostgreSQL needs
/// the type of every parameter it is sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Param<'a> {
    /// BIGINT / INTEGER.
    Int(Option<i64>),
    /// TEXT.
    Text(Option<&'a str>),
    /// DOUBLE PRECISION / REAL.
    Real(Option<f64>),
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::Int(Some(v))
    }
}

impl From<Option<i64>> for Param<'_> {
    fn from(v: Option<i64>) -> Self {
        Param::Int(v)
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(Some(v))
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Param::Text(v)
    }
}

impl From<Option<f64>> for Param<'_> {
    fn from(v: Option<f64>) -> Self {
        Param::Real(v)
    }
}

impl From<f64> for Param<'_> {
    fn from(v: f64) -> Self {
        Param::Real(Some(v))
    }
}

/// A value read back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// NULL.
    Null,
    /// Any integer (booleans are stored as 0/1).
    Int(i64),
    /// A float.
    Real(f64),
    /// Text.
    Text(String),
}

/// One result row, copied out of the driver.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DbRow(pub Vec<Value>);

impl DbRow {
    fn at(&self, i: usize) -> Result<&Value, StoreError> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Corrupt(format!("result column {i} missing")))
    }

    /// Integer column `i`, NULL as `None`.
    pub(crate) fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            Value::Real(v) => Ok(Some(*v as i64)),
            Value::Text(t) => t
                .parse()
                .map(Some)
                .map_err(|_| StoreError::Corrupt(format!("column {i}: {t:?} is not an integer"))),
        }
    }

    /// Integer column `i`; NULL is an error.
    pub(crate) fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_int(i)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {i} is NULL")))
    }

    /// A non-negative count in column `i` (NULL and negatives read as 0).
    pub(crate) fn count(&self, i: usize) -> Result<u64, StoreError> {
        Ok(self.opt_int(i)?.unwrap_or(0).max(0) as u64)
    }

    /// Float column `i`, NULL as 0.
    pub(crate) fn real(&self, i: usize) -> Result<f64, StoreError> {
        match self.at(i)? {
            Value::Null => Ok(0.0),
            Value::Int(v) => Ok(*v as f64),
            Value::Real(v) => Ok(*v),
            Value::Text(t) => t
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("column {i}: {t:?} is not a number"))),
        }
    }

    /// Float column `i`, NULL as `None`.
    pub(crate) fn opt_real(&self, i: usize) -> Result<Option<f64>, StoreError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            _ => self.real(i).map(Some),
        }
    }

    /// Text column `i`, NULL as `None`.
    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(t) => Ok(Some(t.clone())),
            Value::Int(v) => Ok(Some(v.to_string())),
            Value::Real(v) => Ok(Some(v.to_string())),
        }
    }

    /// Text column `i`; NULL reads as empty.
    pub(crate) fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.opt_text(i)?.unwrap_or_default())
    }

    /// Label column `i`, read by `parse` (such as [`crate::diff::RowOrder::parse`]);
    /// a label `parse` does not know is a corrupt row.
    pub(crate) fn label<T>(
        &self,
        i: usize,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, StoreError> {
        let text = self.text(i)?;
        parse(&text)
            .ok_or_else(|| StoreError::Corrupt(format!("column {i}: unknown label {text:?}")))
    }
}

/// A connection, as the shared store operations use it. Implemented by
/// each backend; SQLite's futures complete at once (they run on the
/// store's own thread), PostgreSQL's really wait.
pub(crate) trait Db {
    /// Which database this is.
    fn dialect(&self) -> Dialect;

    /// Runs several statements without parameters (DDL).
    async fn batch(&mut self, sql: &str) -> Result<(), StoreError>;

    /// Runs one statement; returns the rows it changed.
    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError>;

    /// Runs one statement and returns its rows.
    async fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<DbRow>, StoreError>;

    /// Starts a write transaction (SQLite takes the write lock at once, so
    /// two writers cannot deadlock on a lock upgrade).
    async fn begin(&mut self) -> Result<(), StoreError> {
        match self.dialect() {
            Dialect::Sqlite => self.batch("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.batch("BEGIN").await,
        }
    }

    /// Commits.
    async fn commit(&mut self) -> Result<(), StoreError> {
        self.batch("COMMIT").await
    }

    /// Rolls back, ignoring errors (the connection may be gone).
    async fn rollback(&mut self) {
        let _ = self.batch("ROLLBACK").await;
    }
}

/// `$1` → `?1`: SQLite's numbered parameters. Only placeholders contain
/// `$` in the store's SQL.
pub(crate) fn sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// The single row a statement must return.
pub(crate) fn one(rows: Vec<DbRow>) -> Result<DbRow, StoreError> {
    rows.into_iter()
        .next()
        .ok_or_else(|| StoreError::Corrupt("a statement returned no row".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered_question_marks() {
        assert_eq!(
            sqlite_placeholders("SELECT $1, $12 WHERE a = $2"),
            "SELECT ?1, ?12 WHERE a = ?2"
        );
    }

    #[test]
    fn rows_convert_leniently_but_never_panic() {
        let row = DbRow(vec![Value::Int(3), Value::Null, Value::Text("x".into())]);
        assert_eq!(row.int(0).ok(), Some(3));
        assert_eq!(row.opt_int(1).ok(), Some(None));
        assert!(row.int(2).is_err());
        assert!(row.int(9).is_err());
        assert_eq!(row.count(1).ok(), Some(0));
    }
}
