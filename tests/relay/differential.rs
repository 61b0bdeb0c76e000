//! The same frontend bytes, sent directly and through the proxy, get the
//! same backend bytes back.

use crate::harness::wire::{fe, Message, Wire};
use crate::harness::{Pg, Proxy, DB, TRUST_USER};

/// One step of the script: bytes to send, and how many ReadyForQuery
/// messages they produce (0 for a Flush-terminated batch, whose replies
/// end with the CommandComplete counted in `until_complete`).
struct Step {
    send: Vec<u8>,
    ready: usize,
    until_complete: usize,
}

fn step(parts: &[Vec<u8>], ready: usize) -> Step {
    Step {
        send: parts.concat(),
        ready,
        until_complete: 0,
    }
}

fn script(int4pl_oid: u32) -> Vec<Step> {
    vec![
        // Simple protocol: a result, an error, several statements at once.
        step(&[fe::query("SELECT 1 AS one, 'x'::text AS letter, NULL::int AS nothing")], 1),
        step(&[fe::query("SELECT 1/0")], 1),
        step(&[fe::query("INSERT INTO t VALUES (1, 'one'), (2, 'two'); SELECT * FROM t ORDER BY a")], 1),
        // Extended protocol with Describe of statement and portal.
        step(
            &[
                fe::parse("s1", "SELECT a, b FROM t WHERE a >= $1 ORDER BY a", &[23]),
                fe::describe(b'S', "s1"),
                fe::bind("p1", "s1", &[Some(b"1")], &[0], &[0, 1]),
                fe::describe(b'P', "p1"),
                fe::execute("p1", 1),
                fe::execute("p1", 0),
                fe::sync(),
            ],
            1,
        ),
        // An error inside a pipeline: the rest of the batch is skipped
        // until Sync, then the next batch works.
        step(
            &[
                fe::parse("", "SELECT 1/0", &[]),
                fe::bind("", "", &[], &[], &[]),
                fe::execute("", 0),
                fe::parse("", "SELECT 2", &[]),
                fe::bind("", "", &[], &[], &[]),
                fe::execute("", 0),
                fe::sync(),
                fe::bind("p2", "s1", &[Some(b"2")], &[0], &[]),
                fe::execute("p2", 0),
                fe::sync(),
            ],
            2,
        ),
        // Flush: replies arrive without Sync.
        Step {
            send: [
                fe::parse("s2", "SELECT $1::text || '!'", &[0]),
                fe::bind("", "s2", &[Some(b"flushed")], &[0], &[]),
                fe::execute("", 0),
                fe::flush(),
            ]
            .concat(),
            ready: 0,
            until_complete: 1,
        },
        step(&[fe::sync()], 1),
        // COPY in, COPY failure, COPY out.
        step(&[fe::query("COPY t FROM STDIN"), fe::copy_data(b"3\tthree\n4\tfour\n"), fe::copy_done()], 1),
        step(&[fe::query("COPY t FROM STDIN"), fe::copy_data(b"5\tfive\n"), fe::copy_fail("client changed its mind")], 1),
        step(&[fe::query("COPY (SELECT * FROM t ORDER BY a) TO STDOUT")], 1),
        // FunctionCall (the fast path).
        step(&[fe::function_call(int4pl_oid, &[b"2", b"40"])], 1),
        // Close statement and portal, then use the closed statement.
        step(&[fe::close(b'S', "s1"), fe::close(b'P', "p1"), fe::sync()], 1),
        step(&[fe::bind("", "s1", &[Some(b"1")], &[0], &[]), fe::execute("", 0), fe::sync()], 1),
        // Notices and a transaction block.
        step(&[fe::query("BEGIN; DO $$ BEGIN RAISE NOTICE 'in a block'; END $$; SELECT count(*) FROM t; COMMIT")], 1),
        // Leave `t` as the next run expects it (same table, so the table
        // OID in RowDescription is the same too).
        step(&[fe::query("TRUNCATE t")], 1),
    ]
}

/// Runs the script; returns every backend message from startup to EOF,
/// with BackendKeyData blanked (its pid and secret differ per connection).
fn run_script(port: u16, steps: &[Step], pipelined: bool) -> Vec<Message> {
    let mut w = Wire::connect(port);
    let mut got = w.startup(&[
        ("user", TRUST_USER),
        ("database", DB),
        ("application_name", "differential"),
    ]);
    if pipelined {
        let all: Vec<u8> = steps
            .iter()
            .flat_map(|s| s.send.clone())
            .chain(fe::terminate())
            .collect();
        w.send(&all);
    } else {
        for s in steps {
            w.send(&s.send);
            for _ in 0..s.until_complete {
                while let Some(m) = w.read_message() {
                    let done = m.tag == b'C';
                    got.push(m);
                    if done {
                        break;
                    }
                }
            }
            got.extend(w.read_until_ready_n(s.ready));
        }
        w.send(&fe::terminate());
    }
    got.extend(w.read_to_end());
    for m in &mut got {
        if m.tag == b'K' {
            m.body = vec![0; m.body.len()];
        }
    }
    got
}

#[test]
fn scripted_protocol_sessions_get_identical_bytes_directly_and_through_the_proxy() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    pg.sql("CREATE TABLE t (a int, b text)");
    let int4pl_oid: u32 = pg
        .sql("SELECT 'int4pl(int4, int4)'::regprocedure::oid")
        .parse()
        .unwrap();
    let steps = script(int4pl_oid);
    for pipelined in [false, true] {
        let direct = run_script(pg.port(), &steps, pipelined);
        let proxied = run_script(proxy.port, &steps, pipelined);
        let tags: String = direct.iter().map(|m| m.tag as char).collect();
        // The script must really exercise what it claims to.
        for (tag, what) in [
            ('E', "ErrorResponse"),
            ('1', "ParseComplete"),
            ('t', "ParameterDescription"),
            ('s', "PortalSuspended"),
            ('G', "CopyInResponse"),
            ('H', "CopyOutResponse"),
            ('d', "CopyData"),
            ('V', "FunctionCallResponse"),
            ('3', "CloseComplete"),
            ('N', "NoticeResponse"),
        ] {
            assert!(tags.contains(tag), "script produced no {what}: {tags}");
        }
        let direct_bytes: Vec<u8> = direct.iter().flat_map(Message::frame).collect();
        let proxied_bytes: Vec<u8> = proxied.iter().flat_map(Message::frame).collect();
        assert_eq!(
            proxied.len(),
            direct.len(),
            "message count (pipelined: {pipelined})"
        );
        for (i, (a, b)) in direct.iter().zip(&proxied).enumerate() {
            assert_eq!(b, a, "message {i} differs (pipelined: {pipelined})");
        }
        assert!(proxied_bytes == direct_bytes);
    }
}
