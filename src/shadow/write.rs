//! Writing a batch's transaction into a pipeline.
//!
//! The bytes of one transaction (BEGIN, each sample's settings and sides,
//! the unlock, ROLLBACK; see [`super::transaction`]) are appended to an output
//! buffer; the caller adds the Sync. What is written is remembered in a
//! [`Written`], for reading the replies and for cleaning up the statement
//! cache after a failure.

use super::conn::{protocol_error, ConnError};
use super::statements::{statement_name, Prepared, StatementCache};
use super::transaction::{SampleSides, SideQuery, DETERMINISM};
use crate::capture::tracker::{Sample, SessionSettings};
use bytes::BytesMut;
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;
use std::time::Duration;

/// A transaction takes no more samples once it holds this many bytes (a
/// single sample may be larger). The whole write is sent before any reply
/// is read, so it must fit in the kernel's socket buffers, which hold far
/// more than this on any system.
pub const MAX_WRITE_BYTES: usize = 32 * 1024;

/// What a step of the pipeline is, for reading its replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// BEGIN or ROLLBACK: only its error matters.
    Control,
    /// A statement before a side (setting its search_path) or after the
    /// last one, whose first value is the server's clock: the sides are
    /// timed by the server, because with a single Sync their replies reach
    /// the worker all at once.
    Mark,
    /// The transaction's first statement: the snapshot's xmin, then the
    /// clock; it applies the settings and the first side's search_path.
    Settings,
    /// Side `n` (0 = old, 1 = new) of its run.
    Query(usize),
}

/// Statements the first run of a transaction may need prepared: BEGIN,
/// settings, the search_path switch under either search_path, unlock,
/// ROLLBACK and two sides.
pub(super) const STATEMENTS_PER_TRANSACTION: usize = 8;

/// A transaction written into the pipeline.
#[derive(Debug)]
pub(super) struct Written {
    /// Its steps, in order, each with the index of the entry (sample) it
    /// belongs to (BEGIN to the first, the unlock and ROLLBACK to the last).
    pub steps: Vec<(usize, Step)>,
    /// Per step, the statement it binds (`None`: parsed unnamed).
    pub used: Vec<Option<Prepared>>,
    /// How many of the entries offered it holds (a prefix, at least one).
    pub entries: usize,
}

impl Written {
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
}

/// Appends one transaction to `out` (without the Sync): the first of
/// `entries` and as many of the following as may share it (same settings,
/// until [`MAX_WRITE_BYTES`]). `cache` is the connection's statement
/// cache and `conn_settings` the settings the connection has in effect;
/// no statement's `statement_timeout` exceeds `time_left` (of the
/// transaction budget).
/// An entry after the first whose parameters cannot be encoded ends the
/// transaction before it (it then fails alone as the first of the next).
pub(super) fn write_transaction(
    cache: &mut StatementCache,
    conn_settings: &SessionSettings,
    out: &mut BytesMut,
    entries: &[SampleSides<'_>],
    time_left: Duration,
) -> Result<Written, ConnError> {
    let Some(first) = entries.first() else {
        return Err(ConnError::Protocol("empty shadow transaction".into()));
    };
    if !cache.has_room(STATEMENTS_PER_TRANSACTION) {
        // Start the cache over rather than grow it.
        for id in cache.drain() {
            frontend::close(b'S', &statement_name(id), out).map_err(protocol_error)?;
        }
    }
    let mut pipe = Pipeline {
        out,
        cache,
        search_path: "",
        steps: Vec::with_capacity(8 + 4 * entries.len()),
        used: Vec::with_capacity(8 + 4 * entries.len()),
        time_left,
    };
    let first_run = pipe
        .begin()
        .and_then(|()| pipe.entry(0, first, Some(conn_settings)));
    if let Err(e) = first_run {
        // Nothing of it is sent: the names it was to parse do not exist
        // on the server.
        pipe.forget_parsed_from(0);
        return Err(e);
    }
    let mut taken = 1;
    for (index, entry) in entries.iter().enumerate().skip(1) {
        if pipe.out.len() >= MAX_WRITE_BYTES || !first.shares_transaction_with(entry) {
            break;
        }
        let mark = (pipe.out.len(), pipe.steps.len(), pipe.search_path);
        if pipe.entry(index, entry, None).is_err() {
            pipe.out.truncate(mark.0);
            pipe.steps.truncate(mark.1);
            pipe.forget_parsed_from(mark.1);
            pipe.used.truncate(mark.1);
            pipe.search_path = mark.2;
            break;
        }
        taken += 1;
    }
    if let Err(e) = pipe.end(taken - 1) {
        pipe.forget_parsed_from(0);
        return Err(e);
    }
    Ok(Written {
        steps: pipe.steps,
        used: pipe.used,
        entries: taken,
    })
}

/// The pipeline being built: the bytes, its steps, and which prepared
/// statement each step uses.
struct Pipeline<'c, 's> {
    out: &'c mut BytesMut,
    cache: &'c mut StatementCache,
    /// The search_path the next statement runs under (`""`: the
    /// connection's own).
    search_path: &'s str,
    steps: Vec<(usize, Step)>,
    /// Per step, the statement it binds (`None`: parsed unnamed).
    used: Vec<Option<Prepared>>,
    /// What is left of the transaction budget: the statement timeout's cap.
    time_left: Duration,
}

impl<'s> Pipeline<'_, 's> {
    fn begin(&mut self) -> Result<(), ConnError> {
        self.control("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", &[])?;
        self.steps.push((0, Step::Control));
        Ok(())
    }

    /// The statements of entry `index`. The transaction's first entry
    /// (`conn_settings` given) takes the snapshot and applies the
    /// settings; every later side only switches the search_path.
    fn entry(
        &mut self,
        index: usize,
        entry: &SampleSides<'s>,
        conn_settings: Option<&SessionSettings>,
    ) -> Result<(), ConnError> {
        for (i, side) in entry.sides.iter().enumerate() {
            match conn_settings {
                Some(conn_settings) if i == 0 => {
                    let timeout = entry.spec.statement_timeout.min(self.time_left);
                    let timeout = timeout.as_millis().max(1).to_string();
                    let lock_timeout = entry.spec.lock_timeout.as_millis().max(1).to_string();
                    let mut names = vec![
                        ("statement_timeout", timeout.as_str()),
                        ("lock_timeout", lock_timeout.as_str()),
                    ];
                    names.extend(DETERMINISM);
                    names.extend(entry.sample.settings.changes_from(conn_settings));
                    names.push(("search_path", side.search_path));
                    self.settings(&names)?;
                    self.steps.push((index, Step::Settings));
                }
                _ => {
                    self.control(
                        "SELECT extract(epoch FROM clock_timestamp())::text, set_config('search_path', $1, true)",
                        &[side.search_path],
                    )?;
                    self.steps.push((index, Step::Mark));
                }
            }
            self.search_path = side.search_path;
            self.query(entry.sample, side)?;
            self.steps.push((index, Step::Query(i)));
        }
        Ok(())
    }

    /// The unlock (with the clock that ends the last side) and ROLLBACK,
    /// both counted to the last entry, `last`. Never COMMIT: what a function
    /// a statement called may have queued for commit (a NOTIFY) is
    /// discarded; session-level advisory locks survive a rollback, hence
    /// the unlock.
    fn end(&mut self, last: usize) -> Result<(), ConnError> {
        self.control(
            "SELECT extract(epoch FROM clock_timestamp())::text, pg_advisory_unlock_all()",
            &[],
        )?;
        self.steps.push((last, Step::Mark));
        self.control("ROLLBACK", &[])?;
        self.steps.push((last, Step::Control));
        Ok(())
    }

    /// Forgets the statements first parsed at or after step `from`: they
    /// are not sent.
    fn forget_parsed_from(&mut self, from: usize) {
        for p in self.used.iter().skip(from).flatten().filter(|p| p.parse) {
            self.cache.forget(p.id);
        }
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
        // Noted before encoding, so that a failure to encode forgets it.
        self.used.push(prepared);
        if prepared.is_none_or(|p| p.parse) {
            frontend::parse(&name, sql, types.iter().copied(), self.out).map_err(protocol_error)?;
        }
        Ok(name)
    }

    /// Bind/Execute of a statement of pgshadow's own, with text parameters
    /// and text results.
    fn control(&mut self, sql: &str, params: &[&str]) -> Result<(), ConnError> {
        // Prepared per search_path in effect when it runs, although it
        // names only built-in functions: PostgreSQL analyses and plans a
        // prepared statement again whenever the search_path differs from
        // the last execution's, and the switch between the sides runs
        // under the old and, for the next sample, the new search_path.
        let path = self.search_path;
        let name = self.statement(path, sql, &[])?;
        bind_text(&name, params, self.out)
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
    fn query(&mut self, sample: &Sample, side: &SideQuery<'_>) -> Result<(), ConnError> {
        let name = self.statement(side.search_path, side.sql, &sample.param_types)?;
        bind_sample(&name, sample, self.out)?;
        frontend::describe(b'P', "", self.out).map_err(protocol_error)?;
        frontend::execute("", 0, self.out).map_err(protocol_error)
    }
}

/// Bind of statement `name` (`""`: the unnamed one) to `sample`'s
/// parameters, replayed byte for byte with the client's format codes,
/// every result column as text.
pub(super) fn bind_sample(
    name: &str,
    sample: &Sample,
    out: &mut BytesMut,
) -> Result<(), ConnError> {
    frontend::bind(
        "",
        name,
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
        out,
    )
    .map_err(bind_error)
}

/// Bind of statement `name` (`""`: the unnamed one) with text parameters
/// and text results, then Execute: how the shadow runs statements of its
/// own.
pub(super) fn bind_text(name: &str, params: &[&str], out: &mut BytesMut) -> Result<(), ConnError> {
    frontend::bind(
        "",
        name,
        std::iter::empty::<i16>(),
        params.iter(),
        |value, buf| {
            buf.extend_from_slice(value.as_bytes());
            Ok(IsNull::No)
        },
        std::iter::empty::<i16>(),
        out,
    )
    .map_err(bind_error)?;
    frontend::execute("", 0, out).map_err(protocol_error)
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
    use super::super::transaction::{both_sides, sides_of, SampleSpec, Snapshot};
    use super::*;
    use crate::capture::fingerprint::Fingerprint;
    use crate::diff::CompareOptions;
    use bytes::Bytes;
    use std::sync::Arc;
    use std::time::Instant;

    /// What is left of the transaction budget in these tests.
    const LEFT: Duration = Duration::from_secs(1);

    fn prepared(id: u32, parse: bool) -> Option<Prepared> {
        Some(Prepared { id, parse })
    }

    fn sample(sql: &str, params: usize, settings: &Arc<SessionSettings>) -> Sample {
        Sample {
            fingerprint: Fingerprint(7),
            sql: Arc::from(sql),
            param_types: Arc::from(vec![0u32; params]),
            param_formats: Vec::new(),
            params: vec![Some(Bytes::from_static(b"1")); params],
            settings: settings.clone(),
            database: Arc::from("db"),
            completed_at: Instant::now(),
        }
    }

    fn spec<'a>(sample: &'a Sample, compare: &'a CompareOptions) -> SampleSpec<'a> {
        SampleSpec {
            old_sql: &sample.sql,
            new_sql: &sample.sql,
            old_search_path: "public",
            new_search_path: "v2",
            statement_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_millis(50),
            max_rows: 10,
            max_bytes: usize::MAX,
            compare,
            snapshot: Snapshot::Shared,
            baseline: false,
            new_first: false,
        }
    }

    /// The runs of `samples` (both sides each).
    fn runs<'a, S: AsRef<[SideQuery<'a>]>>(
        samples: &'a [Sample],
        specs: &'a [SampleSpec<'a>],
        sides: &'a [S],
    ) -> Vec<SampleSides<'a>> {
        samples
            .iter()
            .zip(specs)
            .zip(sides)
            .map(|((sample, spec), sides)| SampleSides {
                sample,
                spec,
                sides: sides.as_ref(),
            })
            .collect()
    }

    #[test]
    fn samples_with_the_same_settings_share_one_transaction() {
        let compare = CompareOptions::default();
        let utc = Arc::new(SessionSettings {
            timezone: Some("UTC".into()),
            ..Default::default()
        });
        let tokyo = Arc::new(SessionSettings {
            timezone: Some("Asia/Tokyo".into()),
            ..Default::default()
        });
        let samples = [
            sample("SELECT $1::int", 1, &utc),
            sample("SELECT $1::int + 1", 1, &utc),
            sample("SELECT $1::int", 1, &Arc::new((*utc).clone())),
            sample("SELECT $1::int", 1, &tokyo),
        ];
        let specs: Vec<SampleSpec<'_>> = samples.iter().map(|s| spec(s, &compare)).collect();
        let sides: Vec<[SideQuery<'_>; 2]> = specs.iter().map(both_sides).collect();
        let runs = runs(&samples, &specs, &sides);
        let mut cache = StatementCache::default();
        let mut out = BytesMut::new();
        let written = write_transaction(
            &mut cache,
            &SessionSettings::default(),
            &mut out,
            &runs,
            LEFT,
        )
        .expect("encodes");
        assert_eq!(written.entries, 3, "the sample in another time zone waits");
        use Step::*;
        let expected = [
            (0, Control),
            (0, Settings),
            (0, Query(0)),
            (0, Mark),
            (0, Query(1)),
            (1, Mark),
            (1, Query(0)),
            (1, Mark),
            (1, Query(1)),
            (2, Mark),
            (2, Query(0)),
            (2, Mark),
            (2, Query(1)),
            (2, Mark),
            (2, Control),
        ];
        assert_eq!(written.steps, expected);
        assert_eq!(written.used.len(), written.steps.len());
        let parsed = written.used.iter().flatten().filter(|p| p.parse).count();
        assert_eq!(
            parsed, 10,
            "BEGIN, settings, the switch under either search_path, unlock, ROLLBACK \
             and two texts under two search_paths, each parsed once"
        );
        let switches: Vec<u32> = written
            .steps
            .iter()
            .zip(&written.used)
            .filter(|((_, step), _)| *step == Step::Mark)
            .filter_map(|(_, p)| p.map(|p| p.id))
            .collect();
        assert_eq!(
            switches.len(),
            6,
            "five switches and the unlock: {switches:?}"
        );
        // Marks 0, 2 and 4 switch to v2 and run under public; 1 and 3 the
        // other way round; 5 is the unlock.
        let (to_v2, to_public) = (switches[0], switches[1]);
        assert_eq!([switches[2], switches[4]], [to_v2, to_v2]);
        assert_eq!(switches[3], to_public);
        assert_ne!(
            to_v2, to_public,
            "the switch is prepared once per search_path it runs under, so PostgreSQL never re-plans it"
        );
    }

    #[test]
    fn every_transaction_switches_off_what_reorders_rows_between_two_runs() {
        let compare = CompareOptions::default();
        let settings = Arc::new(SessionSettings::default());
        let samples = [sample("SELECT 1", 0, &settings)];
        let mut specs: Vec<SampleSpec<'_>> = samples.iter().map(|s| spec(s, &compare)).collect();
        specs[0].baseline = true;
        let sides: Vec<Vec<SideQuery<'_>>> = specs.iter().map(sides_of).collect();
        let runs = runs(&samples, &specs, &sides);
        let mut cache = StatementCache::default();
        let mut out = BytesMut::new();
        let written = write_transaction(
            &mut cache,
            &SessionSettings::default(),
            &mut out,
            &runs,
            LEFT,
        )
        .expect("encodes");
        let text = String::from_utf8_lossy(&out);
        for (name, value) in DETERMINISM {
            assert!(
                text.contains(name) && text.contains(value),
                "{name} = {value}"
            );
        }
        // The A/A baseline: the old query a second time, after the new one.
        let queries: Vec<Step> = written
            .steps
            .iter()
            .map(|(_, step)| *step)
            .filter(|step| matches!(step, Step::Query(_)))
            .collect();
        assert_eq!(queries, [Step::Query(0), Step::Query(1), Step::Query(2)]);
    }

    #[test]
    fn every_transaction_waits_briefly_for_locks_stays_within_its_budget_and_rolls_back() {
        let compare = CompareOptions::default();
        let settings = Arc::new(SessionSettings::default());
        let samples = [sample("SELECT 1", 0, &settings)];
        let specs: Vec<SampleSpec<'_>> = samples.iter().map(|s| spec(s, &compare)).collect();
        let sides: Vec<[SideQuery<'_>; 2]> = specs.iter().map(both_sides).collect();
        let runs = runs(&samples, &specs, &sides);
        let mut cache = StatementCache::default();
        let mut out = BytesMut::new();
        write_transaction(
            &mut cache,
            &SessionSettings::default(),
            &mut out,
            &runs,
            Duration::from_millis(300),
        )
        .expect("encodes");
        let text = String::from_utf8_lossy(&out);
        // Bound parameters: name and value follow each other.
        assert!(text.contains("lock_timeout\0\0\0\x0250"), "{text:?}");
        assert!(
            text.contains("statement_timeout\0\0\0\x03300"),
            "5 s cut to the 300 ms left: {text:?}"
        );
        assert!(text.contains("ROLLBACK"), "{text:?}");
        assert!(!text.contains("COMMIT"), "never COMMIT: {text:?}");
        assert!(text.contains("pg_advisory_unlock_all()"), "{text:?}");
    }

    #[test]
    fn a_later_sample_that_cannot_be_encoded_ends_the_transaction_before_it() {
        let compare = CompareOptions::default();
        let settings = Arc::new(SessionSettings::default());
        // More parameters than the protocol can count.
        let samples = [
            sample("SELECT 1", 0, &settings),
            sample("SELECT 2", 70_000, &settings),
        ];
        let specs: Vec<SampleSpec<'_>> = samples.iter().map(|s| spec(s, &compare)).collect();
        let sides: Vec<[SideQuery<'_>; 2]> = specs.iter().map(both_sides).collect();
        let runs = runs(&samples, &specs, &sides);
        let mut cache = StatementCache::default();
        let mut out = BytesMut::new();
        let written = write_transaction(
            &mut cache,
            &SessionSettings::default(),
            &mut out,
            &runs,
            LEFT,
        )
        .expect("the first sample encodes");
        assert_eq!(written.entries, 1);
        assert_eq!(written.steps.last(), Some(&(0, Step::Control)), "ROLLBACK");
        let again = cache.prepare("public", "SELECT 2", &[0; 70_000]);
        assert!(
            again.is_some_and(|p| p.parse),
            "the statement never sent is not in the cache"
        );
        let mut alone = BytesMut::new();
        let failed = write_transaction(
            &mut cache,
            &SessionSettings::default(),
            &mut alone,
            &runs[1..],
            LEFT,
        );
        assert!(failed.is_err(), "as the first of a transaction it fails");
    }

    #[test]
    fn after_a_failure_the_failing_statement_and_later_parses_are_doubtful() {
        let written = Written {
            steps: vec![
                (0, Step::Control),
                (0, Step::Settings),
                (0, Step::Query(0)),
                (0, Step::Mark),
            ],
            used: vec![
                prepared(1, false),
                prepared(2, true),
                prepared(3, false),
                prepared(4, true),
            ],
            entries: 1,
        };
        let doubtful: Vec<u32> = written.doubtful_after(2).collect();
        assert_eq!(
            doubtful,
            [3, 4],
            "the failing step's statement and the parse after it"
        );
    }
}
