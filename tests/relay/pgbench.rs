//! pgbench through the proxy: initialisation (DDL and a 100,000-row COPY),
//! then concurrent read-only and TPC-B load in every protocol mode, without
//! a single failed or lost transaction.

use crate::harness::{run_with_timeout, Pg, Proxy, DB, TRUST_USER};
use std::process::Command;
use std::time::Duration;

/// A pgbench command connected to `port` as the trust user.
fn pgbench(pg: &Pg, port: u16) -> Command {
    let mut cmd = Command::new(pg.program("pgbench"));
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", TRUST_USER])
        .env_remove("PGPASSWORD")
        .env_remove("PGOPTIONS")
        .env("PGCONNECT_TIMEOUT", "10");
    cmd
}

/// The number after `label` on a line of pgbench's report, e.g.
/// "number of failed transactions: 0 (0.000%)".
fn reported(report: &str, label: &str) -> Option<u64> {
    report
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[test]
fn pgbench_select_only_and_tpcb_in_all_protocol_modes_have_no_failures() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");

    let (ok, out, err) = run_with_timeout(
        pgbench(&pg, proxy.port).args(["-i", "-s", "1", DB]),
        Duration::from_secs(120),
    );
    assert!(ok, "pgbench -i through the proxy failed\n{out}\n{err}");
    assert_eq!(pg.sql("SELECT count(*) FROM pgbench_accounts"), "100000");

    for mode in ["simple", "extended", "prepared"] {
        for (script, script_args) in [("select-only", &["-S"][..]), ("tpcb", &[][..])] {
            let (ok, out, err) = run_with_timeout(
                pgbench(&pg, proxy.port)
                    .args(["-M", mode, "-c", "8", "-j", "2", "-T", "3"])
                    .args(script_args)
                    .arg(DB),
                Duration::from_secs(60),
            );
            let context = format!("pgbench -M {mode} {script}\n{out}\n{err}");
            assert!(ok, "exited unsuccessfully: {context}");
            let failed = reported(&out, "number of failed transactions: ")
                .unwrap_or_else(|| panic!("no failed-transactions line: {context}"));
            assert_eq!(failed, 0, "failed transactions: {context}");
            let processed = reported(&out, "number of transactions actually processed: ")
                .unwrap_or_else(|| panic!("no processed-transactions line: {context}"));
            assert!(processed > 0, "no transactions processed: {context}");
            println!("pgbench -M {mode} {script}: {processed} transactions, none failed");
            if script == "tpcb" {
                // Each TPC-B transaction appends one history row, and pgbench
                // empties the table before every run: none was lost or
                // applied twice on the way.
                assert_eq!(
                    pg.sql("SELECT count(*) FROM pgbench_history"),
                    processed.to_string(),
                    "history rows vs processed transactions: {context}"
                );
            }
        }
    }
}
