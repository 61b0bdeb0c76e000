//! The tracker's pairing of requests and replies, message by message.

use super::*;
use crate::capture::hot_path::idle_clock::CLOCK_EVERY_IDLE_READY;
use std::cell::RefCell;

/// Samples everything, records what happens.
#[derive(Default)]
struct Recorder {
    submitted: RefCell<Vec<Sample>>,
    skipped: RefCell<Vec<SkipReason>>,
    by_fingerprint: RefCell<SkipTally>,
    executed: RefCell<usize>,
    /// `executions_here` of every sampling decision.
    decided: RefCell<Vec<u32>>,
    /// `first_executions` (`None`: unlimited).
    first_executions: Option<u32>,
}

impl SampleGate for &Recorder {
    fn decide(&mut self, _: Fingerprint, executions_here: u32) -> Result<(), SkipReason> {
        self.decided.borrow_mut().push(executions_here);
        Ok(())
    }
    fn first_executions(&self) -> u32 {
        self.first_executions.unwrap_or(u32::MAX)
    }
    fn skip(&self, reason: SkipReason) {
        self.skipped.borrow_mut().push(reason);
    }
    fn executed(&self) {
        *self.executed.borrow_mut() += 1;
    }
    fn skipped_by_fingerprint(&self, batch: &mut SkipTally) {
        let mut all = self.by_fingerprint.borrow_mut();
        for (key, n) in batch.drain() {
            *all.entry(key).or_insert(0) += n;
        }
    }
    fn submit(&self, sample: Sample) -> Result<(), SkipReason> {
        self.submitted.borrow_mut().push(sample);
        Ok(())
    }
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn parse(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
    let mut b = cstr(name);
    b.extend(cstr(sql));
    b.extend((types.len() as i16).to_be_bytes());
    for t in types {
        b.extend(t.to_be_bytes());
    }
    b
}

fn bind(portal: &str, stmt: &str, params: &[&[u8]]) -> Vec<u8> {
    let mut b = cstr(portal);
    b.extend(cstr(stmt));
    b.extend(1i16.to_be_bytes());
    b.extend(1i16.to_be_bytes());
    b.extend((params.len() as i16).to_be_bytes());
    for p in params {
        b.extend((p.len() as i32).to_be_bytes());
        b.extend_from_slice(p);
    }
    b.extend(0i16.to_be_bytes());
    b
}

fn execute(portal: &str) -> Vec<u8> {
    let mut b = cstr(portal);
    b.extend(0i32.to_be_bytes());
    b
}

fn tracker(r: &Recorder) -> Tracker<&Recorder> {
    Tracker::new(r, "app", SessionSettings::default())
}

fn server(t: &mut Tracker<&Recorder>, tags: &[u8]) {
    for &tag in tags {
        if tag == b'Z' {
            t.on_ready_for_query(TransactionStatus::Idle);
        } else {
            t.on_server_message(tag);
        }
    }
}

#[test]
fn a_successful_simple_query_is_submitted_at_ready_for_query() {
    let r = Recorder::default();
    let mut t = tracker(&r);
    t.on_query(&cstr("SELECT * FROM entries WHERE id = 1"));
    server(&mut t, b"TDC");
    assert!(r.submitted.borrow().is_empty(), "not before ReadyForQuery");
    server(&mut t, b"Z");
    let s = r.submitted.borrow();
    assert_eq!(s.len(), 1);
    assert_eq!(&*s[0].sql, "SELECT * FROM entries WHERE id = 1");
    assert_eq!(&*s[0].database, "app");
}

#[test]
fn skips_reach_the_gate_per_fingerprint_in_batches_and_at_session_end() {
    let r = Recorder::default();
    let insert = lexer::lex("INSERT INTO t VALUES (1)").fingerprint;
    {
        let mut t = tracker(&r);
        for _ in 0..SKIP_FLUSH_EVERY {
            t.on_query(&cstr("INSERT INTO t VALUES (1)"));
            server(&mut t, b"CZ");
        }
        assert_eq!(
            r.by_fingerprint
                .borrow()
                .get(&(insert, SkipReason::NotRead)),
            Some(&u64::from(SKIP_FLUSH_EVERY)),
            "a full batch is handed over at once"
        );
        t.on_query(&cstr("SELECT 1; SELECT 2"));
        server(&mut t, b"TDCTDCZ");
        assert_eq!(r.by_fingerprint.borrow().len(), 1, "not yet: batched");
    }
    let all = r.by_fingerprint.borrow();
    assert_eq!(all.len(), 2, "the rest when the session ends: {all:?}");
    assert_eq!(r.skipped.borrow().len(), SKIP_FLUSH_EVERY as usize + 1);
}

#[test]
fn interleaved_skips_are_tallied_per_fingerprint_and_reason() {
    let r = Recorder::default();
    let insert = lexer::lex("INSERT INTO t VALUES (1)").fingerprint;
    let update = lexer::lex("UPDATE t SET a = 1").fingerprint;
    {
        let mut t = tracker(&r);
        for sql in ["INSERT INTO t VALUES (1)", "UPDATE t SET a = 1"] {
            t.on_parse(&parse(
                if sql.starts_with('I') { "i" } else { "u" },
                sql,
                &[],
            ));
        }
        server(&mut t, b"11");
        for name in ["i", "i", "u", "i", "u", "u", "u", "i"] {
            t.on_bind(&bind("", name, &[]));
            t.on_execute(&execute(""));
            t.on_untracked(fe::SYNC);
            server(&mut t, b"2CZ");
        }
    }
    let all = r.by_fingerprint.borrow();
    assert_eq!(all.get(&(insert, SkipReason::NotRead)), Some(&4), "{all:?}");
    assert_eq!(all.get(&(update, SkipReason::NotRead)), Some(&4), "{all:?}");
    assert_eq!(all.len(), 2, "{all:?}");
}

#[test]
fn failed_statements_and_non_reads_are_never_submitted() {
    let r = Recorder::default();
    let mut t = tracker(&r);
    t.on_query(&cstr("SELECT 1/0"));
    server(&mut t, b"EZ");
    t.on_query(&cstr("INSERT INTO t VALUES (1)"));
    server(&mut t, b"CZ");
    t.on_query(&cstr("SELECT 1; SELECT 2"));
    server(&mut t, b"TDCTDCZ");
    assert!(r.submitted.borrow().is_empty());
    assert_eq!(
        *r.skipped.borrow(),
        vec![SkipReason::NotRead, SkipReason::MultiStatement]
    );
    assert_eq!(*r.executed.borrow(), 3);
}

#[test]
fn named_statements_are_captured_at_every_execution_with_their_parameters() {
    let r = Recorder::default();
    let mut t = tracker(&r);
    t.on_parse(&parse("s1", "SELECT * FROM entries WHERE id = $1", &[23]));
    t.on_untracked(fe::SYNC);
    server(&mut t, b"1Z");
    for i in 0..5u32 {
        t.on_bind(&bind("", "s1", &[&i.to_be_bytes()]));
        t.on_execute(&execute(""));
        t.on_untracked(fe::SYNC);
        server(&mut t, b"2DCZ");
    }
    let s = r.submitted.borrow();
    assert_eq!(s.len(), 5);
    assert_eq!(
        s[3].params,
        vec![Some(Bytes::copy_from_slice(&3u32.to_be_bytes()))]
    );
    assert_eq!(s[3].param_formats, vec![1]);
    assert_eq!(&*s[3].param_types, &[23]);
}

#[test]
fn an_unnamed_statement_parsed_again_keeps_counting_its_executions() {
    // What most drivers send for every execution: Parse, Bind, Execute,
    // Sync on the unnamed statement, with the same text each time.
    let r = Recorder::default();
    let mut t = tracker(&r);
    for i in 0..4u32 {
        t.on_parse(&parse("", "SELECT * FROM entries WHERE id = $1", &[23]));
        t.on_bind(&bind("", "", &[&i.to_be_bytes()]));
        t.on_execute(&execute(""));
        t.on_untracked(fe::SYNC);
        server(&mut t, b"12DCZ");
    }
    assert_eq!(*r.decided.borrow(), [0, 1, 2, 3]);
    assert_eq!(r.submitted.borrow().len(), 4);
    t.on_parse(&parse("", "SELECT * FROM other WHERE id = $1", &[23]));
    t.on_bind(&bind("", "", &[&1u32.to_be_bytes()]));
    assert_eq!(
        r.decided.borrow().last(),
        Some(&0),
        "a new text starts at 0"
    );
}

#[test]
fn executions_are_counted_up_to_the_first_executions_only() {
    let r = Recorder {
        first_executions: Some(2),
        ..Recorder::default()
    };
    let mut t = tracker(&r);
    t.on_parse(&parse("s", "SELECT 1", &[]));
    server(&mut t, b"1");
    for _ in 0..5 {
        t.on_bind(&bind("", "s", &[]));
        t.on_execute(&execute(""));
        t.on_untracked(fe::SYNC);
        server(&mut t, b"2DCZ");
    }
    assert_eq!(*r.decided.borrow(), [0, 1, 2, 2, 2]);
    assert_eq!(r.submitted.borrow().len(), 5);
}

#[test]
fn a_statement_name_used_again_after_close_binds_the_new_statement() {
    let r = Recorder::default();
    let mut t = tracker(&r);
    for sql in ["SELECT 1", "SELECT 2"] {
        t.on_parse(&parse("s", sql, &[]));
        t.on_bind(&bind("", "s", &[]));
        t.on_execute(&execute(""));
        let mut close = vec![b'S'];
        close.extend(cstr("s"));
        t.on_close(&close);
        t.on_untracked(fe::SYNC);
        server(&mut t, b"12DC3Z");
    }
    let sql: Vec<String> = r
        .submitted
        .borrow()
        .iter()
        .map(|s| s.sql.to_string())
        .collect();
    assert_eq!(sql, ["SELECT 1", "SELECT 2"]);
}

#[test]
fn an_error_in_a_pipeline_discards_everything_up_to_sync() {
    let r = Recorder::default();
    let mut t = tracker(&r);
    // Batch 1: first statement fails; the second is skipped by the server.
    t.on_parse(&parse("", "SELECT 1/0", &[]));
    t.on_bind(&bind("", "", &[]));
    t.on_execute(&execute(""));
    t.on_parse(&parse("", "SELECT 2", &[]));
    t.on_bind(&bind("", "", &[]));
    t.on_execute(&execute(""));
    t.on_untracked(fe::SYNC);
    // Batch 2 succeeds.
    t.on_parse(&parse("", "SELECT 3", &[]));
    t.on_bind(&bind("", "", &[]));
    t.on_execute(&execute(""));
    t.on_untracked(fe::SYNC);
    server(&mut t, b"12EZ");
    assert!(r.submitted.borrow().is_empty());
    server(&mut t, b"12DCZ");
    let s = r.submitted.borrow();
    assert_eq!(s.len(), 1);
    assert_eq!(&*s[0].sql, "SELECT 3");
}

#[test]
fn a_suspended_portal_is_submitted_when_it_completes() {
    let r = Recorder::default();
    let mut t = tracker(&r);
    t.on_parse(&parse("", "SELECT * FROM big", &[]));
    t.on_bind(&bind("c1", "", &[]));
    t.on_execute(&execute("c1"));
    t.on_untracked(fe::FLUSH);
    server(&mut t, b"12DDs");
    assert!(r.submitted.borrow().is_empty());
    t.on_execute(&execute("c1"));
    t.on_untracked(fe::SYNC);
    server(&mut t, b"DCZ");
    assert_eq!(r.submitted.borrow().len(), 1);
}

#[test]
fn session_state_changes_make_later_reads_session_dependent() {
    let r = Recorder::default();
    let mut t = tracker(&r);
    t.on_query(&cstr("CREATE TEMP TABLE scratch (id int)"));
    server(&mut t, b"CZ");
    t.on_query(&cstr("SELECT * FROM scratch"));
    server(&mut t, b"TCZ");
    assert!(r.submitted.borrow().is_empty());
    assert_eq!(
        r.skipped.borrow().last(),
        Some(&SkipReason::SessionDependent)
    );
    t.on_query(&cstr("DISCARD ALL"));
    server(&mut t, b"CZ");
    t.on_query(&cstr("SELECT 1"));
    server(&mut t, b"TDCZ");
    assert_eq!(r.submitted.borrow().len(), 1);
}

#[test]
fn settings_follow_parameter_status() {
    let r = Recorder::default();
    let mut t = tracker(&r);
    t.on_parameter_status("TimeZone", "Asia/Tokyo");
    t.on_parameter_status("application_name", "ignored");
    t.on_query(&cstr("SELECT now()"));
    server(&mut t, b"TDCZ");
    let s = r.submitted.borrow();
    let pairs: Vec<_> = s[0].settings.pairs().collect();
    assert_eq!(pairs, vec![("TimeZone", "Asia/Tokyo")]);
}

#[test]
fn oversized_messages_keep_the_reply_queue_in_step() {
    let r = Recorder::default();
    let mut t = tracker(&r);
    t.on_untracked(fe::PARSE);
    t.on_untracked(fe::BIND);
    t.on_untracked(fe::EXECUTE);
    t.on_untracked(fe::SYNC);
    server(&mut t, b"12CZ");
    t.on_query(&cstr("SELECT 1"));
    server(&mut t, b"TDCZ");
    assert_eq!(r.submitted.borrow().len(), 1);
    assert!(r.skipped.borrow().contains(&SkipReason::TooLarge));
}

#[test]
fn skips_waiting_past_the_interval_go_out_at_every_sixteenth_idle_ready() {
    let r = Recorder::default();
    let mut t = tracker(&r);
    let run_insert = |t: &mut Tracker<&Recorder>| {
        t.on_query(&cstr("INSERT INTO t VALUES (1)"));
        server(t, b"CZ");
    };
    run_insert(&mut t);
    // As if the last hand-over were long ago.
    t.skip_clock.since = Instant::now() - 2 * SKIP_FLUSH_INTERVAL;
    for _ in 2..CLOCK_EVERY_IDLE_READY {
        run_insert(&mut t);
    }
    assert!(
        r.by_fingerprint.borrow().is_empty(),
        "the clock is not read before the sixteenth idle ReadyForQuery"
    );
    run_insert(&mut t);
    let insert = lexer::lex("INSERT INTO t VALUES (1)").fingerprint;
    assert_eq!(
        r.by_fingerprint
            .borrow()
            .get(&(insert, SkipReason::NotRead)),
        Some(&u64::from(CLOCK_EVERY_IDLE_READY))
    );
}

#[test]
fn named_statements_beyond_the_byte_budget_are_not_remembered_and_their_executions_skipped() {
    let r = Recorder::default();
    let mut t = tracker(&r).with_statement_budget(2_000);
    let sql = |i: usize| format!("SELECT {i} AS n, '{}' AS padding", "x".repeat(300));
    for i in 0..10 {
        t.on_parse(&parse(&format!("s{i}"), &sql(i), &[]));
        server(&mut t, b"1");
    }
    let kept = t.statement_bytes();
    assert!(kept <= 2_000 && kept > 1_000, "{kept} bytes remembered");
    let remembered = (0..10)
        .filter(|i| t.statements.contains(format!("s{i}").as_bytes()))
        .count();
    assert!((2..10).contains(&remembered), "{remembered} remembered");

    // Every statement is executed: the remembered ones are sampled, the
    // others skipped as too_large.
    for i in 0..10 {
        t.on_bind(&bind("", &format!("s{i}"), &[]));
        t.on_execute(&execute(""));
        server(&mut t, b"2DC");
    }
    t.on_untracked(b'S');
    server(&mut t, b"Z");
    assert_eq!(r.submitted.borrow().len(), remembered);
    assert_eq!(
        r.skipped
            .borrow()
            .iter()
            .filter(|&&s| s == SkipReason::TooLarge)
            .count(),
        10 - remembered
    );

    // Closing one frees its bytes for the next.
    t.on_close(&[b"S".as_slice(), &cstr("s0")].concat());
    server(&mut t, b"3");
    assert!(t.statement_bytes() < kept);
    t.on_parse(&parse("t9", &sql(9), &[]));
    server(&mut t, b"1");
    assert!(t.statements.contains(b"t9"));
    assert_eq!(t.statement_bytes(), kept, "the same size as s0");
}
