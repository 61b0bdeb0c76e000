//! The migration every shadow test uses, in the spirit of DESIGN.md's
//! story: a normalised old schema and a denormalised new one, exposed to
//! the application's queries under the same relation names.
//!
//! - `public` (old): `environments`, `entries` (one row per entry and
//!   environment, with sys columns) and `entry_fields` (name/value rows).
//! - `v2` (new): `entry_map` carries the sys columns and points into
//!   `field_values`, where identical values are stored once. Views named
//!   `entries` and `entry_fields` give the application the old shape.
//!
//! Rows are inserted into `v2.entry_map` in the reverse order, so rows that
//! tie on a sort key come back in a different order from the two schemas.

use crate::harness::{connect, Pg};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Entries per environment.
pub const ENTRIES: i64 = 200;
/// Environments.
pub const ENVIRONMENTS: i64 = 3;
/// Distinct `updated_at` values: rows tie in groups of ENTRIES / TIMESTAMPS.
pub const TIMESTAMPS: i64 = 10;

/// The role the shadow logs in as: read-only on both schemas.
pub const SHADOW_ROLE: &str = "pgshadow";

/// The sys_id of an entry in an environment.
pub fn sys_id(environment: i64, entry: i64) -> i64 {
    environment * 100_000 + entry
}

/// Creates both schemas, seeds them identically, and creates the shadow's
/// read-only role.
pub fn create(pg: &Pg) {
    pg.sql(&format!(
        r#"
        CREATE TABLE environments (id int PRIMARY KEY, name text NOT NULL);
        CREATE TABLE entries (
            sys_id bigint PRIMARY KEY,
            entry_id int NOT NULL,
            environment_id int NOT NULL REFERENCES environments (id),
            updated_at timestamptz NOT NULL,
            version int NOT NULL DEFAULT 1
        );
        CREATE TABLE entry_fields (
            sys_id bigint NOT NULL REFERENCES entries (sys_id),
            name text NOT NULL,
            value text,
            PRIMARY KEY (sys_id, name)
        );
        INSERT INTO environments SELECT g, 'env ' || g FROM generate_series(1, {envs}) g;
        INSERT INTO entries
            SELECT e * 100000 + n, n, e, timestamptz '2026-01-01 00:00+00' + (n % {ts}) * interval '1 hour', 1
            FROM generate_series(1, {envs}) e, generate_series(1, {entries}) n;
        INSERT INTO entry_fields
            SELECT sys_id, 'title', 'Title ' || entry_id FROM entries
            UNION ALL
            SELECT sys_id, 'body', CASE WHEN entry_id % 5 = 0 THEN NULL ELSE 'Body ' || entry_id END FROM entries;

        CREATE SCHEMA v2;
        CREATE TABLE v2.environments (id int PRIMARY KEY, name text NOT NULL);
        INSERT INTO v2.environments SELECT * FROM environments;
        CREATE TABLE v2.field_values (value_id bigserial PRIMARY KEY, value text NOT NULL UNIQUE);
        CREATE TABLE v2.entry_map (
            sys_id bigint PRIMARY KEY,
            entry_id int NOT NULL,
            environment_id int NOT NULL,
            updated_at timestamptz NOT NULL,
            version int NOT NULL,
            title_id bigint REFERENCES v2.field_values,
            body_id bigint REFERENCES v2.field_values
        );
        INSERT INTO v2.field_values (value)
            SELECT DISTINCT value FROM entry_fields WHERE value IS NOT NULL;
        INSERT INTO v2.entry_map
            SELECT e.sys_id, e.entry_id, e.environment_id, e.updated_at, e.version,
                   (SELECT value_id FROM v2.field_values v JOIN entry_fields f ON f.value = v.value
                     WHERE f.sys_id = e.sys_id AND f.name = 'title'),
                   (SELECT value_id FROM v2.field_values v JOIN entry_fields f ON f.value = v.value
                     WHERE f.sys_id = e.sys_id AND f.name = 'body')
            FROM entries e ORDER BY e.sys_id DESC;
        CREATE VIEW v2.entries AS
            SELECT sys_id, entry_id, environment_id, updated_at, version FROM v2.entry_map;
        CREATE VIEW v2.entry_fields AS
            SELECT m.sys_id, 'title'::text AS name, v.value
              FROM v2.entry_map m JOIN v2.field_values v ON v.value_id = m.title_id
            UNION ALL
            SELECT m.sys_id, 'body'::text, v.value
              FROM v2.entry_map m LEFT JOIN v2.field_values v ON v.value_id = m.body_id;

        -- The application's dual write: both schemas in one transaction.
        CREATE FUNCTION touch_entry(p_sys_id bigint, p_title text) RETURNS void
        LANGUAGE plpgsql AS $$
        DECLARE stamp timestamptz := clock_timestamp();
        DECLARE vid bigint;
        BEGIN
            UPDATE entries SET updated_at = stamp, version = version + 1 WHERE sys_id = p_sys_id;
            UPDATE entry_fields SET value = p_title WHERE sys_id = p_sys_id AND name = 'title';
            INSERT INTO v2.field_values (value) VALUES (p_title) ON CONFLICT (value) DO NOTHING;
            SELECT value_id INTO vid FROM v2.field_values WHERE value = p_title;
            UPDATE v2.entry_map SET updated_at = stamp, version = version + 1, title_id = vid
             WHERE sys_id = p_sys_id;
        END $$;

        CREATE ROLE {role} LOGIN;
        GRANT USAGE ON SCHEMA public, v2 TO {role};
        GRANT SELECT ON ALL TABLES IN SCHEMA public, v2 TO {role};
        "#,
        envs = ENVIRONMENTS,
        entries = ENTRIES,
        ts = TIMESTAMPS,
        role = SHADOW_ROLE,
    ));
}

/// The application's dual writer, straight to the database on `port` (the
/// proxy only ever compares reads): `touch_entry` on `entry(n)` for n = 1,
/// 2, … until `stop`. Returns how many writes it made.
pub async fn dual_writer(
    port: u16,
    stop: Arc<AtomicBool>,
    entry: impl Fn(u64) -> i64 + Send + 'static,
) -> tokio::task::JoinHandle<u64> {
    let client = connect(port).await;
    tokio::spawn(async move {
        let touch = client.prepare("SELECT touch_entry($1, $2)").await.unwrap();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            client
                .execute(&touch, &[&entry(n), &format!("Title v{n}")])
                .await
                .unwrap();
        }
        n
    })
}

/// `toml` with `log.values = true`: for tests that read parameter and row
/// values from the mismatch log line (by default it carries none).
pub fn logging_values(toml: &str) -> String {
    format!("{toml}\n[log]\nvalues = true\n")
}

/// The `[shadow]`/`[tiebreak]` config every test starts from, with
/// `extra_shadow` lines appended to `[shadow]`.
pub fn shadow_config(extra_shadow: &str) -> String {
    config(extra_shadow, "")
}

/// Same, with `extra_tiebreak` lines appended to `[tiebreak]`. Keys in the
/// extras replace the defaults.
pub fn config(extra_shadow: &str, extra_tiebreak: &str) -> String {
    let section = |defaults: &[(&str, String)], extra: &str| {
        let overridden = |key: &str| {
            extra
                .lines()
                .any(|l| l.split('=').next().map(str::trim) == Some(key))
        };
        let mut out: String = defaults
            .iter()
            .filter(|(k, _)| !overridden(k))
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect();
        out.push_str(extra);
        out.push('\n');
        out
    };
    let shadow = section(
        &[
            ("enabled", "true".into()),
            ("sample_rate", "1.0".into()),
            ("user", format!("\"{SHADOW_ROLE}\"")),
            ("old_search_path", "\"public\"".into()),
            ("new_search_path", "\"v2\"".into()),
            ("max_in_flight", "4".into()),
        ],
        extra_shadow,
    );
    let tiebreak = section(
        &[
            ("default_column", "\"id\"".into()),
            (
                "columns",
                "{ entries = \"sys_id\", entry_fields = \"sys_id\" }".into(),
            ),
        ],
        extra_tiebreak,
    );
    format!("[shadow]\n{shadow}[tiebreak]\n{tiebreak}")
}
