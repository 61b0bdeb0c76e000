//! The shadow never stalls a migration (issue 14, acceptance 1): while the
//! application reads through the proxy at `sample_rate = 1.0` and
//! dual-writes `items` and `v2.items`, a migration alters `v2.items` every
//! half second with `lock_timeout = 5s`. The same workload runs with the
//! shadow off and on; with it on, the DDL's lock wait and the dual
//! writes' latency stay within 200 ms of shadow off, and no DDL times out:
//! shadow transactions never queue behind the DDL (`lock_timeout`), and
//! one that holds a lock the DDL waits for gives way (cancelled by the
//! watcher).

use crate::harness::{connect, Pg, Proxy};
use crate::skipped;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Old `items`, and `v2.items` a real table (the DDL's target), both read
/// through a STABLE function that sleeps: each read takes `$2` seconds.
const SCHEMA: &str = "
    CREATE TABLE items (id int PRIMARY KEY, title text NOT NULL);
    INSERT INTO items SELECT g, 'Title ' || g FROM generate_series(1, 1000) g;
    CREATE SCHEMA v2;
    CREATE TABLE v2.items (id int PRIMARY KEY, title text NOT NULL);
    INSERT INTO v2.items SELECT * FROM items;
    CREATE FUNCTION public.slow(s float8) RETURNS int LANGUAGE sql STABLE AS $$
        SELECT 1 FROM pg_sleep(s) $$;
    CREATE FUNCTION v2.slow(s float8) RETURNS int LANGUAGE sql STABLE AS $$
        SELECT 1 FROM pg_sleep(s) $$;
    CREATE ROLE pgshadow LOGIN;
    GRANT USAGE ON SCHEMA public, v2 TO pgshadow;
    GRANT SELECT ON ALL TABLES IN SCHEMA public, v2 TO pgshadow;
";

/// The application's read, ≈ `$2` seconds.
const READ: &str = "SELECT id, title, slow($2) AS s FROM items WHERE id = $1";

/// How long each configuration runs.
const PHASE: Duration = Duration::from_secs(6);

/// What one phase measured.
#[derive(Debug, Default)]
struct Measured {
    ddl: usize,
    ddl_timeouts: usize,
    ddl_wait_max: Duration,
    writes: u64,
    write_max: Duration,
    reads: u64,
}

/// Runs the workload for [`PHASE`]: readers through `proxy_port` (one of
/// them with `long_read` seconds per read, when given), one dual writer
/// and the migration loop straight to the database.
async fn workload(pg_port: u16, proxy_port: u16, long_read: Option<f64>) -> Measured {
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    let mut read_times = vec![0.02f64, 0.02];
    read_times.extend(long_read);
    for (r, seconds) in read_times.into_iter().enumerate() {
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            let app = connect(proxy_port).await;
            let read = app.prepare(READ).await.unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = (n as i32 * 7 + r as i32) % 1000 + 1;
                let rows = app.query(&read, &[&id, &seconds]).await.unwrap();
                assert_eq!(rows.len(), 1, "the application's answer");
                n += 1;
            }
            n
        }));
    }
    let writer = {
        let stop = stop.clone();
        let client = connect(pg_port).await;
        tokio::spawn(async move {
            let old = client
                .prepare("UPDATE items SET title = $2 WHERE id = $1")
                .await
                .unwrap();
            let new = client
                .prepare("UPDATE v2.items SET title = $2 WHERE id = $1")
                .await
                .unwrap();
            let (mut n, mut max) = (0u64, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let id = (n % 1000) as i32 + 1;
                let title = format!("Title {id} v{n}");
                let started = Instant::now();
                client.batch_execute("BEGIN").await.unwrap();
                client.execute(&old, &[&id, &title]).await.unwrap();
                client.execute(&new, &[&id, &title]).await.unwrap();
                client.batch_execute("COMMIT").await.unwrap();
                max = max.max(started.elapsed());
                n += 1;
            }
            (n, max)
        })
    };
    let migration = connect(pg_port).await;
    migration
        .batch_execute("SET lock_timeout = '5s'")
        .await
        .unwrap();
    let mut measured = Measured::default();
    let started = Instant::now();
    let mut step = 0;
    while started.elapsed() < PHASE {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ddl = if step % 2 == 0 {
            "ALTER TABLE v2.items ADD COLUMN extra int"
        } else {
            "ALTER TABLE v2.items DROP COLUMN extra"
        };
        let t = Instant::now();
        match migration.batch_execute(ddl).await {
            Ok(()) => step += 1,
            Err(e) => {
                assert_eq!(
                    e.code().map(|c| c.code()),
                    Some("55P03"),
                    "only a lock timeout is expected: {e}"
                );
                measured.ddl_timeouts += 1;
            }
        }
        measured.ddl += 1;
        measured.ddl_wait_max = measured.ddl_wait_max.max(t.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let (writes, write_max) = writer.await.unwrap();
    measured.writes = writes;
    measured.write_max = write_max;
    for reader in readers {
        measured.reads += reader.await.unwrap();
    }
    if step % 2 == 1 {
        migration
            .batch_execute("ALTER TABLE v2.items DROP COLUMN extra")
            .await
            .unwrap();
    }
    measured
}

fn config(enabled: bool) -> String {
    format!(
        "[shadow]\nenabled = {enabled}\nsample_rate = 1.0\nuser = \"pgshadow\"\n\
         old_search_path = \"public\"\nnew_search_path = \"v2\"\nmax_in_flight = 2\n\
         [tiebreak]\ndefault_column = \"id\"\n"
    )
}

/// Runs the workload with the shadow off, then on, and checks the bounds.
async fn migration_is_not_stalled(long_read: Option<f64>) {
    let pg = Pg::start();
    pg.sql(SCHEMA);
    let off = {
        let proxy = Proxy::start(pg.port(), &config(false));
        workload(pg.port(), proxy.port, long_read).await
    };
    let proxy = Proxy::start(pg.port(), &config(true));
    let on = workload(pg.port(), proxy.port, long_read).await;
    let gave_way = skipped(&proxy, "gave_way");
    let lock_timeouts = skipped(&proxy, "lock_timeout");
    let budget = skipped(&proxy, "transaction_budget");
    let report = format!(
        "shadow off: {off:?}\nshadow on: {on:?}\n\
         gave_way {gave_way}, lock_timeout {lock_timeouts}, transaction_budget {budget}, \
         compared {}\n{}",
        proxy.all_comparisons(),
        proxy.metrics_text()
    );
    eprintln!("{report}");
    assert_eq!(off.ddl_timeouts, 0, "{report}");
    assert_eq!(on.ddl_timeouts, 0, "no DDL times out: {report}");
    assert!(on.ddl >= 8, "{report}");
    let margin = Duration::from_millis(200);
    assert!(
        on.ddl_wait_max <= off.ddl_wait_max + margin,
        "DDL lock wait: {report}"
    );
    assert!(
        on.write_max <= off.write_max + margin,
        "dual-write latency: {report}"
    );
    assert!(
        proxy.all_comparisons() > 0.0,
        "the shadow compared meanwhile: {report}"
    );
    assert!(
        gave_way + lock_timeouts > 0.0,
        "the shadow stepped aside for the DDL, counted: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_s_ddl_and_dual_writes_are_not_slowed_by_the_shadow() {
    migration_is_not_stalled(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampled_read_of_two_seconds_does_not_hold_the_migration_either() {
    migration_is_not_stalled(Some(2.0)).await;
}
