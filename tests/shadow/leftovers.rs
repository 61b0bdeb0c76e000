//! The shadow leaves nothing behind (issue 14): its transactions end with
//! ROLLBACK, so a notification a replayed function sent never reaches a
//! listener; advisory locks a function took are released whether the
//! sample succeeded or failed; it refuses to log in as a superuser; and
//! its idle connections go away.

use crate::fixture;
use crate::harness::{connect, wait_until, Pg, Proxy, TRUST_USER};
use crate::{comparisons, skipped, wait_for_comparisons};
use futures_util::StreamExt;
use std::time::Duration;
use tokio_postgres::AsyncMessage;

/// A function the application reads through that takes a session-level
/// advisory lock (keyed by its backend, so sessions never wait for each
/// other) and sends a notification. The new schema's copy fails for odd
/// arguments after doing both: a failing sample.
const NOISY_READ: &str = "
    CREATE FUNCTION public.noisy_read(p int) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM pg_advisory_lock(pg_backend_pid());
        PERFORM pg_notify('app_events', 'read ' || p);
        RETURN p;
    END $$;
    CREATE FUNCTION v2.noisy_read(p int) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM pg_advisory_lock(pg_backend_pid());
        PERFORM pg_notify('app_events', 'read ' || p);
        IF p % 2 = 1 THEN
            RAISE EXCEPTION 'the new schema fails on %', p;
        END IF;
        RETURN p;
    END $$;
";

/// Locks held by the shadow's backends (application_name `pgshadow`).
const SHADOW_LOCKS: &str = "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
     WHERE a.application_name = 'pgshadow' AND (l.locktype = 'advisory' OR l.relation IS NOT NULL)";

/// Shadow backends connected now.
const SHADOW_BACKENDS: &str =
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgshadow'";

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_hears_only_the_application_and_no_shadow_backend_keeps_a_lock() {
    let pg = Pg::start();
    fixture::create(&pg);
    pg.sql(NOISY_READ);
    let proxy = Proxy::start(
        pg.port(),
        &fixture::shadow_config("allow_functions = [\"noisy_read\"]\nbaseline_rate = 0.0"),
    );

    // The listener, straight to the database.
    let (listener, mut connection) =
        tokio_postgres::connect(&Pg::url(pg.port(), TRUST_USER, None), tokio_postgres::NoTls)
            .await
            .unwrap();
    let (heard_tx, mut heard) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = heard_tx.send(n.payload().to_string());
            }
        }
    });
    listener.batch_execute("LISTEN app_events").await.unwrap();

    let app = connect(proxy.port).await;
    // The last sample fails: nothing after it releases what it took.
    for p in 1..=7i32 {
        let row = app
            .query_one("SELECT noisy_read($1) AS n", &[&p])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), p);
    }
    wait_for_comparisons(&proxy, 7.0);
    assert_eq!(
        comparisons(&proxy, "match"),
        3.0,
        "even arguments match: {}",
        proxy.metrics_text()
    );
    assert_eq!(
        comparisons(&proxy, "new_error"),
        4.0,
        "odd arguments fail on the new side: {}",
        proxy.metrics_text()
    );
    assert_eq!(skipped(&proxy, "volatile_function"), 0.0, "allow-listed");

    // Notifications arrive in commit order: anything the shadow committed
    // would come before this marker.
    listener
        .batch_execute("NOTIFY app_events, 'end'")
        .await
        .unwrap();
    let mut got = Vec::new();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), heard.recv())
            .await
            .expect("the marker arrives")
            .expect("listener open");
        if n == "end" {
            break;
        }
        got.push(n);
    }
    let expected: Vec<String> = (1..=7).map(|p| format!("read {p}")).collect();
    assert_eq!(got, expected, "exactly the application's notifications");

    let shadow_backends = count(&listener, SHADOW_BACKENDS).await;
    assert!(
        shadow_backends > 0,
        "the shadow's connections are still open"
    );
    assert_eq!(
        count(&listener, SHADOW_LOCKS).await,
        0,
        "no lock held by a shadow backend"
    );
    // The application's own session keeps its advisory lock: the proxy
    // relays, it does not clean up after the application.
    assert_eq!(
        count(
            &listener,
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
             WHERE l.locktype = 'advisory' AND a.application_name <> 'pgshadow'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volatile_user_function_is_skipped_and_a_stable_one_is_compared() {
    let pg = Pg::start();
    fixture::create(&pg);
    for schema in ["public", "v2"] {
        pg.sql(&format!(
            "CREATE FUNCTION {schema}.title_of(p bigint) RETURNS text LANGUAGE sql STABLE AS $$
                 SELECT value FROM entry_fields WHERE sys_id = p AND name = 'title' $$;
             CREATE FUNCTION {schema}.stamp(p bigint) RETURNS bigint LANGUAGE sql VOLATILE AS $$
                 SELECT p $$;"
        ));
    }
    let stable = "SELECT sys_id, title_of(sys_id) AS title FROM entries \
                  WHERE environment_id = 1 ORDER BY sys_id LIMIT 5";
    let volatile = "SELECT sys_id, stamp(sys_id) AS s FROM entries \
                    WHERE environment_id = 1 ORDER BY sys_id LIMIT 5";

    let proxy = Proxy::start(pg.port(), &fixture::shadow_config(""));
    let app = connect(proxy.port).await;
    assert_eq!(app.query(volatile, &[]).await.unwrap().len(), 5);
    assert_eq!(app.query(stable, &[]).await.unwrap().len(), 5);
    wait_for_comparisons(&proxy, 1.0);
    wait_until(Duration::from_secs(30), || {
        (skipped(&proxy, "volatile_function") >= 1.0).then_some(())
    })
    .unwrap_or_else(|| panic!("not skipped: {}", proxy.metrics_text()));
    assert_eq!(skipped(&proxy, "volatile_function"), 1.0);
    assert_eq!(
        comparisons(&proxy, "match"),
        1.0,
        "the STABLE function is compared: {}",
        proxy.metrics_text()
    );
    assert_eq!(proxy.all_comparisons(), 1.0, "the volatile one is not");

    // Allow-listed, the volatile function is compared too.
    let proxy = Proxy::start(
        pg.port(),
        &fixture::shadow_config("allow_functions = [\"stamp\"]"),
    );
    let app = connect(proxy.port).await;
    app.query(volatile, &[]).await.unwrap();
    wait_for_comparisons(&proxy, 1.0);
    assert_eq!(
        comparisons(&proxy, "match"),
        1.0,
        "{}",
        proxy.metrics_text()
    );
    assert_eq!(skipped(&proxy, "volatile_function"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shadow_refuses_a_superuser_and_says_which_role_to_create() {
    let pg = Pg::start();
    fixture::create(&pg);
    let proxy = Proxy::start(
        pg.port(),
        &fixture::shadow_config(&format!("user = \"{TRUST_USER}\"")),
    );
    let app = connect(proxy.port).await;
    let query = "SELECT sys_id FROM entries WHERE environment_id = 1 ORDER BY sys_id LIMIT 3";
    assert_eq!(app.query(query, &[]).await.unwrap().len(), 3);
    let line = proxy.wait_for_log(Duration::from_secs(30), |l| {
        l.contains("shadow switched off until restart")
    });
    assert!(line.contains("is a superuser"), "{line}");
    assert!(line.contains("CREATE ROLE pgshadow_reader"), "{line}");
    assert!(line.contains("GRANT pg_read_all_data"), "{line}");
    assert!(line.contains("REVOKE"), "{line}");

    // Later samples are not even tried; the application is served.
    for _ in 0..3 {
        assert_eq!(app.query(query, &[]).await.unwrap().len(), 3);
    }
    wait_until(Duration::from_secs(30), || {
        (proxy.metric("pgshadow_skipped_total{reason=\"disabled\"}") >= 1.0).then_some(())
    })
    .unwrap_or_else(|| panic!("{}", proxy.metrics_text()));
    assert_eq!(comparisons(&proxy, "match"), 0.0);
    let direct = connect(pg.port()).await;
    assert_eq!(
        count(&direct, SHADOW_BACKENDS).await,
        0,
        "no shadow connection stays open as the superuser"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_shadow_connections_expire_and_never_exceed_the_global_cap() {
    let pg = Pg::start();
    fixture::create(&pg);
    let proxy = Proxy::start(
        pg.port(),
        &fixture::shadow_config(
            "pool_idle_timeout_ms = 1500\nmax_connections = 1\nmax_in_flight = 4\n\
             batch_window_ms = 0\nbaseline_rate = 0.0\nmax_transaction_ms = 30000\n\
             give_way_check_ms = 0",
        ),
    );
    let direct = connect(pg.port()).await;
    // Four sessions reading at once: four workers want connections, the
    // cap lets one exist.
    let mut readers = Vec::new();
    for environment in 1..=4i32 {
        let port = proxy.port;
        readers.push(tokio::spawn(async move {
            let app = connect(port).await;
            for _ in 0..10 {
                app.query(
                    "SELECT sys_id FROM entries WHERE environment_id = $1 ORDER BY sys_id LIMIT 3",
                    &[&environment],
                )
                .await
                .unwrap();
            }
        }));
    }
    let mut most = 0;
    let done = || proxy.all_comparisons() + skipped(&proxy, "transaction_budget");
    let started = std::time::Instant::now();
    while done() < 40.0 && started.elapsed() < Duration::from_secs(60) {
        most = most.max(count(&direct, SHADOW_BACKENDS).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for reader in readers {
        reader.await.unwrap();
    }
    assert_eq!(done(), 40.0, "{}", proxy.metrics_text());
    assert_eq!(
        comparisons(&proxy, "match"),
        40.0,
        "workers wait for the one connection rather than fail: {}",
        proxy.metrics_text()
    );
    assert_eq!(most, 1, "shadow connections seen at once");

    // Nothing to do: the idle connection is closed after the timeout.
    let mut gone = false;
    for _ in 0..150 {
        if count(&direct, SHADOW_BACKENDS).await == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the idle shadow connection expired");
}
