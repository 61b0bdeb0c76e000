-- The example migration pgshadow verifies in docker-compose.yml, run once
-- by the postgres image when its data volume is empty (as POSTGRES_USER,
-- the application's role, in POSTGRES_DB).
--
-- Old schema `public` (what the application reads today), normalised:
-- environments, entries (one copy per environment, with sys columns;
-- sys_id is the stable id) and entry_fields (name/value rows).
-- New schema `v2` (what it is being migrated to), denormalised: entry_map
-- carries the sys columns and points into field_values, where identical
-- values are stored once; views give the application's queries the old
-- relation names, so only the search_path differs between the two.
--
-- One deliberate backfill bug, so there is something to find: the title of
-- entry sys_id 100007 was copied through a Latin-1 connection
-- ('Café au lait' became 'CafÃ© au lait' in v2). See docker/README.md.

CREATE TABLE environments (
    id int PRIMARY KEY,
    name text NOT NULL UNIQUE
);
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

INSERT INTO environments VALUES (1, 'master'), (2, 'staging');
-- 500 entries per environment; updated_at ties in groups of 50.
INSERT INTO entries
    SELECT e.id * 100000 + n, n, e.id,
           CASE WHEN n % 3 = 0 THEN 'recipe' ELSE 'article' END,
           timestamptz '2026-01-01 09:00+00' + (n % 10) * interval '1 hour',
           1
      FROM environments e, generate_series(1, 500) n;
INSERT INTO entry_fields
    SELECT sys_id, 'title', CASE WHEN entry_id = 7 THEN 'Café au lait' ELSE 'Title ' || entry_id END
      FROM entries
    UNION ALL
    SELECT sys_id, 'body', CASE WHEN entry_id % 7 = 0 THEN NULL ELSE 'Body of entry ' || entry_id END
      FROM entries;

CREATE SCHEMA v2;
CREATE TABLE v2.environments (
    id int PRIMARY KEY,
    name text NOT NULL UNIQUE
);
CREATE TABLE v2.field_values (
    value_id bigserial PRIMARY KEY,
    value text NOT NULL UNIQUE
);
CREATE TABLE v2.entry_map (
    sys_id bigint PRIMARY KEY,
    entry_id int NOT NULL,
    environment_id int NOT NULL REFERENCES v2.environments (id),
    content_type text NOT NULL,
    updated_at timestamptz NOT NULL,
    version int NOT NULL,
    title_id bigint REFERENCES v2.field_values (value_id),
    body_id bigint REFERENCES v2.field_values (value_id)
);
CREATE INDEX entry_map_by_update ON v2.entry_map (environment_id, updated_at);

-- The backfill, with its bug in master (environment 1).
INSERT INTO v2.environments SELECT id, name FROM environments;
CREATE TEMPORARY TABLE backfilled_fields AS
    SELECT f.sys_id, f.name,
           CASE WHEN e.environment_id = 1 AND f.name = 'title'
                THEN convert_from(convert_to(f.value, 'UTF8'), 'LATIN1')
                ELSE f.value END AS value
      FROM entry_fields f JOIN entries e USING (sys_id);
INSERT INTO v2.field_values (value)
    SELECT DISTINCT value FROM backfilled_fields WHERE value IS NOT NULL;
INSERT INTO v2.entry_map
    SELECT e.sys_id, e.entry_id, e.environment_id, e.content_type, e.updated_at, e.version,
           t.value_id, b.value_id
      FROM entries e
      JOIN backfilled_fields ft ON ft.sys_id = e.sys_id AND ft.name = 'title'
      JOIN v2.field_values t ON t.value = ft.value
      LEFT JOIN backfilled_fields fb ON fb.sys_id = e.sys_id AND fb.name = 'body'
      LEFT JOIN v2.field_values b ON b.value = fb.value
     ORDER BY e.sys_id DESC;
DROP TABLE backfilled_fields;

CREATE VIEW v2.entries AS
    SELECT sys_id, entry_id, environment_id, content_type, updated_at, version
      FROM v2.entry_map;
CREATE VIEW v2.entry_fields AS
    SELECT m.sys_id, 'title'::text AS name, v.value
      FROM v2.entry_map m JOIN v2.field_values v ON v.value_id = m.title_id
    UNION ALL
    SELECT m.sys_id, 'body'::text, v.value
      FROM v2.entry_map m LEFT JOIN v2.field_values v ON v.value_id = m.body_id;
