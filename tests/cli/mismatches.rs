//! `pgshadow mismatches …` against a store with known incidents
//! (issue "On-call surface", acceptance 6).
//!
//! The store is an SQLite file in a temporary directory, filled through
//! the public API the proxy uses: outcomes go through a real store writer.
//! Then the real binary reads and changes it.

use super::pgshadow;
use pgshadow::capture::fingerprint::Fingerprint;
use pgshadow::diff::{Diff, DiffKind, RowIds, RowRef};
use pgshadow::outcome::signature::IncidentKind;
use pgshadow::outcome::{Outcome, OutcomeKind};
use pgshadow::protocol::error_response::ErrorFields;
use pgshadow::store::{Store, StoreOptions, StoreWriter, WriterOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The "entries by id" statement.
const ENTRIES: Fingerprint = Fingerprint(0x1111_2222_3333_4444);
/// Another statement, which fails on the new schema.
const AUDIT: Fingerprint = Fingerprint(0x5555_6666_7777_8888);

/// A store holding three incidents with known counts.
struct KnownStore {
    _dir: tempfile::TempDir,
    url: String,
    /// `mismatch/values` on `title`, 3 outcomes, on ENTRIES.
    title: String,
    /// `mismatch/missing_rows`, 2 outcomes, on ENTRIES.
    missing: String,
    /// `new_error` 42P01, 1 outcome, on AUDIT.
    new_error: String,
}

fn base(fingerprint: Fingerprint, kind: OutcomeKind) -> Outcome {
    crate::outcome::outcome(
        fingerprint,
        kind,
        "SELECT id, title\n  FROM entries WHERE id = $1",
        "SELECT id, title FROM entries WHERE id = $1 ORDER BY id",
        "SELECT id, title FROM v2.entries WHERE id = $1 ORDER BY id",
    )
}

fn wrong_title() -> Outcome {
    crate::outcome::values_differ(
        base(ENTRIES, OutcomeKind::Mismatch),
        7,
        "title",
        "Title 7",
        "Wrong title",
    )
}

fn missing_row() -> Outcome {
    Outcome {
        confirmed: Some(false),
        diff: Some(Diff {
            kind: DiffKind::MissingRows,
            differing_columns: Vec::new(),
            summary: "1 missing id (11); row count old=1 new=0".into(),
            old_rows: 1,
            new_rows: 0,
            old_columns: vec!["id".into(), "title".into()],
            new_columns: vec!["id".into(), "title".into()],
            changed: Vec::new(),
            missing: vec![RowRef {
                key: "id=11".into(),
                row: vec![Some("11".into()), Some("Title 11".into())],
            }],
            extra: Vec::new(),
            column_changes: Vec::new(),
            ordering: pgshadow::diff::RowOrder::Total,
            truncated: false,
            ids: RowIds {
                columns: vec!["id".into()],
                missing: vec![vec![Some("11".into())]],
                ..RowIds::default()
            },
        }),
        ..base(ENTRIES, OutcomeKind::Mismatch)
    }
}

fn relation_missing() -> Outcome {
    Outcome {
        client_sql: "SELECT * FROM audit_log WHERE at > now() - interval '1 day'".into(),
        new_error: Some(ErrorFields {
            severity: "ERROR".into(),
            code: "42P01".into(),
            message: "relation \"audit_log\" does not exist".into(),
        }),
        ..base(AUDIT, OutcomeKind::NewError)
    }
}

/// Writes 3 wrong titles, 2 missing rows, 1 new-side error and 4 matches
/// through a real store writer, and finds the incidents' ids.
fn known_store() -> KnownStore {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let incidents = runtime.block_on(async {
        let store = Store::open(&url, StoreOptions::default()).await.unwrap();
        let (tx, rx) = mpsc::channel(64);
        let writer = StoreWriter::start(store.clone(), WriterOptions::default(), rx);
        let outcomes = std::iter::repeat_with(wrong_title)
            .take(3)
            .chain(std::iter::repeat_with(missing_row).take(2))
            .chain([relation_missing()])
            .chain(std::iter::repeat_with(|| base(ENTRIES, OutcomeKind::Match)).take(4));
        for outcome in outcomes {
            tx.send(Arc::new(outcome)).await.unwrap();
        }
        drop(tx);
        // Shutdown writes everything sent.
        writer.shutdown().await;
        store.list_incidents(&Default::default()).await.unwrap()
    });
    assert_eq!(incidents.len(), 3, "{incidents:#?}");
    let find = |pred: &dyn Fn(&pgshadow::store::Incident) -> bool| {
        incidents.iter().find(|i| pred(i)).unwrap().id.clone()
    };
    KnownStore {
        title: find(&|i| i.diff_kind == Some(DiffKind::Values)),
        missing: find(&|i| i.diff_kind == Some(DiffKind::MissingRows)),
        new_error: find(&|i| i.kind == IncidentKind::NewError),
        _dir: dir,
        url,
    }
}

impl KnownStore {
    /// Runs `pgshadow mismatches ARGS --store URL`.
    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let mut all = vec!["mismatches"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--store", &self.url]);
        pgshadow(&all)
    }

    /// `ARGS --json`, which must succeed, parsed.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let (code, out, err) = self.run(&all);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// `list --json` as id -> incident.
    fn listed(&self) -> BTreeMap<String, Value> {
        let list = self.json(&["list"]);
        list.as_array()
            .unwrap()
            .iter()
            .map(|i| (i["id"].as_str().unwrap().to_string(), i.clone()))
            .collect()
    }
}

#[test]
fn list_prints_an_aligned_table_of_every_incident() {
    let store = known_store();
    let (code, out, err) = store.run(&["list"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three incidents:\n{out}");
    let header = lines[0];
    for column in [
        "ID",
        "STATUS",
        "KIND",
        "COLUMNS/SQLSTATE",
        "COUNT",
        "FIRST SEEN",
        "LAST SEEN",
        "SQL",
    ] {
        assert!(header.contains(column), "{column} missing: {header}");
    }
    let row = |id: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no row for {id}:\n{out}"))
    };
    let column_at = |line: &str, name: &str| {
        let start = header.find(name).unwrap();
        line[start..].split("  ").next().unwrap().trim().to_string()
    };
    for (id, kind, differs, count) in [
        (&store.title, "mismatch/values", "title", "3"),
        (&store.missing, "mismatch/missing_rows", "-", "2"),
        (&store.new_error, "new_error", "old=- new=42P01", "1"),
    ] {
        let line = row(id);
        assert_eq!(column_at(line, "STATUS"), "open", "{line}");
        assert_eq!(column_at(line, "KIND"), kind, "{line}");
        assert_eq!(column_at(line, "COLUMNS/SQLSTATE"), differs, "{line}");
        assert_eq!(column_at(line, "COUNT"), count, "{line}");
        assert!(column_at(line, "FIRST SEEN").ends_with('Z'), "{line}");
    }
    // SQL on one line, as the client sent it.
    assert!(
        row(&store.title).ends_with("SELECT id, title FROM entries WHERE id = $1"),
        "{out}"
    );
}

#[test]
fn list_json_carries_ids_counts_and_kinds() {
    let store = known_store();
    let listed = store.listed();
    let ids: Vec<&String> = listed.keys().collect();
    let mut expected = vec![&store.title, &store.missing, &store.new_error];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(listed[&store.title]["count"], 3);
    assert_eq!(listed[&store.title]["confirmed_count"], 3);
    assert_eq!(
        listed[&store.title]["columns"],
        serde_json::json!(["title"])
    );
    assert_eq!(listed[&store.missing]["count"], 2);
    assert_eq!(listed[&store.missing]["diff_kind"], "missing_rows");
    assert_eq!(listed[&store.new_error]["count"], 1);
    assert_eq!(listed[&store.new_error]["new_sqlstate"], "42P01");
    // Nine comparisons of the entries statement: 3 + 2 mismatches, 4 matches.
    assert_eq!(listed[&store.title]["fingerprint_comparisons"], 9);
    // Filters reach the store.
    let errors = store.json(&["list", "--kind", "new_error"]);
    assert_eq!(errors.as_array().unwrap().len(), 1);
    assert_eq!(errors[0]["id"], store.new_error.as_str());
    let recent = store.json(&["list", "--since", "1h", "--limit", "2"]);
    assert_eq!(recent.as_array().unwrap().len(), 2);
}

#[test]
fn show_prints_the_reproduction_bundle() {
    let store = known_store();
    let (code, out, err) = store.run(&["show", &store.title]);
    assert_eq!(code, Some(0), "{err}");
    for part in [
        format!("incident {}  open", store.title),
        "kind          mismatch/values".into(),
        "columns       title".into(),
        "fingerprint   1111222233334444".into(),
        "count         3 (3 confirmed by a recheck) of 9 comparisons".into(),
        "example 1 of 3".into(),
        "old sql       SELECT id, title FROM entries WHERE id = $1 ORDER BY id".into(),
        "new sql       SELECT id, title FROM v2.entries WHERE id = $1 ORDER BY id".into(),
        "params        $1='7'".into(),
        "settings      TimeZone=UTC".into(),
        "snapshot xmin 742".into(),
        "diff          id=7: title old='Title 7' new='Wrong title'".into(),
        "title    'Title 7' → 'Wrong title'".into(),
        "old row  id='7', title='Title 7'".into(),
        "new row  id='7', title='Wrong title'".into(),
    ] {
        assert!(out.contains(&part), "{part:?} missing:\n{out}");
    }

    let (code, out, _) = store.run(&["show", &store.missing]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("missing in new: id=11  id='11', title='Title 11'"),
        "{out}"
    );
    let (code, out, _) = store.run(&["show", &store.new_error]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("new error     ERROR 42P01: relation \"audit_log\" does not exist"),
        "{out}"
    );

    let detail = store.json(&["show", &store.title]);
    assert_eq!(detail["id"], store.title.as_str());
    let examples = detail["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 3);
    assert_eq!(examples[0]["snapshot_xmin"], 742);
    assert_eq!(examples[0]["params"], serde_json::json!(["7"]));
    assert_eq!(
        examples[0]["diff"]["changed"][0]["cells"][0]["new"],
        "Wrong title"
    );
}

#[test]
fn ack_mute_and_unmute_change_the_status_a_following_list_shows() {
    let store = known_store();
    let (code, out, err) = store.run(&["ack", &store.title, "--by", "alice"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("acknowledged"), "{out}");
    let listed = store.listed();
    assert_eq!(listed[&store.title]["status"], "acknowledged");
    assert_eq!(listed[&store.title]["status_by"], "alice");
    assert_eq!(listed[&store.missing]["status"], "open", "only one changed");
    let (_, table, _) = store.run(&["list"]);
    let row = table.lines().find(|l| l.starts_with(&store.title)).unwrap();
    assert!(row.contains("  acknowledged  "), "{table}");

    let reason = "known backfill bug, fixed by PR 42";
    let (code, out, err) = store.run(&[
        "mute",
        &store.missing,
        "--for",
        "2h",
        "--reason",
        reason,
        "--by",
        "bob",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("muted for 2h"), "{out}");
    let now_ms = pgshadow::store::now_ms();
    let muted = store.json(&["list", "--status", "muted"]);
    let muted = muted.as_array().unwrap();
    assert_eq!(muted.len(), 1, "{muted:?}");
    assert_eq!(muted[0]["id"], store.missing.as_str());
    assert_eq!(muted[0]["mute_reason"], reason);
    let until = muted[0]["muted_until_ms"].as_i64().unwrap();
    let two_hours = 2 * 3600 * 1000;
    assert!(
        (until - (now_ms + two_hours)).abs() < 60_000,
        "muted until {until}, expected about {}",
        now_ms + two_hours
    );
    let (_, shown, _) = store.run(&["show", &store.missing]);
    let status = shown.lines().next().unwrap();
    assert!(status.contains("muted until"), "{status}");
    assert!(status.contains(&format!("because {reason:?}")), "{status}");
    assert!(status.contains("by bob"), "{status}");

    // Unmute: the mute ends now, the incident reads as open again.
    let (code, _, err) = store.run(&["unmute", &store.missing]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(store.listed()[&store.missing]["status"], "open");
    // Unmuting an acknowledged incident reopens it.
    let (code, _, err) = store.run(&["unmute", &store.title]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(store.listed()[&store.title]["status"], "open");
}

#[test]
fn coverage_counts_comparisons_per_statement() {
    let store = known_store();
    let coverage = store.json(&["coverage"]);
    let entries = coverage
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["fingerprint"] == "1111222233334444")
        .unwrap();
    assert_eq!(entries["compared"], 9);
    assert_eq!(entries["matched"], 4);
    assert_eq!(entries["mismatched"], 5);
    let (code, table, _) = store.run(&["coverage"]);
    assert_eq!(code, Some(0));
    assert!(table.starts_with("FINGERPRINT"), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("1111222233334444  9 ")),
        "{table}"
    );
}

#[test]
fn an_unknown_id_exits_1_and_says_where_ids_are() {
    let store = known_store();
    for args in [
        &["show", "ffffffffffff"][..],
        &["ack", "ffffffffffff"],
        &["mute", "ffffffffffff", "--for", "1h", "--reason", "x"],
        &["unmute", "ffffffffffff"],
    ] {
        let (code, out, err) = store.run(args);
        assert_eq!(code, Some(1), "{args:?}: {out}");
        assert!(
            err.contains("no incident with id \"ffffffffffff\""),
            "{args:?}: {err}"
        );
        assert!(err.contains("pgshadow mismatches list"), "{err}");
    }
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    let (code, _, err) = pgshadow(&["mismatches", "list"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--store URL"), "{err}");
    assert!(err.contains("--config FILE"), "{err}");

    let store = known_store();
    let (code, _, err) = store.run(&["mute", &store.title, "--for", "2x", "--reason", "r"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown unit \"x\""), "{err}");
    assert!(err.contains("30m, 2h, 1d"), "{err}");
    let (code, _, err) = store.run(&["mute", &store.title, "--for", "2h"]);
    assert_eq!(code, Some(2), "a mute needs a reason");
    assert!(err.contains("--reason"), "{err}");
    let (code, _, err) = store.run(&["list", "--status", "closed"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("open, acknowledged, muted or resolved"),
        "{err}"
    );
    let (code, _, err) = pgshadow(&["mismatches", "list", "--store", "mysql://x"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("sqlite:// or postgres://"), "{err}");
}

#[test]
fn a_store_that_is_not_there_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.db");
    let url = format!("sqlite://{}", path.display());
    let (code, _, err) = pgshadow(&["mismatches", "list", "--store", &url]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no mismatch store at"), "{err}");
    assert!(err.contains("--store sqlite:///absolute/path"), "{err}");
    assert!(!path.exists(), "the CLI must not create an empty store");
}

#[test]
fn the_store_is_found_through_the_config_file() {
    let store = known_store();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pgshadow.toml");
    // The proxy's password variable is not set in an on-call shell: the
    // CLI still reads the [store] section.
    std::fs::write(
        &config,
        format!(
            "[shadow]\nenabled = true\npassword_env = \"PGSHADOW_TEST_SURELY_UNSET\"\n\
             [store]\nurl = \"{}\"\n",
            store.url
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let (code, out, err) = pgshadow(&["mismatches", "list", "--json", "--config", config]);
    assert_eq!(code, Some(0), "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3);
    let (code, out, err) = pgshadow(&["--config", config, "mismatches", "show", &store.title]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&format!("incident {}", store.title)), "{out}");

    // A broken [store] section is a usage error naming the key.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[store]\nmax_examples = 0\n").unwrap();
    let (code, _, err) = pgshadow(&["mismatches", "list", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("store.max_examples"), "{err}");
}

#[test]
fn ids_lists_every_differing_row_id_as_a_table_json_or_csv() {
    let store = known_store();
    let (code, out, err) = store.run(&["ids", &store.title]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(&format!(
            "incident {}: 1 distinct differing ids kept\n",
            store.title
        )),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.starts_with("changed"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("  3  ") && row.ends_with("id=7"), "{row}");

    let ids = store.json(&["ids", &store.missing]);
    assert_eq!(ids["ids_count"], 1);
    assert_eq!(ids["ids"][0]["change"], "missing");
    assert_eq!(ids["ids"][0]["values"], serde_json::json!(["11"]));
    assert_eq!(ids["ids"][0]["seen"], 2);

    let (code, csv, err) = store.run(&["ids", &store.missing, "--csv"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "id,change,first_seen,last_seen,seen");
    assert!(lines[1].starts_with("11,missing,"), "{csv}");
    assert!(lines[1].ends_with(",2"), "{csv}");

    // An error incident has no row ids; an unknown incident is an error.
    let (code, out, _) = store.run(&["ids", &store.new_error]);
    assert_eq!(code, Some(0));
    assert!(out.contains("no ids"), "{out}");
    let (code, _, err) = store.run(&["ids", "000000000000"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no incident"), "{err}");
}
