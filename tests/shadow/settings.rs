//! The shadow runs a sample with the client's session settings: a value
//! rendered by the server (here a `timestamptz` as text) depends on them.
//! The new schema stores the rendering of one time zone; a client in that
//! time zone must see a match, a client in another a mismatch, whatever the
//! shadow connection ran before.

use crate::fixture::{self, SHADOW_ROLE};
use crate::harness::{connect, Pg, Proxy};
use crate::{comparisons, wait_for_comparisons};

const QUERY: &str = "SELECT id, at::text AS at FROM events ORDER BY id";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_runs_with_the_client_s_time_zone_and_no_other() {
    let pg = Pg::start();
    fixture::create(&pg);
    pg.sql(&format!(
        "CREATE TABLE public.events (id int PRIMARY KEY, at timestamptz NOT NULL);
         INSERT INTO public.events VALUES (1, '2024-01-15 12:00:00+00'), (2, '2024-07-15 23:30:00+00');
         CREATE TABLE v2.events (id int PRIMARY KEY, at text NOT NULL);
         SET TimeZone = 'America/New_York';
         INSERT INTO v2.events SELECT id, at::text FROM public.events;
         GRANT SELECT ON public.events, v2.events TO {SHADOW_ROLE};"
    ));
    // One shadow connection, so every sample reuses what the one before
    // left behind.
    let proxy = Proxy::start(pg.port(), &fixture::shadow_config("max_in_flight = 1"));
    let new_york = connect(proxy.port).await;
    new_york
        .batch_execute("SET TimeZone = 'America/New_York'")
        .await
        .unwrap();
    let utc = connect(proxy.port).await;
    utc.batch_execute("SET TimeZone = 'UTC'").await.unwrap();

    let rows = new_york.query(QUERY, &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, String>(1), "2024-01-15 07:00:00-05");
    wait_for_comparisons(&proxy, 1.0);
    assert_eq!(
        comparisons(&proxy, "match"),
        1.0,
        "{}",
        proxy.metrics_text()
    );

    let rows = utc.query(QUERY, &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, String>(1), "2024-01-15 12:00:00+00");
    wait_for_comparisons(&proxy, 2.0);
    assert_eq!(
        comparisons(&proxy, "mismatch"),
        1.0,
        "the UTC client's sample ran in UTC: {}",
        proxy.metrics_text()
    );

    new_york.query(QUERY, &[]).await.unwrap();
    wait_for_comparisons(&proxy, 3.0);
    assert_eq!(
        comparisons(&proxy, "match"),
        2.0,
        "back in New York time: {}",
        proxy.metrics_text()
    );
}
