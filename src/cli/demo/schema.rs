//! The demo's migration: an old, normalised schema, the new, denormalised
//! one it is being migrated to, and one deliberate backfill bug.
//!
//! The story (DESIGN.md): a content platform keeps entries in several
//! environments (`master`, `staging`, …). Each environment has its own copy
//! of every entry, with sys columns, and an entry's fields live in
//! name/value rows.
//!
//! - Old, schema `public`: `environments`, `entries` (one row per entry
//!   and environment, `sys_id` is the stable id) and `entry_fields`.
//! - New, schema `v2`: `entry_map` carries the sys columns and points into
//!   `field_values`, where identical values are stored once. Views named
//!   `entries` and `entry_fields` give the application's queries the old
//!   shape, so the same SQL runs on both with only `search_path` changed.
//!
//! The backfill copied `master` through a connection that took UTF-8 for
//! Latin-1: ASCII survived, every accented title came out double-encoded
//! (`Café` became `CafÃ©`). Exactly [`BUGGY_ENTRIES`] are affected, and the
//! demo must find all of them. Everything else matches, although `v2`
//! returns rows that tie on a sort key in a different physical order (its
//! rows were inserted in reverse), which is what the tiebreaker is for.
//!
//! And the new schema is slower in one place: `v2.assets` was copied
//! without the index on `sys_id` the old table has, so an entry's assets
//! ([`SLOW_STATEMENT`]) take a sequential scan over every asset instead of
//! an index lookup. The rows are the same; only the `slower` incident
//! tells.

/// The database the demo application uses.
pub const DATABASE: &str = "demo";
/// The application's role (reads and dual-writes).
pub const APP_ROLE: &str = "app";
/// The shadow's role: read-only on both schemas.
pub const SHADOW_ROLE: &str = "pgshadow";
/// The search path of the old and of the new schema.
pub const OLD_SCHEMA: &str = "public";
/// The new schema.
pub const NEW_SCHEMA: &str = "v2";

/// Environments, by id. Every entry has a copy in each.
pub const ENVIRONMENTS: [(i64, &str); 4] = [(1, "master"), (2, "staging"), (3, "qa"), (4, "dev")];
/// The environment whose backfill went wrong.
pub const BUGGY_ENVIRONMENT: i64 = 1;
/// Entries per environment.
pub const ENTRIES_PER_ENVIRONMENT: i64 = 1000;
/// Distinct seeded `updated_at` values per environment: entries tie on
/// it in groups of about 80, so pages of a listing sorted by it end in
/// the middle of a tie.
pub const TIMESTAMPS: i64 = 12;

/// The entries whose title has non-ASCII characters, in every environment:
/// `(entry_id, title)`. In `master` their `v2` copy is double-encoded.
pub const ACCENTED_TITLES: [(i64, &str); 5] = [
    (17, "Café au lait"),
    (242, "Crème brûlée"),
    (468, "Smörgåsbord"),
    (613, "Jalapeño poppers"),
    (891, "Döner kebab"),
];

/// The column the bug is in.
pub const BUGGY_COLUMN: &str = "title";

/// Assets (images, attachments) per entry copy: enough in all that a
/// sequential scan takes milliseconds where the index takes microseconds.
pub const ASSETS_PER_ENTRY: i64 = 50;

/// The statement the forgotten index makes slow: an entry's assets.
pub const SLOW_STATEMENT: &str =
    "SELECT id, file_name, bytes FROM assets WHERE sys_id = $1 ORDER BY id";

/// The sys_id of an entry's copy in an environment.
pub fn sys_id(environment: i64, entry_id: i64) -> i64 {
    environment * 100_000 + entry_id
}

/// The sys_ids whose `v2` title differs: the seeded bug.
pub const BUGGY_ENTRIES: [i64; 5] = [
    BUGGY_ENVIRONMENT * 100_000 + ACCENTED_TITLES[0].0,
    BUGGY_ENVIRONMENT * 100_000 + ACCENTED_TITLES[1].0,
    BUGGY_ENVIRONMENT * 100_000 + ACCENTED_TITLES[2].0,
    BUGGY_ENVIRONMENT * 100_000 + ACCENTED_TITLES[3].0,
    BUGGY_ENVIRONMENT * 100_000 + ACCENTED_TITLES[4].0,
];

/// Entries the demo's homepage features: a few accented ones (among them
/// the buggy copies in `master`) and some plain ones. Being on every
/// homepage view, they are read often, as popular rows are in production.
pub fn featured_entries() -> Vec<i64> {
    let mut ids: Vec<i64> = BUGGY_ENTRIES.to_vec();
    ids.extend([1, 2, 3, 50, 100].map(|n| sys_id(BUGGY_ENVIRONMENT, n)));
    ids
}

/// Statements run as the superuser in the `postgres` database: the roles
/// and the application's database. Separate statements, because CREATE
/// DATABASE cannot run inside a transaction block.
pub fn cluster_setup() -> Vec<String> {
    vec![
        format!("CREATE ROLE {APP_ROLE} LOGIN"),
        format!("CREATE ROLE {SHADOW_ROLE} LOGIN"),
        format!("CREATE DATABASE {DATABASE}"),
    ]
}

/// The old schema and its data, run as the superuser in [`DATABASE`].
pub fn old_schema() -> String {
    let environments = ENVIRONMENTS
        .iter()
        .map(|(id, name)| format!("({id}, '{name}')"))
        .collect::<Vec<_>>()
        .join(", ");
    let accented = ACCENTED_TITLES
        .iter()
        .map(|(id, title)| format!("({id}, '{}')", title.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
        CREATE TABLE environments (
            id int PRIMARY KEY,
            name text NOT NULL UNIQUE
        );
        -- One row per entry and environment; sys_id is the stable id.
        CREATE TABLE entries (
            sys_id bigint PRIMARY KEY,
            entry_id int NOT NULL,
            environment_id int NOT NULL REFERENCES environments (id),
            content_type text NOT NULL,
            updated_at timestamptz NOT NULL,
            version int NOT NULL DEFAULT 1,
            UNIQUE (environment_id, entry_id)
        );
        CREATE INDEX entries_by_update ON entries (environment_id, updated_at);
        CREATE TABLE entry_fields (
            sys_id bigint NOT NULL REFERENCES entries (sys_id),
            name text NOT NULL,
            value text,
            PRIMARY KEY (sys_id, name)
        );

        INSERT INTO environments VALUES {environments};
        INSERT INTO entries
            SELECT e.id * 100000 + n, n, e.id,
                   CASE WHEN n % 3 = 0 THEN 'recipe' ELSE 'article' END,
                   timestamptz '2026-01-01 09:00+00' + (n % {timestamps}) * interval '1 hour',
                   1
              FROM environments e, generate_series(1, {entries}) n;
        INSERT INTO entry_fields
            SELECT e.sys_id, 'title', coalesce(a.title, 'Title ' || e.entry_id)
              FROM entries e LEFT JOIN (VALUES {accented}) a (entry_id, title) USING (entry_id)
            UNION ALL
            SELECT sys_id, 'body',
                   CASE WHEN entry_id % 7 = 0 THEN NULL ELSE 'Body of entry ' || entry_id END
              FROM entries;
        -- Each entry's assets; looked up by entry.
        CREATE TABLE assets (
            id bigint PRIMARY KEY,
            sys_id bigint NOT NULL,
            file_name text NOT NULL,
            bytes int NOT NULL
        );
        INSERT INTO assets
            SELECT row_number() OVER (), e.sys_id, 'asset-' || e.sys_id || '-' || n || '.jpg',
                   1000 + (e.sys_id * 7 + n * 13) % 90000
              FROM entries e, generate_series(1, {assets}) n;
        CREATE INDEX assets_by_entry ON assets (sys_id);
        ANALYZE environments, entries, entry_fields, assets;
        "#,
        timestamps = TIMESTAMPS,
        entries = ENTRIES_PER_ENVIRONMENT,
        assets = ASSETS_PER_ENTRY,
    )
}

/// The new schema, backfilled from the old one — with the bug.
pub fn new_schema() -> String {
    format!(
        r#"
        CREATE SCHEMA {new};
        CREATE TABLE {new}.environments (
            id int PRIMARY KEY,
            name text NOT NULL UNIQUE
        );
        -- Every distinct field value once.
        CREATE TABLE {new}.field_values (
            value_id bigserial PRIMARY KEY,
            value text NOT NULL UNIQUE
        );
        -- The sys columns, with the fields as references.
        CREATE TABLE {new}.entry_map (
            sys_id bigint PRIMARY KEY,
            entry_id int NOT NULL,
            environment_id int NOT NULL REFERENCES {new}.environments (id),
            content_type text NOT NULL,
            updated_at timestamptz NOT NULL,
            version int NOT NULL,
            title_id bigint REFERENCES {new}.field_values (value_id),
            body_id bigint REFERENCES {new}.field_values (value_id)
        );
        CREATE INDEX entry_map_by_update ON {new}.entry_map (environment_id, updated_at);

        -- The backfill. Environment {buggy_env} was copied through a
        -- connection that read UTF-8 as Latin-1: that is the bug. ASCII
        -- titles survive it; accented ones come out double-encoded.
        INSERT INTO {new}.environments SELECT id, name FROM environments;
        CREATE TEMPORARY TABLE backfilled_fields AS
            SELECT f.sys_id, f.name,
                   CASE WHEN e.environment_id = {buggy_env} AND f.name = '{column}'
                        THEN convert_from(convert_to(f.value, 'UTF8'), 'LATIN1')
                        ELSE f.value END AS value
              FROM entry_fields f JOIN entries e USING (sys_id);
        INSERT INTO {new}.field_values (value)
            SELECT DISTINCT value FROM backfilled_fields WHERE value IS NOT NULL;
        -- In reverse order, so rows that tie on a sort key come back in a
        -- different order than from the old schema.
        INSERT INTO {new}.entry_map
            SELECT e.sys_id, e.entry_id, e.environment_id, e.content_type, e.updated_at, e.version,
                   t.value_id, b.value_id
              FROM entries e
              JOIN backfilled_fields ft ON ft.sys_id = e.sys_id AND ft.name = 'title'
              JOIN {new}.field_values t ON t.value = ft.value
              LEFT JOIN backfilled_fields fb ON fb.sys_id = e.sys_id AND fb.name = 'body'
              LEFT JOIN {new}.field_values b ON b.value = fb.value
             ORDER BY e.sys_id DESC;
        DROP TABLE backfilled_fields;

        -- The old shape, for the application's queries.
        CREATE VIEW {new}.entries AS
            SELECT sys_id, entry_id, environment_id, content_type, updated_at, version
              FROM {new}.entry_map;
        CREATE VIEW {new}.entry_fields AS
            SELECT m.sys_id, 'title'::text AS name, v.value
              FROM {new}.entry_map m JOIN {new}.field_values v ON v.value_id = m.title_id
            UNION ALL
            SELECT m.sys_id, 'body'::text, v.value
              FROM {new}.entry_map m LEFT JOIN {new}.field_values v ON v.value_id = m.body_id;
        -- Copied as they are, but without assets_by_entry: the forgotten
        -- index that makes the new schema slower.
        CREATE TABLE {new}.assets (
            id bigint PRIMARY KEY,
            sys_id bigint NOT NULL,
            file_name text NOT NULL,
            bytes int NOT NULL
        );
        INSERT INTO {new}.assets SELECT * FROM assets;
        ANALYZE {new}.environments, {new}.field_values, {new}.entry_map, {new}.assets;
        "#,
        new = NEW_SCHEMA,
        buggy_env = BUGGY_ENVIRONMENT,
        column = BUGGY_COLUMN,
    )
}

/// Privileges: the application reads and writes both schemas (it
/// dual-writes during the migration); the shadow may only read.
pub fn grants() -> String {
    format!(
        r#"
        GRANT USAGE ON SCHEMA {old}, {new} TO {app}, {shadow};
        GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {old}, {new} TO {app};
        GRANT USAGE ON ALL SEQUENCES IN SCHEMA {new} TO {app};
        GRANT SELECT ON ALL TABLES IN SCHEMA {old}, {new} TO {shadow};
        ALTER ROLE {shadow} SET default_transaction_read_only = on;
        "#,
        old = OLD_SCHEMA,
        new = NEW_SCHEMA,
        app = APP_ROLE,
        shadow = SHADOW_ROLE,
    )
}

/// A one-line description of the data, for the demo's output.
pub fn describe() -> String {
    format!(
        "{} environments x {} entries = {} entries, {} fields",
        ENVIRONMENTS.len(),
        ENTRIES_PER_ENVIRONMENT,
        ENVIRONMENTS.len() as i64 * ENTRIES_PER_ENVIRONMENT,
        2 * ENVIRONMENTS.len() as i64 * ENTRIES_PER_ENVIRONMENT,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buggy_entries_are_the_accented_titles_in_the_buggy_environment() {
        for (sys, (entry, _)) in BUGGY_ENTRIES.iter().zip(ACCENTED_TITLES) {
            assert_eq!(*sys, sys_id(BUGGY_ENVIRONMENT, entry));
        }
        assert!(ACCENTED_TITLES.iter().all(|(_, t)| !t.is_ascii()));
        assert!(ACCENTED_TITLES
            .iter()
            .all(|(id, _)| (1..=ENTRIES_PER_ENVIRONMENT).contains(id)));
    }

    #[test]
    fn every_buggy_entry_is_featured() {
        let featured = featured_entries();
        assert!(BUGGY_ENTRIES.iter().all(|id| featured.contains(id)));
    }
}
