//! Running one sample: old query and new query in one snapshot.
//!
//! A sample is one pipeline of extended-protocol statements with a single
//! Sync, written to the connection in one go:
//!
//! ```text
//! BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY
//! SELECT txid_snapshot_xmin(txid_current_snapshot())::text,   -- takes the snapshot
//!        <clock>,                  -- extract(epoch FROM clock_timestamp()): times the sides
//!        set_config('statement_timeout', $1, true),
//!        set_config('TimeZone', $2, true), …   -- the client's settings this connection lacks
//!        set_config('search_path', <old>, true)
//! <old query>            (the client's parameters, byte for byte; text results)
//! SELECT <clock>, set_config('search_path', <new>, true)
//! <new query>
//! SELECT <clock>, pg_advisory_unlock_all()
//! COMMIT
//! Sync
//! ```
//!
//! Each statement is prepared once per connection and afterwards only bound
//! and executed ([`super::statements`]), so a busy fingerprint's queries
//! are not parsed and planned again for every sample.
//!
//! One Sync means one flush by the server and one wake-up of the worker for
//! the whole sample (bar results larger than the server's send buffer):
//! comparing must cost the database little more than the statements
//! themselves. Settings go through `set_config(…, true)` (the same as
//! `SET LOCAL`) as bound parameters, so no value is ever quoted into SQL,
//! and only where the client's value differs from the connection's own
//! (as the server reported it): changing a reported setting costs the
//! server a ParameterStatus message on the way in and another at COMMIT.
//!
//! In a REPEATABLE READ transaction every statement sees the snapshot taken
//! by the first one, so concurrent writes cannot make the two runs differ.
//! READ ONLY makes the database itself refuse writes. The settings are
//! transaction-local and vanish at COMMIT; `pg_advisory_unlock_all()`
//! releases any session-level advisory lock a function the statement called
//! may have taken, so the connection goes back to the pool holding nothing.
//! (Every [`DISCARD_EVERY`] runs the connection is also reset with
//! `DISCARD ALL`, which bounds any other session state a user function
//! might leave behind.)
//!
//! An error skips the rest of the pipeline up to the Sync: when the old
//! query fails the new one never runs (the executor then runs it alone),
//! and the transaction is rolled back before the connection is reused.

use super::conn::{server_error, ConnError, Reply, ShadowConn};
use super::statements::{statement_name, Prepared, StatementCache, CACHED_PLAN_CHANGED};
use crate::capture::tracker::Sample;
use crate::diff::result::{Column, ResultBuilder, ResultSet};
use crate::diff::CompareOptions;
use crate::protocol::error_response::ErrorFields;
use crate::protocol::reader::BodyReader;
use bytes::BytesMut;
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;
use std::time::{Duration, Instant};

/// Runs between two `DISCARD ALL` resets of a shadow connection.
pub const DISCARD_EVERY: u64 = 1000;

/// SQLSTATE `in_failed_sql_transaction`: what a statement skipped after an
/// earlier failure in the same transaction reports.
const IN_FAILED_TRANSACTION: &str = "25P02";

/// Whether both sides share one snapshot. `Separate` exists to show what
/// the shared snapshot buys (tests and demos); never use it otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshot {
    /// Old and new in one REPEATABLE READ transaction.
    Shared,
    /// Old and new in two transactions: concurrent writes between them
    /// show up as (false) mismatches.
    Separate,
}

/// What one side of a sample produced.
#[derive(Debug)]
pub enum SideResult {
    /// The rows.
    Rows(ResultSet),
    /// The server's error.
    Error(ErrorFields),
}

/// Both sides of one run.
#[derive(Debug)]
pub struct RunResult {
    /// The old schema's answer.
    pub old: SideResult,
    /// The new schema's answer.
    pub new: SideResult,
    /// Oldest transaction still running when the snapshot was taken.
    pub snapshot_xmin: Option<u64>,
    /// Time from sending the old query to its last reply.
    pub old_time: Duration,
    /// Same for the new query.
    pub new_time: Duration,
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    /// The old query, rewritten (tiebreaker).
    pub old_sql: &'a str,
    /// The new query, rewritten (tiebreaker, table map).
    pub new_sql: &'a str,
    /// `search_path` of the old schema, in SET syntax.
    pub old_search_path: &'a str,
    /// `search_path` of the new schema.
    pub new_search_path: &'a str,
    /// Per-statement timeout.
    pub statement_timeout: Duration,
    /// Rows kept per side.
    pub max_rows: usize,
    /// The comparison options, so that rows beyond `max_rows` are digested
    /// under the same rules (ignored columns, numeric scale).
    pub compare: &'a CompareOptions,
    /// Shared or separate snapshots.
    pub snapshot: Snapshot,
}

/// Runs `sample` on `conn`.
pub async fn run(
    conn: &mut ShadowConn,
    sample: &Sample,
    spec: &RunSpec<'_>,
) -> Result<RunResult, ConnError> {
    let first = run_once(conn, sample, spec).await?;
    // A prepared statement whose relation changed its columns (the new
    // schema is being migrated) fails once with "cached plan must not
    // change result type"; it has been closed, so run afresh.
    let stale =
        |side: &SideResult| matches!(side, SideResult::Error(e) if e.code == CACHED_PLAN_CHANGED);
    if stale(&first.old) || stale(&first.new) {
        return run_once(conn, sample, spec).await;
    }
    Ok(first)
}

async fn run_once(
    conn: &mut ShadowConn,
    sample: &Sample,
    spec: &RunSpec<'_>,
) -> Result<RunResult, ConnError> {
    let old = Side {
        sql: spec.old_sql,
        search_path: spec.old_search_path,
    };
    let new = Side {
        sql: spec.new_sql,
        search_path: spec.new_search_path,
    };
    match spec.snapshot {
        Snapshot::Shared => {
            let r = run_transaction(conn, sample, spec, &[old, new]).await?;
            let mut sides = r.sides.into_iter();
            Ok(RunResult {
                old: sides.next().unwrap_or_else(|| not_run(&r.failure)),
                new: sides.next().unwrap_or_else(|| not_run(&r.failure)),
                snapshot_xmin: r.snapshot_xmin,
                old_time: r.old_time,
                new_time: r.new_time,
            })
        }
        Snapshot::Separate => {
            let mut first = run_transaction(conn, sample, spec, &[old]).await?;
            let mut second = run_transaction(conn, sample, spec, &[new]).await?;
            Ok(RunResult {
                old: first.sides.pop().unwrap_or_else(|| not_run(&first.failure)),
                new: second
                    .sides
                    .pop()
                    .unwrap_or_else(|| not_run(&second.failure)),
                snapshot_xmin: first.snapshot_xmin,
                old_time: first.old_time,
                new_time: second.old_time,
            })
        }
    }
}

/// One query and the search_path it runs under.
#[derive(Clone, Copy)]
struct Side<'a> {
    sql: &'a str,
    search_path: &'a str,
}

/// What one transaction produced.
struct TransactionResult {
    /// The sides that ran, in order; a side missing at the end never ran
    /// because something before it failed.
    sides: Vec<SideResult>,
    /// The error that stopped the pipeline before a side ran, if any.
    failure: Option<ErrorFields>,
    snapshot_xmin: Option<u64>,
    /// Time of the first side, from the pipeline's start to its last row.
    old_time: Duration,
    /// Time of the second side, from the first side's end to its last row.
    new_time: Duration,
}

/// The result of a side that never ran: the error that stopped the
/// pipeline before it, or "in failed transaction".
fn not_run(failure: &Option<ErrorFields>) -> SideResult {
    SideResult::Error(failure.clone().unwrap_or_else(|| ErrorFields {
        severity: "ERROR".into(),
        code: IN_FAILED_TRANSACTION.into(),
        message: "not run: an earlier statement of the shadow transaction failed".into(),
    }))
}

/// What a step of the pipeline is, for reading its replies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
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

/// Runs `sides` in one REPEATABLE READ READ ONLY transaction, as one
/// pipeline with a single Sync.
async fn run_transaction(
    conn: &mut ShadowConn,
    sample: &Sample,
    spec: &RunSpec<'_>,
    sides: &[Side<'_>],
) -> Result<TransactionResult, ConnError> {
    let mut steps = Vec::with_capacity(4 + 2 * sides.len());
    let timeout = spec.statement_timeout.as_millis().max(1).to_string();
    let mut out = BytesMut::new();
    if !conn.statements.has_room(4 + 2 * sides.len()) {
        // Start the cache over rather than grow it.
        for id in conn.statements.drain() {
            frontend::close(b'S', &statement_name(id), &mut out).map_err(protocol_error)?;
        }
    }
    let conn_settings = &conn.settings;
    let mut pipe = Pipeline {
        out,
        cache: &mut conn.statements,
        used: Vec::with_capacity(steps.capacity()),
    };
    pipe.control("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", &[])?;
    steps.push(Step::Control);
    for (i, side) in sides.iter().enumerate() {
        if i == 0 {
            let mut names = vec![("statement_timeout", timeout.as_str())];
            names.extend(sample.settings.changes_from(conn_settings));
            names.push(("search_path", side.search_path));
            pipe.settings(&names)?;
            steps.push(Step::Settings);
        } else {
            pipe.control(
                "SELECT extract(epoch FROM clock_timestamp())::text, set_config('search_path', $1, true)",
                &[side.search_path],
            )?;
            steps.push(Step::Mark);
        }
        pipe.query(sample, side)?;
        steps.push(Step::Query(i));
    }
    pipe.control(
        "SELECT extract(epoch FROM clock_timestamp())::text, pg_advisory_unlock_all()",
        &[],
    )?;
    steps.push(Step::Mark);
    pipe.control("COMMIT", &[])?;
    steps.push(Step::Control);
    let Pipeline { mut out, used, .. } = pipe;
    frontend::sync(&mut out);
    conn.runs += 1;

    let started = Instant::now();
    conn.send(&out).await?;
    let mut result = TransactionResult {
        sides: Vec::with_capacity(sides.len()),
        failure: None,
        snapshot_xmin: None,
        old_time: Duration::ZERO,
        new_time: Duration::ZERO,
    };
    let mut side_started = started;
    // Server clock readings around the sides: side i ran between mark i
    // and mark i + 1.
    let mut marks: Vec<Option<f64>> = Vec::with_capacity(sides.len() + 1);
    let mut failed_step = None;
    for (index, step) in steps.into_iter().enumerate() {
        match step {
            Step::Query(i) => {
                match read_query(conn, spec).await? {
                    Ok(rows) => result.sides.push(SideResult::Rows(rows)),
                    Err(e) => {
                        result.sides.push(SideResult::Error(e));
                        failed_step = Some(index);
                        break;
                    }
                }
                let elapsed = side_started.elapsed();
                if i == 0 {
                    result.old_time = elapsed;
                } else {
                    result.new_time = elapsed;
                }
                side_started = Instant::now();
            }
            Step::Settings | Step::Mark | Step::Control => match read_control(conn).await? {
                Ok(row) => match step {
                    Step::Settings => {
                        result.snapshot_xmin = value_at(&row, 0);
                        marks.push(value_at(&row, 1));
                    }
                    Step::Mark => marks.push(value_at(&row, 0)),
                    _ => {}
                },
                Err(e) => {
                    // BEGIN, a setting, the unlock or COMMIT failed: that
                    // is the shadow's problem, not the schemas'. A side
                    // that already ran keeps its result.
                    result.failure = Some(e);
                    failed_step = Some(index);
                    break;
                }
            },
        }
    }
    for (i, pair) in marks.windows(2).enumerate() {
        if let [Some(start), Some(end)] = *pair {
            let server_time = Duration::try_from_secs_f64(end - start).unwrap_or_default();
            match i {
                0 => result.old_time = server_time,
                1 => result.new_time = server_time,
                _ => {}
            }
        }
    }
    let status = read_until_ready(conn).await?;
    let mut cleanup = BytesMut::new();
    let mut replies = 0;
    if status != b'I' {
        // Something failed inside the transaction: roll it back so the
        // connection can be reused.
        frontend::query("ROLLBACK", &mut cleanup).map_err(protocol_error)?;
        replies += 1;
    }
    if let Some(failed) = failed_step {
        // The failing step's statement (a plan that no longer fits the
        // relation, say) and every statement first parsed after it (the
        // server skipped those Parses) are closed and forgotten.
        let doubtful: Vec<u32> = used
            .iter()
            .enumerate()
            .skip(failed)
            .filter_map(|(i, p)| p.filter(|p| i == failed || p.parse).map(|p| p.id))
            .collect();
        for &id in &doubtful {
            conn.statements.forget(id);
            frontend::close(b'S', &statement_name(id), &mut cleanup).map_err(protocol_error)?;
        }
        if !doubtful.is_empty() {
            frontend::sync(&mut cleanup);
            replies += 1;
        }
    }
    if replies > 0 {
        conn.send(&cleanup).await?;
        for _ in 0..replies {
            if read_until_ready(conn).await? != b'I' {
                conn.poisoned = true;
            }
        }
    }
    if result.failure.is_some() && result.sides.len() == sides.len() {
        // Both sides ran but the unlock or COMMIT failed: the results
        // stand, the connection is not trusted any more.
        conn.poisoned = true;
    }
    if conn.runs % DISCARD_EVERY == 0 && !conn.poisoned {
        let mut discard = BytesMut::new();
        frontend::query("DISCARD ALL", &mut discard).map_err(protocol_error)?;
        conn.send(&discard).await?;
        // DISCARD ALL deallocates every prepared statement too.
        conn.statements.clear();
        if read_until_ready(conn).await? != b'I' {
            conn.poisoned = true;
        }
    }
    Ok(result)
}

fn protocol_error(e: std::io::Error) -> ConnError {
    ConnError::Protocol(e.to_string())
}

/// Parse/Bind/Execute of a statement of pgshadow's own, with text
/// parameters and text results.
/// The pipeline being built: the bytes, and which prepared statement each
/// step uses.
struct Pipeline<'c> {
    out: BytesMut,
    cache: &'c mut StatementCache,
    /// Per step, the statement it binds (`None`: parsed unnamed).
    used: Vec<Option<Prepared>>,
}

impl Pipeline<'_> {
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
            frontend::parse(&name, sql, types.iter().copied(), &mut self.out)
                .map_err(protocol_error)?;
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
            &mut self.out,
        )
        .map_err(bind_error)?;
        frontend::execute("", 0, &mut self.out).map_err(protocol_error)
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
            &mut self.out,
        )
        .map_err(bind_error)?;
        frontend::describe(b'P', "", &mut self.out).map_err(protocol_error)?;
        frontend::execute("", 0, &mut self.out).map_err(protocol_error)
    }
}

fn bind_error(e: frontend::BindError) -> ConnError {
    let why = match e {
        frontend::BindError::Conversion(e) => e.to_string(),
        frontend::BindError::Serialization(e) => e.to_string(),
    };
    ConnError::Protocol(format!("cannot encode parameters: {why}"))
}

/// Reads the replies of one control statement up to its completion: the
/// values of its last row, or its error.
async fn read_control(
    conn: &mut ShadowConn,
) -> Result<Result<Vec<Option<bytes::Bytes>>, ErrorFields>, ConnError> {
    let mut row = Vec::new();
    loop {
        let Reply { tag, body } = conn.read_reply().await?;
        match tag {
            b'D' => row = data_row(&body)?,
            b'C' | b'I' => return Ok(Ok(row)),
            b'E' => return Ok(Err(server_error(&body))),
            b'Z' => return Err(out_of_step(conn)),
            _ => {} // ParseComplete, BindComplete
        }
    }
}

/// Reads the replies of one side's query up to its completion.
async fn read_query(
    conn: &mut ShadowConn,
    spec: &RunSpec<'_>,
) -> Result<Result<ResultSet, ErrorFields>, ConnError> {
    let mut rows = ResultBuilder::normalised(spec.max_rows, spec.compare);
    loop {
        let Reply { tag, body } = conn.read_reply().await?;
        match tag {
            b'T' => rows.columns(row_description(&body)?),
            b'D' => rows.push(data_row(&body)?),
            b'C' | b'I' => return Ok(Ok(rows.finish())),
            b'E' => return Ok(Err(server_error(&body))),
            b'Z' => return Err(out_of_step(conn)),
            _ => {} // ParseComplete, BindComplete, NoData
        }
    }
}

/// Reads up to ReadyForQuery; returns its transaction status.
async fn read_until_ready(conn: &mut ShadowConn) -> Result<u8, ConnError> {
    loop {
        let Reply { tag, body } = conn.read_reply().await?;
        if tag == b'Z' {
            return Ok(body.first().copied().unwrap_or(0));
        }
    }
}

/// The server ended the pipeline earlier than the replies said it would.
fn out_of_step(conn: &mut ShadowConn) -> ConnError {
    conn.poisoned = true;
    ConnError::Protocol("shadow connection out of step: ReadyForQuery before the reply".into())
}

/// The `index`th value of a control statement's row, parsed.
fn value_at<T: std::str::FromStr>(row: &[Option<bytes::Bytes>], index: usize) -> Option<T> {
    let value = row.get(index)?.as_ref()?;
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// Decodes RowDescription: names and type OIDs.
fn row_description(body: &[u8]) -> Result<Vec<Column>, ConnError> {
    let bad = |e: crate::protocol::reader::DecodeError| ConnError::Protocol(e.to_string());
    let mut r = BodyReader::new(body);
    let n = r.count16("field count").map_err(bad)?;
    let mut columns = Vec::with_capacity(n);
    for _ in 0..n {
        let name = String::from_utf8_lossy(r.cstr("field name").map_err(bad)?).into_owned();
        r.bytes(6, "table oid and column").map_err(bad)?;
        let type_oid = r.i32("type oid").map_err(bad)? as u32;
        r.bytes(8, "type size, modifier and format").map_err(bad)?;
        columns.push(Column { name, type_oid });
    }
    Ok(columns)
}

/// Decodes DataRow into values that share the reply's buffer.
fn data_row(body: &bytes::Bytes) -> Result<Vec<Option<bytes::Bytes>>, ConnError> {
    let bad = |e: crate::protocol::reader::DecodeError| ConnError::Protocol(e.to_string());
    let mut r = BodyReader::new(body);
    let n = r.count16("column count").map_err(bad)?;
    let mut values = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.i32("value length").map_err(bad)?;
        if len < 0 {
            values.push(None);
        } else {
            let start = body.len() - r.remaining().len();
            r.bytes(len as usize, "value").map_err(bad)?;
            values.push(Some(body.slice(start..start + len as usize)));
        }
    }
    Ok(values)
}
