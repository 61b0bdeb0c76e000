-- A copy-on-write migration with composite keys (tests/shadow/composite_keys.rs).
--
-- A content platform keeps entries per environment (master, staging,
-- preview). The old schema copies every entry into every environment; the
-- new one shares an entry's content between environments until one of them
-- edits it (copy on write), and shows the application the old relation
-- names through views over a mapping table. Nothing in the proxy's config
-- names a key: they come from the catalog.

-- ------------------------------------------------------------ old: public
CREATE TABLE environments (
    env_id int PRIMARY KEY,
    name text NOT NULL
);

-- One row per entry and environment.
CREATE TABLE entries (
    env_id int NOT NULL REFERENCES environments,
    entry_id int NOT NULL,
    title text NOT NULL,
    updated_at timestamptz NOT NULL,
    version int NOT NULL,
    PRIMARY KEY (env_id, entry_id)
);

-- One row per field of an entry in an environment.
CREATE TABLE entry_fields (
    env_id int NOT NULL,
    entry_id int NOT NULL,
    field text NOT NULL,
    value text,
    changed_at timestamptz NOT NULL,
    PRIMARY KEY (env_id, entry_id, field),
    FOREIGN KEY (env_id, entry_id) REFERENCES entries
);

-- A reporting view: one row per entry and how many of its fields are set.
-- Views have no key: its pages are compared tie-tolerantly.
CREATE VIEW entry_activity AS
    SELECT e.env_id, e.entry_id, e.title, e.updated_at, count(f.value) AS fields_set
      FROM entries e JOIN entry_fields f ON f.env_id = e.env_id AND f.entry_id = e.entry_id
     GROUP BY e.env_id, e.entry_id, e.title, e.updated_at;

-- 240 entries in master, copied into staging and preview. updated_at takes
-- 24 values, so entries tie in runs of 10; an entry's three fields all
-- changed at the same time.
INSERT INTO environments VALUES (1, 'master'), (2, 'staging'), (3, 'preview');
INSERT INTO entries
    SELECT env, n, 'Entry ' || n,
           timestamptz '2026-01-01 00:00+00' + (n % 24) * interval '1 hour', 1
      FROM generate_series(1, 3) env, generate_series(1, 240) n;
INSERT INTO entry_fields
    SELECT e.env_id, e.entry_id, f.field,
           CASE WHEN f.field = 'summary' AND e.entry_id % 4 = 0 THEN NULL
                ELSE f.field || ' of entry ' || e.entry_id END,
           timestamptz '2026-01-01 00:00+00' + (e.entry_id % 5) * interval '1 day'
      FROM entries e, (VALUES ('body'), ('slug'), ('summary')) f (field)
     ORDER BY e.env_id, e.entry_id, f.field;

-- ---------------------------------------------------------------- new: v2
CREATE SCHEMA v2;
CREATE TABLE v2.environments (
    env_id int PRIMARY KEY,
    name text NOT NULL
);

-- An entry's content, shared by every environment that has not edited it.
CREATE TABLE v2.contents (
    content_id bigint PRIMARY KEY,
    title text NOT NULL,
    updated_at timestamptz NOT NULL,
    version int NOT NULL
);
CREATE TABLE v2.content_fields (
    content_id bigint NOT NULL REFERENCES v2.contents,
    field text NOT NULL,
    value text,
    changed_at timestamptz NOT NULL,
    PRIMARY KEY (content_id, field)
);

-- The mapping: which content an environment's entry shows.
CREATE TABLE v2.env_entries (
    env_id int NOT NULL REFERENCES v2.environments,
    entry_id int NOT NULL,
    content_id bigint NOT NULL REFERENCES v2.contents,
    PRIMARY KEY (env_id, entry_id)
);
CREATE SEQUENCE v2.content_ids START 1000;

-- The backfill: one content per master entry, shared by all three
-- environments. Rows go in in the reverse order, so rows that tie on a
-- sort key come back in another order than from the old schema.
INSERT INTO v2.environments SELECT * FROM environments;
INSERT INTO v2.contents
    SELECT entry_id, title, updated_at, version FROM entries WHERE env_id = 1
     ORDER BY entry_id DESC;
INSERT INTO v2.content_fields
    SELECT entry_id, field, value, changed_at FROM entry_fields WHERE env_id = 1
     ORDER BY entry_id DESC, field DESC;
INSERT INTO v2.env_entries
    SELECT env_id, entry_id, entry_id FROM entries ORDER BY env_id DESC, entry_id DESC;

-- The old names, for the application's queries.
CREATE VIEW v2.entries AS
    SELECT m.env_id, m.entry_id, c.title, c.updated_at, c.version
      FROM v2.env_entries m JOIN v2.contents c ON c.content_id = m.content_id;
CREATE VIEW v2.entry_fields AS
    SELECT m.env_id, m.entry_id, f.field, f.value, f.changed_at
      FROM v2.env_entries m JOIN v2.content_fields f ON f.content_id = m.content_id;
CREATE VIEW v2.entry_activity AS
    SELECT e.env_id, e.entry_id, e.title, e.updated_at, count(f.value) AS fields_set
      FROM v2.entries e JOIN v2.entry_fields f ON f.env_id = e.env_id AND f.entry_id = e.entry_id
     GROUP BY e.env_id, e.entry_id, e.title, e.updated_at;
ANALYZE;

-- ------------------------------------------------------------ dual writes
-- The application's edit of an entry's body in one environment, in both
-- schemas in one transaction. In v2 the environment gets a content of its
-- own (copy on write).
CREATE FUNCTION edit_entry(p_env int, p_entry int, p_body text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    stamp timestamptz := clock_timestamp();
    shared bigint;
    own bigint := nextval('v2.content_ids');
BEGIN
    UPDATE entries SET updated_at = stamp, version = version + 1
     WHERE env_id = p_env AND entry_id = p_entry;
    UPDATE entry_fields SET value = p_body, changed_at = stamp
     WHERE env_id = p_env AND entry_id = p_entry AND field = 'body';
    SELECT content_id INTO shared FROM v2.env_entries
     WHERE env_id = p_env AND entry_id = p_entry;
    INSERT INTO v2.contents
        SELECT own, title, stamp, version + 1 FROM v2.contents WHERE content_id = shared;
    INSERT INTO v2.content_fields
        SELECT own, field,
               CASE WHEN field = 'body' THEN p_body ELSE value END,
               CASE WHEN field = 'body' THEN stamp ELSE changed_at END
          FROM v2.content_fields WHERE content_id = shared;
    UPDATE v2.env_entries SET content_id = own WHERE env_id = p_env AND entry_id = p_entry;
END $$;

-- The same edit as the buggy first version of the new writer did it: in
-- place, forgetting the copy, so the edit leaks into every environment
-- that shares the content.
CREATE FUNCTION edit_entry_in_place(p_env int, p_entry int, p_body text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE entry_fields SET value = p_body
     WHERE env_id = p_env AND entry_id = p_entry AND field = 'body';
    UPDATE v2.content_fields SET value = p_body
     WHERE field = 'body'
       AND content_id = (SELECT content_id FROM v2.env_entries
                          WHERE env_id = p_env AND entry_id = p_entry);
END $$;

-- The shadow's role reads both schemas and nothing else.
CREATE ROLE pgshadow LOGIN;
GRANT USAGE ON SCHEMA public, v2 TO pgshadow;
GRANT SELECT ON ALL TABLES IN SCHEMA public, v2 TO pgshadow;
