//! The mismatch store (issue "On-call surface", acceptance 1 and 2).
//!
//! One generic suite ([`suite`]) runs against both backends: an SQLite
//! file in a temporary directory and a database in a throw-away
//! PostgreSQL cluster. Outcomes are fed straight to the store writer, so
//! 10,000 of them take a second, not a minute. [`proxy`] then runs the
//! real binary against a real schema difference: incidents survive a
//! SIGKILL and keep counting after a restart, on both backends.

#[path = "../harness/mod.rs"]
mod harness;
#[path = "../harness/outcome.rs"]
mod outcome;

mod backend;
mod outcomes;
mod proxy;
mod suite;

/// Runs every listed suite test once per backend, as `sqlite::NAME` and
/// `postgres::NAME`.
macro_rules! store_suite {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let backend = crate::backend::Backend::sqlite();
                    crate::suite::$test(&backend).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let backend = crate::backend::Backend::postgres();
                    crate::suite::$test(&backend).await;
                }
            )*
        }
    };
}

store_suite!(
    ten_thousand_identical_mismatches_make_one_incident,
    different_columns_kinds_and_sqlstates_make_different_incidents,
    an_example_is_a_complete_reproduction_bundle,
    acknowledging_and_muting_change_the_status_and_the_open_count,
    a_mute_ends_by_itself_and_raises_an_unmuted_event,
    muted_incidents_keep_counting_without_events,
    filters_narrow_the_incident_list,
    coverage_counts_comparisons_and_skips_per_fingerprint,
    the_incident_bound_evicts_acknowledged_incidents_first,
    retention_deletes_what_was_not_seen_for_days,
    two_writers_on_one_store_add_up_and_open_the_incident_once,
    reopening_keeps_everything_and_a_newer_schema_is_refused,
    differing_row_ids_are_kept_once_per_incident_and_bounded,
    noisy_outcomes_are_counted_in_the_coverage_and_open_no_incident,
    a_version_1_store_is_migrated_keeping_its_incidents,
    a_slower_verdict_opens_one_incident_with_both_plans_and_recovery_resolves_it,
);
