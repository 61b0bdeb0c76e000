//! The behaviour every store backend must have. Each function takes the
//! backend it runs on; `main.rs` runs each once on SQLite and once on
//! PostgreSQL.

use crate::backend::Backend;
use crate::outcomes::{changed, failed, feed, matched, missing, opened, Feeder, ENTRIES, OTHER};
use pgshadow::capture::fingerprint::Fingerprint;
use pgshadow::capture::skip::SkipReason;
use pgshadow::diff::DiffKind;
use pgshadow::outcome::signature::{IncidentKind, Signature};
use pgshadow::outcome::Outcome;
use pgshadow::outcome::OutcomeKind;
use pgshadow::store::{
    now_ms, IdChange, Incident, IncidentEvent, IncidentFilter, IncidentStatus, Store, StoreError,
    StoreOptions,
};
use std::collections::BTreeMap;
use std::time::Duration;

async fn all(store: &Store) -> Vec<Incident> {
    store
        .list_incidents(&IncidentFilter::default())
        .await
        .expect("list incidents")
}

async fn listed(store: &Store, filter: IncidentFilter) -> Vec<String> {
    let mut ids: Vec<String> = store
        .list_incidents(&filter)
        .await
        .expect("list incidents")
        .into_iter()
        .map(|i| i.id)
        .collect();
    ids.sort();
    ids
}

fn id_of(outcome: &pgshadow::outcome::Outcome) -> String {
    Signature::of(outcome).expect("not a match").incident_id()
}

pub async fn ten_thousand_identical_mismatches_make_one_incident(backend: &Backend) {
    let store = backend.open().await;
    let events = feed(
        &store,
        (0..10_000).map(|_| changed(ENTRIES, 7, "title", "Title 7", "Wrong")),
    )
    .await;
    let incidents = all(&store).await;
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let incident = &incidents[0];
    assert_eq!(incident.count, 10_000);
    assert_eq!(incident.confirmed_count, 10_000);
    assert_eq!(incident.fingerprint_comparisons, 10_000);
    assert_eq!(incident.kind, IncidentKind::Mismatch);
    assert_eq!(incident.diff_kind, Some(DiffKind::Values));
    assert_eq!(incident.columns, ["title"]);
    assert_eq!(incident.status, IncidentStatus::Open);
    assert_eq!(incident.fingerprint, ENTRIES.to_string());
    assert_eq!(
        incident.id,
        id_of(&changed(ENTRIES, 1, "title", "a", "b")),
        "the id is the signature's, whatever the row and values"
    );
    let detail = store
        .incident(&incident.id)
        .await
        .unwrap()
        .expect("the incident");
    assert_eq!(
        detail.examples.len(),
        5,
        "store.max_examples bounds examples"
    );
    assert_eq!(detail.incident.example_count, 5);
    assert_eq!(opened(&events), [incident.id.as_str()], "one Opened event");
    assert_eq!(store.open_incident_count().await.unwrap(), 1);
}

pub async fn different_columns_kinds_and_sqlstates_make_different_incidents(backend: &Backend) {
    let store = backend.open().await;
    let new_error = |code| failed(ENTRIES, OutcomeKind::NewError, None, Some(code));
    let mut outcomes = vec![
        changed(ENTRIES, 7, "title", "Title 7", "Wrong"),
        changed(ENTRIES, 8, "title", "Title 8", "Wrong"),
        changed(ENTRIES, 9, "title", "Title 9", "Wrong"),
        changed(ENTRIES, 11, "body", "Body 11", "Wrong"),
        changed(ENTRIES, 12, "body", "Body 12", "Wrong"),
        missing(ENTRIES, 13),
        new_error("42P01"),
        new_error("42P01"),
        new_error("42703"),
        failed(
            ENTRIES,
            OutcomeKind::BothError,
            Some("42P01"),
            Some("42P01"),
        ),
        changed(OTHER, 7, "title", "Title 7", "Wrong"),
    ];
    outcomes.extend((0..4).map(|_| matched(ENTRIES)));
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for o in outcomes.iter().filter(|o| o.kind != OutcomeKind::Match) {
        *expected.entry(id_of(o)).or_default() += 1;
    }
    assert_eq!(expected.len(), 7, "seven signatures");
    let events = feed(&store, outcomes).await;

    let counts: BTreeMap<String, u64> = all(&store)
        .await
        .into_iter()
        .map(|i| (i.id, i.count))
        .collect();
    assert_eq!(counts, expected);
    let mut opened_ids = opened(&events);
    opened_ids.sort();
    assert_eq!(opened_ids, expected.keys().cloned().collect::<Vec<_>>());

    let title = store
        .incident(&id_of(&changed(ENTRIES, 7, "title", "", "")))
        .await
        .unwrap()
        .expect("title incident");
    assert_eq!(title.incident.columns, ["title"]);
    let body = &id_of(&changed(ENTRIES, 11, "body", "", ""));
    assert_eq!(counts.get(body), Some(&2));
    let both = store
        .incident(&id_of(&failed(
            ENTRIES,
            OutcomeKind::BothError,
            Some("42P01"),
            Some("42P01"),
        )))
        .await
        .unwrap()
        .expect("both_error incident");
    assert_eq!(both.incident.kind, IncidentKind::BothError);
    assert_eq!(both.incident.old_sqlstate.as_deref(), Some("42P01"));
    assert_eq!(both.incident.new_sqlstate.as_deref(), Some("42P01"));
    assert_eq!(both.incident.diff_kind, None);
}

pub async fn an_example_is_a_complete_reproduction_bundle(backend: &Backend) {
    let store = backend.open().await;
    let mismatch = changed(ENTRIES, 7, "title", "Title 7", "Wrong");
    let error = failed(ENTRIES, OutcomeKind::NewError, None, Some("42P01"));
    feed(&store, [mismatch.clone(), error.clone()]).await;

    let detail = store
        .incident(&id_of(&mismatch))
        .await
        .unwrap()
        .expect("incident");
    assert_eq!(detail.incident.client_sql, &*mismatch.client_sql);
    assert_eq!(detail.incident.database, "app");
    let example = &detail.examples[0];
    assert_eq!(example.old_sql, &*mismatch.old_sql);
    assert_eq!(example.new_sql, &*mismatch.new_sql);
    assert_eq!(example.params, [Some("7".to_string())]);
    assert_eq!(example.settings, [("TimeZone".into(), "UTC".into())]);
    assert_eq!(example.snapshot_xmin, Some(742));
    assert_eq!(example.confirmed, Some(true));
    assert_eq!(
        (example.ordering.label(), example.tiebreak.label()),
        ("total", "appended")
    );
    assert!((example.old_ms - 1.5).abs() < 1e-9, "{}", example.old_ms);
    let diff = example.diff.as_ref().expect("the diff");
    assert_eq!(diff.summary, "id=7: title old='Title 7' new='Wrong'");
    assert_eq!(diff.old_columns, ["id", "title"]);
    let cell = &diff.changed[0].cells[0];
    assert_eq!(
        (
            cell.column.as_str(),
            cell.old.as_deref(),
            cell.new.as_deref()
        ),
        ("title", Some("Title 7"), Some("Wrong"))
    );
    assert_eq!(
        diff.changed[0].new_row,
        [Some("7".into()), Some("Wrong".into())]
    );
    assert!(example.seen_at_ms > 0 && example.seen_at_ms <= now_ms());

    // What the admin API will serve: old and new values side by side.
    let json = serde_json::to_value(&detail).unwrap();
    assert_eq!(json["id"], detail.incident.id);
    assert_eq!(json["kind"], "mismatch");
    assert_eq!(json["status"], "open");
    assert_eq!(
        json["examples"][0]["diff"]["changed"][0]["cells"][0]["old"],
        "Title 7"
    );
    assert_eq!(
        json["examples"][0]["diff"]["changed"][0]["cells"][0]["new"],
        "Wrong"
    );

    let detail = store
        .incident(&id_of(&error))
        .await
        .unwrap()
        .expect("incident");
    let example = &detail.examples[0];
    assert!(example.diff.is_none());
    let new_error = example.new_error.as_ref().expect("new side's error");
    assert_eq!(
        (new_error.code.as_str(), new_error.message.as_str()),
        ("42P01", "failure 42P01")
    );
    assert!(example.old_error.is_none());
}

pub async fn acknowledging_and_muting_change_the_status_and_the_open_count(backend: &Backend) {
    let store = backend.open().await;
    let (a, b, c) = (
        changed(ENTRIES, 7, "title", "x", "y"),
        changed(ENTRIES, 7, "body", "x", "y"),
        missing(ENTRIES, 7),
    );
    let (ida, idb) = (id_of(&a), id_of(&b));
    feed(&store, [a, b, c]).await;
    assert_eq!(store.open_incident_count().await.unwrap(), 3);

    let acked = store
        .ack(&ida, Some("alice"))
        .await
        .unwrap()
        .expect("found");
    assert_eq!(acked.status, IncidentStatus::Acknowledged);
    assert_eq!(acked.status_by.as_deref(), Some("alice"));
    assert!(acked.status_at_ms.is_some());
    assert_eq!(store.open_incident_count().await.unwrap(), 2);

    let muted = store
        .mute(&idb, None, "known backfill lag", Some("bob"))
        .await
        .unwrap()
        .expect("found");
    assert_eq!(muted.status, IncidentStatus::Muted);
    assert_eq!(muted.mute_reason.as_deref(), Some("known backfill lag"));
    assert_eq!(muted.muted_until_ms, None);
    assert_eq!(store.open_incident_count().await.unwrap(), 1);
    let acknowledged = IncidentFilter {
        status: Some(IncidentStatus::Acknowledged),
        ..Default::default()
    };
    assert_eq!(listed(&store, acknowledged).await, [ida.as_str()]);

    let unmuted = store.unmute(&idb, None).await.unwrap().expect("found");
    assert_eq!(unmuted.status, IncidentStatus::Open);
    assert_eq!(store.open_incident_count().await.unwrap(), 2);
    assert!(store.ack("000000000000", None).await.unwrap().is_none());
    assert!(store.incident("000000000000").await.unwrap().is_none());
}

pub async fn a_mute_ends_by_itself_and_raises_an_unmuted_event(backend: &Backend) {
    let store = backend.open().await;
    let mut feeder = Feeder::start(&store);
    let outcome = changed(ENTRIES, 7, "title", "x", "y");
    let id = id_of(&outcome);
    feeder.send([outcome]).await;
    let first = tokio::time::timeout(Duration::from_secs(10), feeder.events.recv())
        .await
        .expect("Opened in time")
        .expect("event");
    assert!(
        matches!(first, IncidentEvent::Opened(ref n) if n.id == id),
        "{first:?}"
    );

    let until = now_ms() + 500;
    let muted = store.mute(&id, Some(until), "deploy", None).await.unwrap();
    assert_eq!(muted.map(|i| i.status), Some(IncidentStatus::Muted));
    assert_eq!(store.open_incident_count().await.unwrap(), 0);

    let event = tokio::time::timeout(Duration::from_secs(10), feeder.events.recv())
        .await
        .expect("the mute ends within seconds")
        .expect("event");
    match event {
        IncidentEvent::Unmuted(n) => {
            assert_eq!(n.id, id);
            assert_eq!(n.summary.as_deref(), Some("id=7: title old='x' new='y'"));
        }
        other => panic!("expected Unmuted, got {other:?}"),
    }
    assert!(now_ms() >= until);
    let incident = store.incident(&id).await.unwrap().expect("incident");
    assert_eq!(incident.incident.status, IncidentStatus::Open);
    assert_eq!(store.open_incident_count().await.unwrap(), 1);
    assert!(feeder.finish().await.is_empty(), "one Unmuted event only");
}

pub async fn muted_incidents_keep_counting_without_events(backend: &Backend) {
    let store = backend.open().await;
    let a = || changed(ENTRIES, 7, "title", "x", "y");
    let b = changed(OTHER, 7, "title", "x", "y");
    let (ida, idb) = (id_of(&a()), id_of(&b));
    assert_eq!(opened(&feed(&store, [a(), a()]).await), [ida.as_str()]);
    store.mute(&ida, None, "expected", None).await.unwrap();

    let mut later: Vec<_> = (0..5).map(|_| a()).collect();
    later.push(b);
    let events = feed(&store, later).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(opened(&events), [idb]);
    let muted = store
        .incident(&ida)
        .await
        .unwrap()
        .expect("incident")
        .incident;
    assert_eq!(muted.count, 7, "muted incidents keep counting");
    assert_eq!(muted.status, IncidentStatus::Muted);
}

pub async fn filters_narrow_the_incident_list(backend: &Backend) {
    let store = backend.open().await;
    let title = changed(ENTRIES, 7, "title", "x", "y");
    let error = failed(ENTRIES, OutcomeKind::NewError, None, Some("42P01"));
    let other = changed(OTHER, 7, "title", "x", "y");
    let (t, e, o) = (id_of(&title), id_of(&error), id_of(&other));
    feed(&store, [title, error, other]).await;
    store.ack(&o, None).await.unwrap();

    let mut both = vec![t.clone(), o.clone()];
    both.sort();
    let mut open = vec![t.clone(), e.clone()];
    open.sort();
    let filter = IncidentFilter::default;
    let kind = |k| IncidentFilter {
        kind: Some(k),
        ..filter()
    };
    assert_eq!(listed(&store, kind(IncidentKind::Mismatch)).await, both);
    assert_eq!(
        listed(&store, kind(IncidentKind::NewError)).await,
        [e.as_str()]
    );
    let fingerprint = IncidentFilter {
        fingerprint: Some(OTHER.to_string()),
        ..filter()
    };
    assert_eq!(listed(&store, fingerprint).await, [o.as_str()]);
    let status = |s| IncidentFilter {
        status: Some(s),
        ..filter()
    };
    assert_eq!(listed(&store, status(IncidentStatus::Open)).await, open);
    assert_eq!(
        listed(&store, status(IncidentStatus::Acknowledged)).await,
        [o]
    );
    assert!(listed(&store, status(IncidentStatus::Muted))
        .await
        .is_empty());
    let since = |ms| IncidentFilter {
        since_ms: Some(ms),
        ..filter()
    };
    assert_eq!(listed(&store, since(0)).await.len(), 3);
    assert!(listed(&store, since(now_ms() + 60_000)).await.is_empty());
    let limited = IncidentFilter {
        limit: 2,
        ..filter()
    };
    assert_eq!(listed(&store, limited).await.len(), 2);
}

pub async fn coverage_counts_comparisons_and_skips_per_fingerprint(backend: &Backend) {
    let store = backend.open().await;
    let rare = Fingerprint(9);
    store
        .record_skips(ENTRIES, SkipReason::NotSampled, 1000)
        .await
        .unwrap();
    let feeder = Feeder::start(&store);
    let recorder = feeder.writer.skip_counts();
    recorder.record_skips(ENTRIES, SkipReason::NotSampled, 400);
    recorder.record_skips(ENTRIES, SkipReason::NotSampled, 100);
    recorder.record_skips(rare, SkipReason::LimitWithoutOrder, 4);
    let mut outcomes: Vec<_> = (0..300).map(|_| matched(ENTRIES)).collect();
    outcomes.extend((0..97).map(|_| matched(OTHER)));
    outcomes.extend((0..3).map(|i| changed(OTHER, i, "title", "x", "y")));
    outcomes.extend((0..2).map(|_| failed(OTHER, OutcomeKind::Timeout, Some("57014"), None)));
    feeder.send(outcomes).await;
    feeder.finish().await;

    let coverage = store.list_coverage(None, 100).await.unwrap();
    let by: BTreeMap<String, _> = coverage
        .into_iter()
        .map(|c| (c.fingerprint.clone(), c))
        .collect();
    assert_eq!(by.len(), 3, "{by:#?}");
    let entries = &by[&ENTRIES.to_string()];
    assert_eq!(
        (entries.compared, entries.matched, entries.mismatched),
        (300, 300, 0)
    );
    assert_eq!(entries.skipped.get("not_sampled"), Some(&1500));
    assert_eq!(
        entries.mismatch_rate_upper_95,
        Some(0.01),
        "rule of three: 3/300"
    );
    assert!(entries.client_sql.is_some());

    let other = &by[&OTHER.to_string()];
    assert_eq!(
        (
            other.compared,
            other.matched,
            other.mismatched,
            other.errored
        ),
        (102, 97, 3, 2)
    );
    let bound = other.mismatch_rate_upper_95.expect("a bound");
    assert!(bound > 0.03 && bound < 0.1, "3 in 100: {bound}");

    let rare = &by[&rare.to_string()];
    assert_eq!(rare.compared, 0);
    assert_eq!(rare.skipped.get("limit_without_order"), Some(&4));
    assert_eq!(rare.mismatch_rate_upper_95, None);
    assert_eq!(rare.client_sql, None);

    let one = store
        .list_coverage(Some(&OTHER.to_string()), 100)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(
        store.list_coverage(None, 1).await.unwrap()[0].fingerprint,
        ENTRIES.to_string()
    );
}

pub async fn the_incident_bound_evicts_acknowledged_incidents_first(backend: &Backend) {
    let store = backend
        .open_with(StoreOptions {
            max_incidents: 3,
            ..StoreOptions::default()
        })
        .await;
    let make = |column: &str| changed(ENTRIES, 7, column, "x", "y");
    let ids: Vec<String> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|c| id_of(&make(c)))
        .collect();
    for column in ["a", "b", "c"] {
        feed(&store, [make(column)]).await;
        // Distinct last_seen times, so "least recently seen" is defined.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    store.ack(&ids[1], None).await.unwrap();
    let events = feed(&store, [make("d")]).await;
    assert_eq!(opened(&events), [ids[3].clone()]);
    let mut expected = vec![ids[0].clone(), ids[2].clone(), ids[3].clone()];
    expected.sort();
    assert_eq!(
        listed(&store, IncidentFilter::default()).await,
        expected,
        "b was acknowledged"
    );
    assert!(store.incident(&ids[1]).await.unwrap().is_none());

    store.mute(&ids[0], None, "keep", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    feed(&store, [make("e")]).await;
    let mut expected = vec![ids[0].clone(), ids[3].clone(), ids[4].clone()];
    expected.sort();
    assert_eq!(
        listed(&store, IncidentFilter::default()).await,
        expected,
        "c, the least recently seen open incident, went; muted a stayed"
    );
}

pub async fn retention_deletes_what_was_not_seen_for_days(backend: &Backend) {
    let store = backend.open().await;
    let old = changed(ENTRIES, 7, "title", "x", "y");
    let live = changed(OTHER, 7, "title", "x", "y");
    let (old_id, live_id) = (id_of(&old), id_of(&live));
    feed(&store, [old, live.clone()]).await;
    store
        .record_skips(ENTRIES, SkipReason::NotRead, 2)
        .await
        .unwrap();
    backend
        .sql(&format!(
            "UPDATE incidents SET first_seen = 0, last_seen = 0 WHERE id = '{old_id}';
             UPDATE examples SET seen_at = 0;
             UPDATE coverage SET first_seen = 0, last_seen = 0 WHERE fingerprint = '{ENTRIES}';
             UPDATE coverage_skips SET last_seen = 0 WHERE fingerprint = '{ENTRIES}';"
        ))
        .await;

    let expired = store.expire().await.unwrap();
    assert_eq!(expired.incidents, 1);
    assert_eq!(
        expired.examples, 2,
        "the old incident's and the live one's old example"
    );
    assert_eq!(
        expired.coverage, 2,
        "ENTRIES' coverage row and its skip row"
    );
    assert!(store.incident(&old_id).await.unwrap().is_none());
    let kept = store
        .incident(&live_id)
        .await
        .unwrap()
        .expect("seen recently");
    assert!(kept.examples.is_empty());
    assert_eq!(kept.incident.example_count, 0);
    let fingerprints: Vec<String> = store
        .list_coverage(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.fingerprint)
        .collect();
    assert_eq!(fingerprints, [OTHER.to_string()]);

    feed(&store, [live]).await;
    let kept = store.incident(&live_id).await.unwrap().expect("incident");
    assert_eq!(kept.examples.len(), 1, "room for a fresh example");
    assert_eq!(kept.incident.count, 2);
    assert_eq!(store.expire().await.unwrap(), Default::default());
}

pub async fn two_writers_on_one_store_add_up_and_open_the_incident_once(backend: &Backend) {
    let (one, two) = (backend.open().await, backend.open().await);
    let (first, second) = (Feeder::start(&one), Feeder::start(&two));
    let same = || changed(ENTRIES, 7, "title", "x", "y");
    tokio::join!(
        first.send((0..500).map(|_| same())),
        second.send((0..500).map(|_| same()))
    );
    let (a, b) = tokio::join!(first.finish(), second.finish());
    let opened_total = opened(&a).len() + opened(&b).len();
    assert_eq!(
        opened_total, 1,
        "exactly one instance reports the new incident"
    );
    let incidents = all(&one).await;
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].count, 1000);
    assert_eq!(incidents[0].fingerprint_comparisons, 1000);
    assert_eq!(incidents[0].example_count, 5);
    let detail = two
        .incident(&incidents[0].id)
        .await
        .unwrap()
        .expect("incident");
    assert_eq!(detail.examples.len(), 5);
}

pub async fn reopening_keeps_everything_and_a_newer_schema_is_refused(backend: &Backend) {
    let outcome = changed(ENTRIES, 7, "title", "x", "y");
    let before = {
        let store = backend.open().await;
        feed(&store, (0..3).map(|_| outcome.clone())).await;
        store.ack(&id_of(&outcome), Some("carol")).await.unwrap();
        all(&store).await
    };
    let store = backend.open().await;
    assert_eq!(all(&store).await, before);
    drop(store);

    backend.sql("UPDATE schema_version SET version = 99").await;
    match pgshadow::store::Store::open(&backend.url(), StoreOptions::default()).await {
        Err(e @ StoreError::TooNew { found: 99, .. }) => {
            assert!(e.to_string().contains("upgrade pgshadow"), "{e}")
        }
        Err(e) => panic!("expected TooNew, got {e}"),
        Ok(_) => panic!("a store from a newer pgshadow was opened"),
    }
}

pub async fn differing_row_ids_are_kept_once_per_incident_and_bounded(backend: &Backend) {
    let store = backend
        .open_with(StoreOptions {
            max_ids_per_incident: 3,
            ..StoreOptions::default()
        })
        .await;
    let wrong = |id: i64| changed(ENTRIES, id, "title", "a", "b");
    feed(&store, [wrong(1), wrong(2), wrong(1)]).await;
    let incident = id_of(&wrong(1));
    let first = store
        .incident_ids(&incident, 100)
        .await
        .unwrap()
        .expect("incident");
    assert_eq!(first.ids_count, 2);
    let one = first
        .ids
        .iter()
        .find(|i| i.values == [Some("1".to_string())])
        .expect("id 1");
    assert_eq!(
        (one.seen, one.columns.as_slice()),
        (2, &["id".to_string()][..])
    );
    assert_eq!(one.change, IdChange::Changed);
    // A later batch: id 2 again, one more fits, two do not.
    feed(&store, [wrong(3), wrong(4), wrong(2), wrong(5)]).await;
    let ids = store
        .incident_ids(&incident, 100)
        .await
        .unwrap()
        .expect("incident");
    assert_eq!(ids.ids_count, 3, "{ids:#?}");
    assert_eq!(ids.ids_omitted, 2, "ids 4 and 5 are only counted");
    let mut kept: Vec<String> = ids
        .ids
        .iter()
        .filter_map(|i| i.values.first().cloned().flatten())
        .collect();
    kept.sort();
    assert_eq!(kept, ["1", "2", "3"]);
    let two = ids
        .ids
        .iter()
        .find(|i| i.values == [Some("2".to_string())])
        .expect("id 2");
    assert_eq!(two.seen, 2);
    assert!(two.last_seen_ms >= two.first_seen_ms);
    let incident_row = all(&store)
        .await
        .into_iter()
        .find(|i| i.id == incident)
        .unwrap();
    assert_eq!((incident_row.ids_count, incident_row.ids_omitted), (3, 2));
    // A missing row is listed as missing, in its own incident.
    feed(&store, [missing(ENTRIES, 9)]).await;
    let lost = store
        .incident_ids(&id_of(&missing(ENTRIES, 9)), 100)
        .await
        .unwrap()
        .expect("incident");
    assert_eq!(lost.ids.len(), 1);
    assert_eq!(lost.ids[0].change, IdChange::Missing);
    assert!(store
        .incident_ids("000000000000", 10)
        .await
        .unwrap()
        .is_none());
}

pub async fn noisy_outcomes_are_counted_in_the_coverage_and_open_no_incident(backend: &Backend) {
    let store = backend.open().await;
    let noisy = Outcome {
        kind: OutcomeKind::Noisy,
        noise: Some("id=1: score old=1.5 new=1.7".into()),
        ..changed(ENTRIES, 1, "score", "1.5", "1.9")
    };
    let events = feed(&store, [noisy.clone(), noisy, matched(ENTRIES)]).await;
    assert!(opened(&events).is_empty());
    assert!(all(&store).await.is_empty(), "no incident");
    let coverage = store.list_coverage(None, 10).await.unwrap();
    assert_eq!(coverage.len(), 1);
    assert_eq!(
        (
            coverage[0].compared,
            coverage[0].noisy,
            coverage[0].mismatched
        ),
        (3, 2, 0)
    );
}

pub async fn a_version_1_store_is_migrated_keeping_its_incidents(backend: &Backend) {
    let outcome = changed(ENTRIES, 7, "title", "x", "y");
    {
        let store = backend.open().await;
        feed(&store, [outcome.clone()]).await;
    }
    // What migration 1 alone created.
    backend
        .sql(
            "DROP TABLE incident_ids;
             ALTER TABLE incidents DROP COLUMN ids_count;
             ALTER TABLE incidents DROP COLUMN ids_omitted;
             ALTER TABLE coverage DROP COLUMN noisy;
             ALTER TABLE examples DROP COLUMN keys;
             ALTER TABLE examples DROP COLUMN ratio;
             ALTER TABLE examples DROP COLUMN old_plan;
             ALTER TABLE examples DROP COLUMN new_plan;
             ALTER TABLE coverage DROP COLUMN latency_samples;
             ALTER TABLE coverage DROP COLUMN old_p50_ms;
             ALTER TABLE coverage DROP COLUMN old_p95_ms;
             ALTER TABLE coverage DROP COLUMN new_p50_ms;
             ALTER TABLE coverage DROP COLUMN new_p95_ms;
             UPDATE schema_version SET version = 1;",
        )
        .await;
    let store = backend.open().await;
    let incidents = all(&store).await;
    assert_eq!(incidents.len(), 1);
    assert_eq!((incidents[0].count, incidents[0].ids_count), (1, 0));
    feed(&store, [outcome.clone()]).await;
    let ids = store
        .incident_ids(&id_of(&outcome), 10)
        .await
        .unwrap()
        .expect("incident");
    assert_eq!(ids.ids_count, 1, "the migrated store keeps ids");
    let detail = store.incident(&id_of(&outcome)).await.unwrap().unwrap();
    assert_eq!(detail.examples.len(), 2);
    assert_eq!(detail.examples[0].keys, "", "written before keys were kept");
    assert_eq!(detail.examples[1].keys, "entries (id) primary_key");
}

/// A `slower` verdict on `fingerprint` (recovered when `slower` is false).
fn slower_verdict(fingerprint: Fingerprint, slower: bool) -> Outcome {
    use pgshadow::outcome::SlowerFinding;
    use pgshadow::outcome::{LatencySummary, Verdict};
    let summary = LatencySummary {
        samples: 20,
        old_p50_ms: 0.2,
        old_p95_ms: 0.3,
        new_p50_ms: 9.0,
        new_p95_ms: 11.0,
    };
    let plan = |node: &str| format!(r#"[{{"Plan": {{"Node Type": "{node}"}}}}]"#);
    Outcome {
        kind: OutcomeKind::Slower,
        old_time: Duration::from_micros(200),
        new_time: Duration::from_millis(9),
        detail: Some("new side slower".into()),
        latency: Some(summary),
        slower: Some(Box::new(SlowerFinding {
            verdict: Verdict {
                slower,
                initial: false,
                median_ratio: 45.0,
                pairs: 20,
                clearly_slower: 20,
                old_median_ms: 0.2,
                new_median_ms: 9.0,
                summary,
            },
            old_plan: slower.then(|| plan("Index Scan")),
            new_plan: slower.then(|| plan("Seq Scan")),
        })),
        ..matched(fingerprint)
    }
}

pub async fn a_slower_verdict_opens_one_incident_with_both_plans_and_recovery_resolves_it(
    backend: &Backend,
) {
    let store = backend.open().await;
    let mut timed = matched(ENTRIES);
    timed.latency = slower_verdict(ENTRIES, true).latency;
    let events = feed(
        &store,
        [timed, slower_verdict(ENTRIES, true), matched(ENTRIES)],
    )
    .await;
    let incidents = all(&store).await;
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let incident = &incidents[0];
    assert_eq!(opened(&events), vec![incident.id.clone()]);
    assert_eq!(
        (incident.kind, incident.status, incident.count),
        (IncidentKind::Slower, IncidentStatus::Open, 1)
    );
    let detail = store.incident(&incident.id).await.unwrap().unwrap();
    let example = &detail.examples[0];
    assert_eq!(example.ratio, Some(45.0));
    assert_eq!((example.old_ms, example.new_ms), (0.2, 9.0));
    assert_eq!(
        example.old_plan.as_ref().unwrap()[0]["Plan"]["Node Type"],
        "Index Scan"
    );
    assert_eq!(
        example.new_plan.as_ref().unwrap()[0]["Plan"]["Node Type"],
        "Seq Scan"
    );
    // The verdict is not a comparison; the timed match carried the
    // distributions into the coverage.
    let coverage = store.list_coverage(None, 10).await.unwrap();
    assert_eq!(coverage[0].compared, 2);
    let latency = coverage[0].latency.clone().expect("latency");
    assert_eq!((latency.old_p50_ms, latency.new_p95_ms), (0.2, 11.0));
    assert!((latency.p50_ratio - 45.0).abs() < 1e-9, "{latency:?}");
    assert_eq!(store.open_incident_count().await.unwrap(), 1);

    feed(&store, [slower_verdict(ENTRIES, false)]).await;
    let resolved = &all(&store).await[0];
    assert_eq!(resolved.status, IncidentStatus::Resolved);
    assert_eq!(resolved.count, 1, "a recovery is not counted");
    assert_eq!(store.open_incident_count().await.unwrap(), 0);
    let only_resolved = IncidentFilter {
        status: Some(IncidentStatus::Resolved),
        ..IncidentFilter::default()
    };
    assert_eq!(
        listed(&store, only_resolved).await,
        vec![resolved.id.clone()]
    );

    // Slower again: the same incident opens again.
    feed(&store, [slower_verdict(ENTRIES, true)]).await;
    let again = &all(&store).await[0];
    assert_eq!((again.status, again.count), (IncidentStatus::Open, 2));
}
