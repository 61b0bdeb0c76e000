//! psql through the proxy behaves exactly as psql directly.

use crate::harness::{psql, run, Pg, Proxy, TRUST_USER};
use std::io::Write;
use std::process::Stdio;

/// Runs a psql script on stdin against `port`: (exit code, stdout, stderr).
fn script(pg: &Pg, port: u16, input: &str) -> (Option<i32>, String, String) {
    let mut child = psql(pg, port, TRUST_USER)
        .args(["-A", "-t", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn psql_commands_errors_and_on_error_stop_behave_as_directly() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    pg.sql("CREATE TABLE items (id int PRIMARY KEY, name text)");

    let (ok, out, err) =
        run(psql(&pg, proxy.port, TRUST_USER).args(["-A", "-t", "-c", "SELECT 40 + 2"]));
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "42");

    // One Query message carrying several statements.
    let multi =
        "INSERT INTO items VALUES (1, 'a'), (2, 'b'); UPDATE items SET name = 'c' WHERE id = 2; \
                 SELECT string_agg(name, ',' ORDER BY id) FROM items";
    let (ok, out, err) = run(psql(&pg, proxy.port, TRUST_USER).args(["-A", "-t", "-c", multi]));
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "INSERT 0 2\nUPDATE 1\na,c");
    pg.sql("TRUNCATE items");
    let (_, direct, _) = run(psql(&pg, pg.port(), TRUST_USER).args(["-A", "-t", "-c", multi]));
    assert_eq!(out, direct);

    let scripts = [
        // An error, then a good query on the same connection.
        "SELECT 1/0;\nSELECT 'after the error';\n",
        // An error inside a transaction block, then ROLLBACK.
        "BEGIN;\nSELECT nosuchcolumn FROM items;\nSELECT 1;\nROLLBACK;\nSELECT count(*) FROM items;\n",
        // ON_ERROR_STOP: psql exits with status 3 at the first error.
        "\\set ON_ERROR_STOP on\nSELECT 'before';\nSELECT * FROM missing_table;\nSELECT 'never printed';\n",
        // Notices and multi-row output.
        "DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$;\nSELECT g, g * g FROM generate_series(1, 5) g;\n",
    ];
    for input in scripts {
        let direct = script(&pg, pg.port(), input);
        let proxied = script(&pg, proxy.port, input);
        assert_eq!(proxied, direct, "script:\n{input}");
    }
    let (code, out, err) = script(&pg, proxy.port, scripts[2]);
    assert_eq!(code, Some(3));
    assert!(
        out.contains("before") && !out.contains("never printed"),
        "{out}"
    );
    assert!(
        err.contains("relation \"missing_table\" does not exist"),
        "{err}"
    );
    let (code, out, err) = script(&pg, proxy.port, scripts[0]);
    assert_eq!(code, Some(0));
    assert!(out.contains("after the error"), "{out}");
    assert!(err.contains("division by zero"), "{err}");
}

#[test]
fn psql_copy_round_trips_100k_rows_byte_identical() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    // Values that stress COPY escaping: tabs, newlines, backslashes,
    // non-ASCII, NULLs, bytea and numerics.
    pg.sql(
        "CREATE TABLE source AS
         SELECT g AS id,
                md5(g::text) || E'\\t' || g || E'\\n\\\\ é ✓' AS label,
                CASE WHEN g % 7 = 0 THEN NULL ELSE g * 1.5 END AS amount,
                decode(md5(g::text), 'hex') AS blob,
                now() - g * interval '1 minute' AS created
         FROM generate_series(1, 100000) g;
         CREATE TABLE target (LIKE source);",
    );
    let dir = tempfile::tempdir().unwrap();
    let exported = dir.path().join("exported.copy");
    let reexported = dir.path().join("reexported.copy");
    let direct = dir.path().join("direct.copy");
    let copy = |port: u16, command: String| {
        let (ok, _, err) = run(psql(&pg, port, TRUST_USER).args(["-c", &command]));
        assert!(ok, "{command}: {err}");
    };
    copy(
        proxy.port,
        format!(
            "\\copy (SELECT * FROM source ORDER BY id) TO '{}'",
            exported.display()
        ),
    );
    copy(
        proxy.port,
        format!("\\copy target FROM '{}'", exported.display()),
    );
    copy(
        proxy.port,
        format!(
            "\\copy (SELECT * FROM target ORDER BY id) TO '{}'",
            reexported.display()
        ),
    );
    copy(
        pg.port(),
        format!(
            "\\copy (SELECT * FROM source ORDER BY id) TO '{}'",
            direct.display()
        ),
    );

    let exported = std::fs::read(exported).unwrap();
    assert_eq!(exported.iter().filter(|&&b| b == b'\n').count(), 100_000);
    assert!(
        exported == std::fs::read(reexported).unwrap(),
        "COPY IN then OUT changed the bytes"
    );
    assert!(
        exported == std::fs::read(direct).unwrap(),
        "COPY OUT through the proxy differs from direct"
    );
    assert_eq!(
        pg.sql("SELECT count(*) FROM (SELECT * FROM source EXCEPT SELECT * FROM target) d"),
        "0"
    );
}
