"""psycopg 3 reads with text-format parameters, for the shadow comparison
tests (tests/shadow/extended.rs), against the fixture of tests/shadow/fixture.rs.

Every parameter is bound in text format (`%t`). The script runs, in this
order, exactly these executions that the proxy can compare:

- 3 x a single-table read with an int and a timestamptz parameter;
- 1 x a join with text parameters, two of them NULL;
- 4 x a statement prepared on the server (`prepare=True`, one Parse and
  four Binds of the named statement);

and then reads through a named server-side cursor (DECLARE/FETCH, which is
session state and never compared). Asserts on what the server sent back and
prints one line per section.

Usage: psycopg_shadow_reads.py CONNINFO
"""

import datetime
import sys

import psycopg

if not __debug__:
    sys.exit("assertions are disabled (python -O or PYTHONOPTIMIZE): nothing would be checked")

ENTRIES = 200
SINCE = datetime.datetime(2026, 1, 1, 3, 0, tzinfo=datetime.timezone.utc)


def main(conninfo):
    with psycopg.connect(conninfo, autocommit=True) as conn:
        recent = []
        for environment in (1, 2, 3):
            cur = conn.execute(
                "SELECT sys_id, updated_at FROM entries"
                " WHERE environment_id = %t AND updated_at >= %t ORDER BY sys_id",
                (environment, SINCE),
            )
            rows = cur.fetchall()
            assert all(at >= SINCE for _, at in rows), rows[:3]
            recent.append(len(rows))
        # updated_at cycles through 10 hours; 3 of them are before SINCE.
        assert recent == [ENTRIES * 7 // 10] * 3, recent
        print(f"recent entries per environment: {recent}")

        cur = conn.execute(
            "SELECT e.sys_id, f.value FROM entries e"
            " JOIN entry_fields f ON f.sys_id = e.sys_id AND f.name = %t"
            " WHERE e.environment_id = %t AND (%t::text IS NULL OR f.value = %t)"
            " ORDER BY e.sys_id",
            ("title", 2, None, None),
        )
        titles = cur.fetchall()
        assert len(titles) == ENTRIES and titles[0][1] == "Title 1", titles[:3]
        print(f"titles in environment 2: {len(titles)}")

        versions = []
        for entry in (1, 2, 3, 4):
            cur = conn.execute(
                "SELECT sys_id, version FROM entries WHERE entry_id = %t ORDER BY sys_id",
                (entry,),
                prepare=True,
            )
            versions.append([v for _, v in cur.fetchall()])
        assert versions == [[1, 1, 1]] * 4, versions
        print(f"prepared executions: {len(versions)}")

        with conn.transaction():
            with conn.cursor(name="pages") as cur:
                cur.execute(
                    "SELECT sys_id FROM entries WHERE environment_id = %t ORDER BY sys_id",
                    (1,),
                )
                fetched = 0
                while batch := cur.fetchmany(64):
                    fetched += len(batch)
        assert fetched == ENTRIES, fetched
        print(f"rows through a named cursor: {fetched}")
    print("psycopg shadow reads passed")


if __name__ == "__main__":
    main(sys.argv[1])
