//! Per-session statement tracking.
//!
//! The tracker sees copies of the client's Query, Parse, Bind, Execute and
//! Close messages, the type bytes of every other message in both
//! directions, and the status of each ReadyForQuery. From these it keeps:
//!
//! - the session's prepared statements and portals (named and unnamed),
//!   so an Execute can be traced back to its SQL and parameters;
//! - a FIFO of the replies the server still owes ([`Expected`]), which
//!   pairs every reply with its request. After an ErrorResponse the server
//!   skips everything up to the next Sync, and so does the queue.
//!
//! Work is proportional to what is needed: the sampling decision is made
//! when a statement is bound (or a Query arrives), and parameters are
//! copied only for executions that were picked. A picked execution becomes
//! a [`Sample`] only once the primary has completed it without error.

pub use super::sample::{Sample, SessionSettings};

use super::fingerprint::Fingerprint;
use super::handoff::SessionCapture;
use super::hot_path::idle_clock::IdleClock;
use super::hot_path::last_bound::LastBound;
use super::hot_path::skip_run::SkipRun;
use super::lexer;
use super::skip::{SkipReason, SkipTally};
pub use super::statement::DEFAULT_STATEMENT_BUDGET;
use super::statement::{
    ineligible, Facts, NamedStatements, RecentStatements, SessionEffect, Statement,
};
use crate::protocol::backend::{tag as be, TransactionStatus};
use crate::protocol::frontend::{self, tag as fe};
use bytes::Bytes;
use replies::{Candidate, Expected, ReplyQueue, Target};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use ticket::{Portal, Ticket};

/// A session hands its per-fingerprint skip counts to the gate after this
/// many skips, or at an idle ReadyForQuery once [`SKIP_FLUSH_INTERVAL`] has
/// passed, and when it ends.
const SKIP_FLUSH_EVERY: u32 = 1024;
const SKIP_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Where the tracker sends its decisions: the sampler and the shadow queue.
pub trait SampleGate {
    /// Whether to sample one execution of `fingerprint`; called once per
    /// execution of a statement that may be a read. `executions_here` is
    /// how often this session has run the same prepared statement before
    /// (0 when unknown; counted up to [`SampleGate::first_executions`]):
    /// past the fingerprint's first executions, the sampler need not look
    /// them up. `Err` carries the reason it is not sampled.
    fn decide(&mut self, fingerprint: Fingerprint, executions_here: u32) -> Result<(), SkipReason>;
    /// How many executions of a fingerprint are sampled regardless of the
    /// rate. The tracker counts a statement's executions up to this many
    /// and then stops writing the count.
    fn first_executions(&self) -> u32;
    /// Counts a statement that will not be compared.
    fn skip(&self, reason: SkipReason);
    /// Takes a session's skips per fingerprint (summed up locally, so this
    /// runs once per batch) and empties `batch`.
    fn skipped_by_fingerprint(&self, batch: &mut SkipTally) {
        batch.clear();
    }
    /// Counts one statement execution seen on the primary path.
    fn executed(&self);
    /// Hands a completed sample to the shadow. Must not block. `Err` when
    /// the sample was dropped (queue full, rate limit; already counted).
    fn submit(&self, sample: Sample) -> Result<(), SkipReason>;
}

/// Tracks one session's statements; see the module docs.
pub struct Tracker<G: SampleGate> {
    gate: G,
    database: Arc<str>,
    settings: Arc<SessionSettings>,
    /// Named statements, bounded in number and bytes.
    statements: NamedStatements,
    unnamed_statement: Option<Arc<Statement>>,
    /// The latest Parses by text: a repeated Parse finds its statement.
    recent: RecentStatements,
    /// The named statement bound last, by name: sessions bind the same few
    /// statements over and over, and this spares the map's hashing.
    last_bound: Option<LastBound>,
    portals: HashMap<Vec<u8>, Portal>,
    unnamed_portal: Option<Portal>,
    expected: ReplyQueue,
    /// The session created temporary objects or changed its search_path:
    /// its reads cannot be replayed elsewhere.
    session_dependent: bool,
    /// Skips per fingerprint not yet handed to the gate.
    skips: SkipTally,
    /// The latest run of equal skips, not yet in `skips`.
    skip_run: SkipRun,
    unflushed_skips: u32,
    /// When the skips were last handed over.
    skip_clock: IdleClock,
}

impl<G: SampleGate> Tracker<G> {
    /// A tracker for a session on `database` with its startup settings.
    pub fn new(gate: G, database: &str, settings: SessionSettings) -> Self {
        Self {
            gate,
            database: Arc::from(database),
            settings: Arc::new(settings),
            statements: NamedStatements::new(DEFAULT_STATEMENT_BUDGET),
            unnamed_statement: None,
            recent: RecentStatements::default(),
            last_bound: None,
            portals: HashMap::new(),
            unnamed_portal: None,
            expected: ReplyQueue::default(),
            session_dependent: false,
            skips: SkipTally::new(),
            skip_run: SkipRun::default(),
            unflushed_skips: 0,
            skip_clock: IdleClock::new(),
        }
    }

    /// Bounds the bytes of named statements the session remembers
    /// (`shadow.max_session_statement_bytes`). The unnamed statement and
    /// the few recent ones are bounded apart (by `shadow.max_capture_bytes`).
    pub fn with_statement_budget(mut self, bytes: usize) -> Self {
        self.statements = NamedStatements::new(bytes);
        self
    }

    /// Bytes of named statements remembered now.
    pub fn statement_bytes(&self) -> usize {
        self.statements.bytes()
    }

    /// The sampling decision for one execution of the statement a Bind
    /// names: a ticket when it is picked, else the skip counted.
    ///
    /// Runs for every execution, so it touches as little memory as it can:
    /// the statement is not cloned (its reference count lives with it), and
    /// its execution count stops at the first executions.
    fn pick(&mut self, portal: &[u8], statement_name: &[u8], body: &[u8]) -> Option<Box<Ticket>> {
        let first_executions = self.gate.first_executions();
        let Some((facts, executions)) = self.count_execution(statement_name, first_executions)
        else {
            // Not tracked (too many statements, or prepared with SQL
            // PREPARE): we do not know what it runs.
            self.gate.skip(SkipReason::TooLarge);
            return None;
        };
        let fingerprint = facts.fingerprint;
        self.apply(facts.effect);
        let verdict = self
            .eligible(facts.ineligible)
            .and_then(|()| self.gate.decide(fingerprint, executions))
            .and_then(|()| frontend::bind(body).map_err(|_| SkipReason::Unparsable));
        let bind = match verdict {
            Ok(bind) => bind,
            Err(reason) => {
                self.skip(fingerprint, reason);
                return None;
            }
        };
        let statement = self.bound_statement(statement_name)?.clone();
        Some(Box::new(Ticket {
            portal: portal.to_vec(),
            param_formats: bind.param_formats,
            params: bind
                .params
                .iter()
                .map(|p| p.map(Bytes::copy_from_slice))
                .collect(),
            statement,
        }))
    }

    /// Counts a statement of `fingerprint` that will not be compared: in
    /// the gate's totals at once, per fingerprint in batches.
    fn skip(&mut self, fingerprint: Fingerprint, reason: SkipReason) {
        self.gate.skip(reason);
        self.tally_skip(fingerprint, reason);
    }

    fn tally_skip(&mut self, fingerprint: Fingerprint, reason: SkipReason) {
        self.skip_run.add((fingerprint, reason), &mut self.skips);
        self.unflushed_skips += 1;
        if self.unflushed_skips >= SKIP_FLUSH_EVERY {
            self.flush_skips();
        }
    }

    /// Whether the batched skips have waited long enough, asked at an idle
    /// ReadyForQuery (see [`IdleClock`]).
    fn skips_due(&mut self) -> bool {
        self.skip_clock.elapsed_at_idle(SKIP_FLUSH_INTERVAL)
    }

    fn flush_skips(&mut self) {
        self.skip_run.end(&mut self.skips);
        self.gate.skipped_by_fingerprint(&mut self.skips);
        self.skips.clear();
        self.unflushed_skips = 0;
        self.skip_clock.reset();
    }

    // ----- internals -------------------------------------------------

    /// After an ErrorResponse: the request it answers failed, and the
    /// server discards everything up to the next Sync.
    fn on_error(&mut self) {
        match self.expected.front_mut() {
            Some(Expected::Query { failed, .. }) => {
                *failed = true;
                return;
            }
            Some(Expected::Sync | Expected::FunctionCall) | None => return,
            Some(_) => {}
        }
        while let Some(front) = self.expected.front() {
            if matches!(front, Expected::Sync) {
                break;
            }
            match self.expected.pop_front() {
                Some(Expected::Parse(statement)) => self.forget_statement(statement.name()),
                Some(Expected::Bind(portal)) => self.forget_portal(portal.name()),
                _ => {}
            }
        }
    }

    /// Keeps a named statement, within the session's bounds
    /// ([`NamedStatements`]); one beyond is not tracked, and its executions
    /// are skipped as `too_large` when bound.
    fn remember(&mut self, name: &[u8], statement: Arc<Statement>) {
        // A name still in use is an error the server reports; the old
        // statement is let go either way.
        self.forget_statement(name);
        if !self.statements.insert(name, statement) {
            tracing::debug!(
                remembered = self.statements.bytes(),
                "prepared statement not tracked: the session's statement budget is spent"
            );
        }
    }

    fn forget_statement(&mut self, name: &[u8]) {
        if name.is_empty() {
            self.unnamed_statement = None;
        } else {
            self.last_bound = None;
            self.statements.remove(name);
        }
    }

    fn forget_portal(&mut self, name: &[u8]) {
        if name.is_empty() {
            self.unnamed_portal = None;
        } else {
            self.portals.remove(name);
        }
    }

    /// Counts one execution of the statement a Bind names (empty: the
    /// unnamed one): its facts and how often this session ran it before
    /// (counted up to `limit`).
    fn count_execution(&mut self, name: &[u8], limit: u32) -> Option<(Facts, u32)> {
        if name.is_empty() {
            let statement = self.unnamed_statement.as_ref()?;
            return Some((statement.facts(), statement.count_execution(limit)));
        }
        if !self.last_bound.as_ref().is_some_and(|last| last.is(name)) {
            let statement = self.statements.get(name)?;
            match LastBound::new(name, statement.clone()) {
                Some(last) => self.last_bound = Some(last),
                None => return Some((statement.facts(), statement.count_execution(limit))),
            }
        }
        let last = self.last_bound.as_mut()?;
        Some((last.facts, last.count_execution(limit)))
    }

    /// The statement a Bind names (empty: the unnamed one).
    fn bound_statement(&self, name: &[u8]) -> Option<&Arc<Statement>> {
        match &self.last_bound {
            _ if name.is_empty() => self.unnamed_statement.as_ref(),
            Some(last) if last.is(name) => Some(&last.statement),
            _ => self.statements.get(name),
        }
    }

    fn pop_if(&mut self, pred: impl Fn(&Expected) -> bool) {
        if self.expected.front().is_some_and(pred) {
            self.expected.pop_front();
        }
    }

    fn pop_front_if_execute(&mut self) -> Option<Expected> {
        if matches!(self.expected.front(), Some(Expected::Execute(_))) {
            self.expected.pop_front()
        } else {
            None
        }
    }

    fn portal_mut(&mut self, name: &[u8]) -> Option<&mut Portal> {
        if name.is_empty() {
            self.unnamed_portal.as_mut()
        } else {
            self.portals.get_mut(name)
        }
    }

    /// The cheap checks every statement gets before sampling: what its
    /// text rules out, then the session's state.
    fn eligible(&self, ineligible: Option<SkipReason>) -> Result<(), SkipReason> {
        match ineligible {
            Some(reason) => Err(reason),
            None if self.session_dependent => Err(SkipReason::SessionDependent),
            None => Ok(()),
        }
    }

    /// Notes what a statement does to the session's replayability.
    fn apply(&mut self, effect: SessionEffect) {
        match effect {
            SessionEffect::None => {}
            SessionEffect::MakesPrivate => self.session_dependent = true,
            SessionEffect::Resets => self.session_dependent = false,
        }
    }

    fn emit(&mut self, ticket: Ticket) {
        let Some(sql) = ticket.statement.sql.clone() else {
            return;
        };
        self.submit(
            ticket.statement.fingerprint,
            sql,
            ticket.statement.param_types.clone(),
            ticket.param_formats,
            ticket.params,
        );
    }

    fn submit(
        &mut self,
        fingerprint: Fingerprint,
        sql: Arc<str>,
        param_types: Arc<[u32]>,
        param_formats: Vec<i16>,
        params: Vec<Option<Bytes>>,
    ) {
        let submitted = self.gate.submit(Sample {
            fingerprint,
            sql,
            param_types,
            param_formats,
            params,
            settings: self.settings.clone(),
            database: self.database.clone(),
            completed_at: Instant::now(),
        });
        if let Err(reason) = submitted {
            // The gate counted it in its totals already.
            self.tally_skip(fingerprint, reason);
        }
    }
}

impl<G: SampleGate> SessionCapture for Tracker<G> {
    /// A reported setting changed (ParameterStatus).
    fn on_parameter_status(&mut self, name: &str, value: &str) {
        let mut next = (*self.settings).clone();
        next.set(name, value);
        if next != *self.settings {
            self.settings = Arc::new(next);
        }
    }

    // ----- client messages -------------------------------------------

    /// A simple Query (`body` is the message body).
    fn on_query(&mut self, body: &[u8]) {
        self.gate.executed();
        let candidate = match frontend::query(body) {
            Ok(sql) => {
                let lexed = lexer::lex_bytes(sql);
                let text = std::str::from_utf8(sql).ok();
                self.apply(SessionEffect::of(&lexed));
                let verdict = self
                    .eligible(ineligible(&lexed, text.is_some()))
                    .and_then(|()| self.gate.decide(lexed.fingerprint, 0));
                match (verdict, text) {
                    (Ok(()), Some(sql)) => Some(Box::new(Candidate {
                        fingerprint: lexed.fingerprint,
                        sql: Arc::from(sql),
                    })),
                    (Err(reason), _) => {
                        self.skip(lexed.fingerprint, reason);
                        None
                    }
                    (Ok(()), None) => None,
                }
            }
            Err(_) => {
                self.gate.skip(SkipReason::Unparsable);
                None
            }
        };
        self.expected.push_back(Expected::Query {
            candidate,
            completed: false,
            failed: false,
        });
    }

    /// A Parse message.
    fn on_parse(&mut self, body: &[u8]) {
        let Ok(parse) = frontend::parse(body) else {
            self.on_untracked(fe::PARSE);
            return;
        };
        let statement = self.recent.get_or_prepare(parse.sql, parse.param_types);
        if parse.name.is_empty() {
            self.unnamed_statement = Some(statement);
        } else {
            self.remember(parse.name, statement);
        }
        self.expected
            .push_back(Expected::Parse(Target::of(parse.name)));
    }

    /// A Bind message: one execution of a statement. The sampling decision
    /// is made here, and the parameters are decoded and copied only for an
    /// execution that is picked.
    fn on_bind(&mut self, body: &[u8]) {
        let Ok((portal_name, statement_name)) = frontend::bind_target(body) else {
            self.on_untracked(fe::BIND);
            return;
        };
        self.gate.executed();
        let portal = Portal {
            ticket: self.pick(portal_name, statement_name, body),
        };
        if portal_name.is_empty() {
            self.unnamed_portal = Some(portal);
        } else {
            self.portals.insert(portal_name.to_vec(), portal);
        }
        self.expected
            .push_back(Expected::Bind(Target::of(portal_name)));
    }

    /// An Execute message.
    fn on_execute(&mut self, body: &[u8]) {
        let ticket = match frontend::execute(body) {
            Ok((name, _)) => self.portal_mut(name).and_then(|p| p.ticket.take()),
            Err(_) => None,
        };
        self.expected.push_back(Expected::Execute(ticket));
    }

    /// A Close message.
    fn on_close(&mut self, body: &[u8]) {
        if let Ok((kind, name)) = frontend::target(body) {
            if kind == b'S' {
                self.forget_statement(name);
            } else {
                self.forget_portal(name);
            }
        }
        self.expected.push_back(Expected::Close);
    }

    /// A client message whose content the tracker does not need (or that
    /// was too large to copy): keeps the reply queue in step.
    fn on_untracked(&mut self, tag: u8) {
        match tag {
            fe::QUERY => {
                self.gate.executed();
                self.gate.skip(SkipReason::TooLarge);
                self.expected.push_back(Expected::Query {
                    candidate: None,
                    completed: false,
                    failed: false,
                });
            }
            fe::PARSE => {
                // Only the unnamed statement can have been replaced: a
                // named one must be closed before its name is reused.
                self.unnamed_statement = None;
                self.expected.push_back(Expected::Parse(Target::UNNAMED));
            }
            fe::BIND => {
                self.gate.executed();
                self.gate.skip(SkipReason::TooLarge);
                self.unnamed_portal = None;
                self.expected.push_back(Expected::Bind(Target::UNNAMED));
            }
            fe::EXECUTE => self.expected.push_back(Expected::Execute(None)),
            fe::CLOSE => self.expected.push_back(Expected::Close),
            fe::DESCRIBE => self.expected.push_back(Expected::Describe),
            fe::SYNC => self.expected.push_back(Expected::Sync),
            fe::FUNCTION_CALL => self.expected.push_back(Expected::FunctionCall),
            _ => {}
        }
    }

    // ----- server messages -------------------------------------------

    /// A server message, by type byte: one of the replies
    /// [`be::pairs_with_request`] lists. ReadyForQuery goes through
    /// [`Tracker::on_ready_for_query`] instead.
    fn on_server_message(&mut self, tag: u8) {
        match tag {
            be::PARSE_COMPLETE => self.pop_if(|e| matches!(e, Expected::Parse(_))),
            be::BIND_COMPLETE => self.pop_if(|e| matches!(e, Expected::Bind(_))),
            be::CLOSE_COMPLETE => self.pop_if(|e| matches!(e, Expected::Close)),
            be::NO_DATA | be::ROW_DESCRIPTION => self.pop_if(|e| matches!(e, Expected::Describe)),
            be::COMMAND_COMPLETE => match self.expected.front_mut() {
                Some(Expected::Query { completed, .. }) => *completed = true,
                Some(Expected::Execute(_)) => {
                    if let Some(Expected::Execute(Some(ticket))) = self.expected.pop_front() {
                        self.emit(*ticket);
                    }
                }
                _ => {}
            },
            be::PORTAL_SUSPENDED => {
                // PortalSuspended: the portal will be executed again; the
                // ticket waits for its final completion.
                if let Some(Expected::Execute(Some(ticket))) = self.pop_front_if_execute() {
                    if let Some(p) = self.portal_mut(&ticket.portal) {
                        p.ticket = Some(ticket);
                    }
                }
            }
            be::EMPTY_QUERY_RESPONSE => {
                self.pop_front_if_execute();
            }
            be::ERROR_RESPONSE => self.on_error(),
            _ => {}
        }
    }

    /// ReadyForQuery: ends a Query, a Sync batch or a FunctionCall.
    fn on_ready_for_query(&mut self, status: TransactionStatus) {
        match self.expected.pop_front() {
            Some(Expected::Query {
                candidate: Some(candidate),
                completed: true,
                failed: false,
            }) => self.submit(
                candidate.fingerprint,
                candidate.sql,
                Arc::from([]),
                Vec::new(),
                Vec::new(),
            ),
            Some(Expected::Query { .. } | Expected::Sync | Expected::FunctionCall) | None => {}
            Some(_) => {
                // Out of step (a reply we did not expect): start afresh
                // rather than pair later replies with the wrong requests.
                tracing::debug!("statement tracking resynchronised at ReadyForQuery");
                self.expected.clear();
            }
        }
        if status == TransactionStatus::Idle {
            // Portals do not outlive their transaction.
            if !self.portals.is_empty() {
                self.portals.clear();
            }
            self.unnamed_portal = None;
            if self.unflushed_skips > 0 && self.skips_due() {
                self.flush_skips();
            }
        }
    }
}

impl<G: SampleGate> Drop for Tracker<G> {
    /// A session's last skips still reach the coverage counts.
    fn drop(&mut self) {
        self.skip_run.end(&mut self.skips);
        if !self.skips.is_empty() {
            self.gate.skipped_by_fingerprint(&mut self.skips);
        }
    }
}

mod replies;
#[cfg(test)]
mod tests;
mod ticket;
