"""psycopg 3 against one PostgreSQL endpoint: parameters, server-side
cursors, COPY, executemany, autocommit and transactions.

Run by tests/relay/psycopg.rs twice: directly against the server and through
pgshadow. Every check asserts on what the server sent back; the first failed
assertion ends the script with a traceback and a non-zero exit status.

Usage: psycopg_suite.py CONNINFO

The summary printed on success is deterministic, so the Rust test can compare
the direct and the proxied run line by line.
"""

import datetime
import hashlib
import sys
import uuid
from decimal import Decimal

import psycopg
from psycopg import errors
from psycopg.pq import TransactionStatus

if not __debug__:
    sys.exit("assertions are disabled (python -O or PYTHONOPTIMIZE): nothing would be checked")

TABLES = ["typed", "copied", "bought", "visibility", "ledger"]


def md5(n):
    return hashlib.md5(str(n).encode()).hexdigest()


def create_tables(conninfo):
    """Tables of every section, dropped first: the same database serves the
    direct and the proxied run."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(
            "CREATE TABLE typed (id int PRIMARY KEY, amount numeric, born date,"
            " at timestamptz, label text, blob bytea, note text)"
        )
        conn.execute(
            "CREATE TABLE copied (id int PRIMARY KEY, label text, amount numeric,"
            " blob bytea, born date)"
        )
        conn.execute("CREATE TABLE bought (id int PRIMARY KEY, item text, price numeric)")
        conn.execute("CREATE TABLE visibility (id int PRIMARY KEY)")
        conn.execute("CREATE TABLE ledger (id int PRIMARY KEY, note text)")


def check_parameters(conninfo):
    """Parameters of many types, in text and in binary format, arrive as the
    values they stand for and come back unchanged."""
    values = [
        ("int", 42),
        ("bigint", -(2**62)),
        ("float", 1.5),
        ("numeric", Decimal("12345678901234567890.000000000000000001")),
        ("negative numeric", Decimal("-0.5")),
        ("unicode", "héllo wörld ✓ 😀 日本語"),
        ("escapes", "tab\tnewline\nbackslash\\ quote' dquote\""),
        ("empty string", ""),
        ("None", None),
        ("bool", True),
        ("date", datetime.date(2024, 2, 29)),
        ("timestamptz", datetime.datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=datetime.timezone.utc)),
        ("interval", datetime.timedelta(days=3, seconds=5, microseconds=7)),
        ("bytes", bytes(range(256))),
        ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
        ("int array with NULL", [1, 2, None, 4]),
    ]
    checked = 0
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for binary in (False, True):
            for name, value in values:
                row = conn.execute("SELECT %s", [value], binary=binary).fetchone()
                assert row == (value,), f"{name} (binary={binary}): sent {value!r}, got back {row!r}"
                checked += 1

        # The server sees the typed value, not just an echo of the bytes.
        server_side = [
            ("SELECT %s = DATE '2024-02-29'", [datetime.date(2024, 2, 29)]),
            ("SELECT %s = 12345678901234567890.000000000000000001",
             [Decimal("12345678901234567890.000000000000000001")]),
            ("SELECT %s = decode('00ff10', 'hex')", [b"\x00\xff\x10"]),
            ("SELECT length(%s) = 5 AND %s = U&'\\00e9t\\00e9 \\2713'", ["été ✓", "été ✓"]),
            ("SELECT %s::text IS NULL", [None]),
        ]
        for sql, params in server_side:
            for binary in (False, True):
                (ok,) = conn.execute(sql, params, binary=binary).fetchone()
                assert ok is True, f"server-side comparison failed (binary={binary}): {sql} with {params!r}"
                checked += 1

        # A table round trip: INSERT with parameters, SELECT filtered by parameters.
        rows = [
            (1, Decimal("10.25"), datetime.date(1999, 12, 31),
             datetime.datetime(2000, 1, 1, 0, 0, tzinfo=datetime.timezone.utc),
             "naïve café", b"\x00\x01\x02", None),
            (2, None, None, None, "ünïcödé ✓", None, "second"),
            (3, Decimal("-1E+3"), datetime.date(1, 1, 1), None, "", b"", ""),
        ]
        with conn.cursor() as cur:
            for row in rows:
                cur.execute("INSERT INTO typed VALUES (%s, %s, %s, %s, %s, %s, %s)", row)
                assert cur.rowcount == 1, f"INSERT of {row!r} reported rowcount {cur.rowcount}"
            for row in rows:
                got = cur.execute(
                    "SELECT * FROM typed WHERE id = %s AND label = %s", [row[0], row[4]]
                ).fetchall()
                assert got == [row], f"typed row {row[0]}: expected {[row]!r}, got {got!r}"
                checked += 1

        # A forced server-side prepared statement, executed repeatedly.
        for i in range(5):
            (got,) = conn.execute("SELECT %s::int * 2", [i], prepare=True).fetchone()
            assert got == i * 2, f"prepared statement: {i} * 2 gave {got}"
        (prepared,) = conn.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT $1::int * 2'"
        ).fetchone()
        assert prepared == 1, f"expected one server-side prepared statement, found {prepared}"
    return f"parameters: {checked} checks"


def check_named_cursor(conninfo):
    """A server-side cursor hands back 10,000 rows in batches, all in order."""
    total = 10_000
    expected = [(i, md5(i)) for i in range(1, total + 1)]
    query = "SELECT g, md5(g::text) FROM generate_series(1, %s) g ORDER BY g"
    with psycopg.connect(conninfo) as conn:
        with conn.cursor(name="suite_iter") as cur:
            cur.itersize = 997
            cur.execute(query, [total])
            (open_cursors,) = conn.execute(
                "SELECT count(*) FROM pg_cursors WHERE name = 'suite_iter'"
            ).fetchone()
            assert open_cursors == 1, "the named cursor is not a cursor on the server"
            got = list(cur)
        assert len(got) == total, f"iterating the named cursor gave {len(got)} rows, expected {total}"
        assert got == expected, f"iterated rows differ; first difference at {first_difference(got, expected)}"

        batch = 1_000
        with conn.cursor(name="suite_fetchmany") as cur:
            cur.execute(query, [total])
            got, batches = [], 0
            while True:
                rows = cur.fetchmany(batch)
                if not rows:
                    break
                assert len(rows) == batch, f"batch {batches} has {len(rows)} rows, expected {batch}"
                got.extend(rows)
                batches += 1
        assert batches == total // batch, f"fetchmany took {batches} batches, expected {total // batch}"
        assert got == expected, f"fetched rows differ; first difference at {first_difference(got, expected)}"
    return f"named cursor: {total} rows iterated, {batches} batches of {batch}"


def first_difference(got, expected):
    for i, (a, b) in enumerate(zip(got, expected)):
        if a != b:
            return f"index {i}: got {a!r}, expected {b!r}"
    return f"lengths {len(got)} vs {len(expected)}"


def check_copy(conninfo):
    """COPY FROM STDIN writes rows that COPY TO STDOUT reads back unchanged,
    in text and in binary format; an aborted COPY leaves nothing behind."""
    total = 5_000
    rows = [
        (
            i,
            f"row {i}\ttab\nnewline\\backslash é ✓" if i % 3 else f"plain {i}",
            None if i % 7 == 0 else Decimal(i) / Decimal(8),
            None if i % 5 == 0 else md5(i).encode(),
            datetime.date(2000, 1, 1) + datetime.timedelta(days=i),
        )
        for i in range(1, total + 1)
    ]
    types = ["int4", "text", "numeric", "bytea", "date"]
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.cursor() as cur:
        with cur.copy("COPY copied (id, label, amount, blob, born) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        assert cur.rowcount == total, f"COPY FROM reported {cur.rowcount} rows, expected {total}"

        for fmt in ("TEXT", "BINARY"):
            with cur.copy(f"COPY (SELECT * FROM copied ORDER BY id) TO STDOUT (FORMAT {fmt})") as copy:
                copy.set_types(types)
                got = list(copy.rows())
            assert got == rows, f"COPY TO ({fmt}) differs; first difference at {first_difference(got, rows)}"

        class Abandon(Exception):
            pass

        # Leaving the block with an exception sends CopyFail; the server
        # answers with an error that psycopg 3.1 raises in its place.
        try:
            with cur.copy("COPY copied (id, label) FROM STDIN") as copy:
                copy.write_row((total + 1, "never stored"))
                raise Abandon()
        except errors.QueryCanceled as e:
            assert "COPY from stdin failed" in str(e), f"unexpected error for an abandoned COPY: {e}"
        except Abandon:
            pass
        (count,) = conn.execute("SELECT count(*) FROM copied").fetchone()
        assert count == total, f"after an abandoned COPY the table has {count} rows, expected {total}"
    return f"copy: {total} rows in, out as text and binary; abandoned COPY stored nothing"


def check_executemany(conninfo):
    """executemany inserts every row (pipelined where libpq allows) and can
    return a result per parameter set."""
    total = 1_000
    rows = [(i, f"item {i} ✓", Decimal(i) / Decimal(100)) for i in range(1, total + 1)]
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO bought (id, item, price) VALUES (%s, %s, %s)", rows)
        assert cur.rowcount == total, f"executemany reported rowcount {cur.rowcount}, expected {total}"
        got = conn.execute("SELECT id, item, price FROM bought ORDER BY id").fetchall()
        assert got == rows, f"executemany rows differ; first difference at {first_difference(got, rows)}"

        updates = [(Decimal(1), i) for i in range(1, 101)]
        cur.executemany(
            "UPDATE bought SET price = price + %s WHERE id = %s RETURNING id, price", updates, returning=True
        )
        returned = []
        while True:
            returned.extend(cur.fetchall())
            if not cur.nextset():
                break
        expected = [(i, Decimal(i) / Decimal(100) + 1) for i in range(1, 101)]
        assert returned == expected, f"RETURNING rows differ; first difference at {first_difference(returned, expected)}"
    return f"executemany: {total} rows inserted, 100 updates returned"


def check_autocommit(conninfo):
    """In autocommit mode a statement is visible to another connection at once."""
    with psycopg.connect(conninfo, autocommit=True) as writer, psycopg.connect(
        conninfo, autocommit=True
    ) as reader:
        for i in range(1, 4):
            writer.execute("INSERT INTO visibility VALUES (%s)", [i])
            status = writer.info.transaction_status
            assert status == TransactionStatus.IDLE, f"autocommit writer left in {status.name}"
            (seen,) = reader.execute("SELECT count(*) FROM visibility").fetchone()
            assert seen == i, f"after {i} autocommit inserts the other connection sees {seen}"
    return "autocommit: 3 inserts visible immediately"


def ledger_ids(conn):
    return [r[0] for r in conn.execute("SELECT id FROM ledger ORDER BY id").fetchall()]


def check_transactions(conninfo):
    """Rollback undoes, conn.transaction() commits, savepoints roll back
    alone, and an error in a transaction leaves a usable connection after
    rollback."""
    with psycopg.connect(conninfo) as conn, psycopg.connect(conninfo, autocommit=True) as observer:
        conn.execute("INSERT INTO ledger VALUES (1, 'rolled back')")
        assert conn.info.transaction_status == TransactionStatus.INTRANS
        assert ledger_ids(observer) == [], "an uncommitted insert is visible to another connection"
        conn.rollback()
        assert ledger_ids(conn) == [], "rollback did not undo the insert"
        conn.rollback()

        with conn.transaction():
            conn.execute("INSERT INTO ledger VALUES (2, 'committed by the block')")
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert ledger_ids(observer) == [2], "conn.transaction() did not commit"

        conn.execute("INSERT INTO ledger VALUES (3, 'lost with the error')")
        try:
            conn.execute("SELECT 1 / 0")
            raise AssertionError("division by zero did not raise")
        except errors.DivisionByZero:
            pass
        status = conn.info.transaction_status
        assert status == TransactionStatus.INERROR, f"after an error the transaction is {status.name}"
        try:
            conn.execute("SELECT 1")
            raise AssertionError("a statement in a failed transaction did not raise")
        except errors.InFailedSqlTransaction:
            pass
        conn.rollback()
        assert conn.execute("SELECT 'usable'").fetchone() == ("usable",), "connection unusable after rollback"
        assert ledger_ids(conn) == [2], "the insert before the error survived the rollback"
        conn.rollback()

        with conn.transaction():
            conn.execute("INSERT INTO ledger VALUES (4, 'outer')")
            try:
                with conn.transaction():
                    conn.execute("INSERT INTO ledger VALUES (5, 'inside the failed savepoint')")
                    conn.execute("SELECT 1 / 0")
            except errors.DivisionByZero:
                pass
            conn.execute("INSERT INTO ledger VALUES (6, 'after the savepoint')")
        assert ledger_ids(observer) == [2, 4, 6], "savepoint rollback undid too much or too little"

        with conn.transaction():
            conn.execute("INSERT INTO ledger VALUES (7, 'rolled back on purpose')")
            raise psycopg.Rollback()
        assert ledger_ids(observer) == [2, 4, 6], "psycopg.Rollback() did not undo the block"
        assert conn.info.transaction_status == TransactionStatus.IDLE
    return "transactions: rollback, commit, savepoint, error recovery"


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} CONNINFO")
    conninfo = sys.argv[1]
    create_tables(conninfo)
    for check in (
        check_parameters,
        check_named_cursor,
        check_copy,
        check_executemany,
        check_autocommit,
        check_transactions,
    ):
        print(check(conninfo), flush=True)
    print("psycopg suite passed")


if __name__ == "__main__":
    main()
