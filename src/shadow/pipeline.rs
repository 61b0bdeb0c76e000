//! Writing one sample's transaction into a pipeline.
//!
//! The bytes of a transaction (BEGIN, the settings, the sides, the unlock,
//! COMMIT; see [`super::run`]) are appended to an output buffer, which may
//! already hold other transactions of the same batch; the caller adds the
//! Sync. What is written is remembered in a [`Written`], for reading the
//! replies and for cleaning up the statement cache after a failure.

use super::conn::{ConnError, ShadowConn};
use super::run::RunSpec;
use super::statements::{statement_name, Prepared, StatementCache};
use crate::capture::tracker::{Sample, SessionSettings};
use bytes::BytesMut;
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;

/// One query and the search_path it runs under.
#[derive(Debug, Clone, Copy)]
pub(super) struct Side<'a> {
    pub sql: &'a str,
    pub search_path: &'a str,
}

/// What a step of the pipeline is, for reading its replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// BEGIN or COMMIT: only its error matters.
    Control,
    /// A statement between or after the sides whose first value is the
    /// server's clock: the sides are timed by the server, because with a
    /// single Sync their replies reach the worker all at once.
    Mark,
    /// The settings statement: the snapshot's xmin, then the clock.
    Settings,
    /// Side `n` (0 = old, 1 = new).
    Query(usize),
}

/// Statements one transaction may need prepared: BEGIN, settings, the
/// search_path switch, unlock, COMMIT and two sides.
pub(super) const STATEMENTS_PER_TRANSACTION: usize = 8;

/// A transaction written into the pipeline.
#[derive(Debug)]
pub(super) struct Written {
    /// Its steps, in order.
    pub steps: Vec<Step>,
    /// Per step, the statement it binds (`None`: parsed unnamed).
    pub used: Vec<Option<Prepared>>,
    /// Number of sides.
    pub sides: usize,
}

impl Written {
    /// Whether it parses a statement: a later transaction of the same
    /// write must not bind that statement, because this transaction may
    /// fail before the server gets to the Parse.
    pub fn parses(&self) -> bool {
        self.used.iter().any(|p| p.is_none_or(|p| p.parse))
    }

    /// Statements that may not exist on the server after step `failed`
    /// failed: the failing step's own (a plan that no longer fits the
    /// relation, say) and every one first parsed after it (the server
    /// skipped those Parses).
    pub fn doubtful_after(&self, failed: usize) -> impl Iterator<Item = u32> + '_ {
        self.used
            .iter()
            .enumerate()
            .skip(failed)
            .filter_map(move |(i, p)| p.filter(|p| i == failed || p.parse))
            .map(|p| p.id)
    }

    /// Statements this transaction was to parse, when it never ran (an
    /// earlier transaction of the same write left the connection in a
    /// failed transaction, so the server refused every message up to the
    /// Sync).
    pub fn unparsed(&self) -> impl Iterator<Item = u32> + '_ {
        self.used.iter().flatten().filter(|p| p.parse).map(|p| p.id)
    }
}

/// Appends the transaction of `sample` over `sides` to `out` (without the
/// Sync).
pub(super) fn write_transaction(
    conn: &mut ShadowConn,
    out: &mut BytesMut,
    sample: &Sample,
    spec: &RunSpec<'_>,
    sides: &[Side<'_>],
) -> Result<Written, ConnError> {
    let mut steps = Vec::with_capacity(4 + 2 * sides.len());
    let timeout = spec.statement_timeout.as_millis().max(1).to_string();
    if !conn.statements.has_room(STATEMENTS_PER_TRANSACTION) {
        // Start the cache over rather than grow it.
        for id in conn.statements.drain() {
            frontend::close(b'S', &statement_name(id), out).map_err(protocol_error)?;
        }
    }
    let conn_settings = &conn.settings;
    let mut pipe = Pipeline {
        out,
        cache: &mut conn.statements,
        used: Vec::with_capacity(steps.capacity()),
    };
    match pipe.transaction(sample, sides, conn_settings, &timeout, &mut steps) {
        Ok(()) => Ok(Written {
            steps,
            used: pipe.used,
            sides: sides.len(),
        }),
        Err(e) => {
            // Nothing of it is sent: the names it was to parse do not
            // exist on the server.
            for p in pipe.used.iter().flatten().filter(|p| p.parse) {
                pipe.cache.forget(p.id);
            }
            Err(e)
        }
    }
}

pub(super) fn protocol_error(e: std::io::Error) -> ConnError {
    ConnError::Protocol(e.to_string())
}

/// The pipeline being built: the bytes, and which prepared statement each
/// step uses.
struct Pipeline<'c> {
    out: &'c mut BytesMut,
    cache: &'c mut StatementCache,
    /// Per step, the statement it binds (`None`: parsed unnamed).
    used: Vec<Option<Prepared>>,
}

impl Pipeline<'_> {
    /// The statements of one transaction, each step noted in `steps`.
    fn transaction(
        &mut self,
        sample: &Sample,
        sides: &[Side<'_>],
        conn_settings: &SessionSettings,
        timeout: &str,
        steps: &mut Vec<Step>,
    ) -> Result<(), ConnError> {
        self.control("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", &[])?;
        steps.push(Step::Control);
        for (i, side) in sides.iter().enumerate() {
            if i == 0 {
                let mut names = vec![("statement_timeout", timeout)];
                names.extend(sample.settings.changes_from(conn_settings));
                names.push(("search_path", side.search_path));
                self.settings(&names)?;
                steps.push(Step::Settings);
            } else {
                self.control(
                    "SELECT extract(epoch FROM clock_timestamp())::text, set_config('search_path', $1, true)",
                    &[side.search_path],
                )?;
                steps.push(Step::Mark);
            }
            self.query(sample, side)?;
            steps.push(Step::Query(i));
        }
        self.control(
            "SELECT extract(epoch FROM clock_timestamp())::text, pg_advisory_unlock_all()",
            &[],
        )?;
        steps.push(Step::Mark);
        self.control("COMMIT", &[])?;
        steps.push(Step::Control);
        Ok(())
    }

    /// Parse (first use on this connection only) and the statement's name
    /// for Bind: `""` (unnamed) when the cache has no room.
    fn statement(
        &mut self,
        search_path: &str,
        sql: &str,
        types: &[u32],
    ) -> Result<String, ConnError> {
        let prepared = self.cache.prepare(search_path, sql, types);
        let name = prepared.map(Prepared::name).unwrap_or_default();
        if prepared.is_none_or(|p| p.parse) {
            frontend::parse(&name, sql, types.iter().copied(), self.out).map_err(protocol_error)?;
        }
        self.used.push(prepared);
        Ok(name)
    }

    /// Bind/Execute of a statement of pgshadow's own, with text parameters
    /// and text results.
    fn control(&mut self, sql: &str, params: &[&str]) -> Result<(), ConnError> {
        // pgshadow's own statements name only built-in functions.
        let name = self.statement("", sql, &[])?;
        frontend::bind(
            "",
            &name,
            std::iter::empty::<i16>(),
            params.iter(),
            |value, buf| {
                buf.extend_from_slice(value.as_bytes());
                Ok(IsNull::No)
            },
            std::iter::empty::<i16>(),
            self.out,
        )
        .map_err(bind_error)?;
        frontend::execute("", 0, self.out).map_err(protocol_error)
    }

    /// The statement that takes the snapshot, reads its xmin and the clock,
    /// and applies the settings (`set_config(name, value, true)` each, as
    /// bound parameters).
    fn settings(&mut self, settings: &[(&str, &str)]) -> Result<(), ConnError> {
        let mut sql = String::from(
            "SELECT txid_snapshot_xmin(txid_current_snapshot())::text, \
             extract(epoch FROM clock_timestamp())::text",
        );
        for i in 0..settings.len() {
            sql.push_str(&format!(
                ", set_config(${}, ${}, true)",
                2 * i + 1,
                2 * i + 2
            ));
        }
        let params: Vec<&str> = settings.iter().flat_map(|(k, v)| [*k, *v]).collect();
        self.control(&sql, &params)
    }

    /// Bind/Describe/Execute of one side's query, with the client's
    /// parameters replayed byte for byte and every result column as text.
    fn query(&mut self, sample: &Sample, side: &Side<'_>) -> Result<(), ConnError> {
        let name = self.statement(side.search_path, side.sql, &sample.param_types)?;
        frontend::bind(
            "",
            &name,
            sample.param_formats.iter().copied(),
            sample.params.iter(),
            |value, buf| match value {
                Some(bytes) => {
                    buf.extend_from_slice(bytes);
                    Ok(IsNull::No)
                }
                None => Ok(IsNull::Yes),
            },
            [0i16],
            self.out,
        )
        .map_err(bind_error)?;
        frontend::describe(b'P', "", self.out).map_err(protocol_error)?;
        frontend::execute("", 0, self.out).map_err(protocol_error)
    }
}

fn bind_error(e: frontend::BindError) -> ConnError {
    let why = match e {
        frontend::BindError::Conversion(e) => e.to_string(),
        frontend::BindError::Serialization(e) => e.to_string(),
    };
    ConnError::Protocol(format!("cannot encode parameters: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(id: u32, parse: bool) -> Option<Prepared> {
        Some(Prepared { id, parse })
    }

    #[test]
    fn after_a_failure_the_failing_statement_and_later_parses_are_doubtful() {
        let written = Written {
            steps: vec![Step::Control, Step::Settings, Step::Query(0), Step::Mark],
            used: vec![
                prepared(1, false),
                prepared(2, true),
                prepared(3, false),
                prepared(4, true),
            ],
            sides: 1,
        };
        assert!(written.parses());
        let doubtful: Vec<u32> = written.doubtful_after(2).collect();
        assert_eq!(
            doubtful,
            [3, 4],
            "the failing step's statement and the parse after it"
        );
        let unparsed: Vec<u32> = written.unparsed().collect();
        assert_eq!(unparsed, [2, 4], "a refused transaction parsed nothing");
    }

    #[test]
    fn a_transaction_of_prepared_statements_parses_nothing() {
        let mut written = Written {
            steps: vec![Step::Control, Step::Control],
            used: vec![prepared(1, false), prepared(2, false)],
            sides: 0,
        };
        assert!(!written.parses());
        assert_eq!(written.unparsed().count(), 0);
        written.used.push(None);
        assert!(
            written.parses(),
            "an unnamed statement is parsed every time"
        );
    }
}
