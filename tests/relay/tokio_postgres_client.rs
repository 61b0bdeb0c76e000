//! tokio-postgres (extended protocol, binary formats, pipelining, COPY)
//! through the proxy.

use crate::harness::{connect, Pg, Proxy};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use tokio_postgres::error::DbError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_with_binary_parameters_and_nulls_round_trip() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    let client = connect(proxy.port).await;
    client
        .batch_execute("CREATE TABLE things (id int8 PRIMARY KEY, name text, score float8, blob bytea, flag bool)")
        .await
        .unwrap();
    let insert = client
        .prepare("INSERT INTO things VALUES ($1, $2, $3, $4, $5)")
        .await
        .unwrap();
    for i in 0..200i64 {
        let name = (i % 3 != 0).then(|| format!("thing {i} ✓"));
        let score = (i % 5 != 0).then_some(i as f64 / 7.0);
        let blob = (i % 2 == 0).then(|| vec![i as u8, 0, 255]);
        let flag = (i % 4 != 0).then_some(i % 2 == 0);
        client
            .execute(&insert, &[&i, &name, &score, &blob, &flag])
            .await
            .unwrap();
    }
    let select = client
        .prepare("SELECT id, name, score, blob, flag FROM things WHERE id >= $1 ORDER BY id")
        .await
        .unwrap();
    let rows = client.query(&select, &[&0i64]).await.unwrap();
    assert_eq!(rows.len(), 200);
    for (i, row) in rows.iter().enumerate() {
        let i = i as i64;
        assert_eq!(row.get::<_, i64>(0), i);
        assert_eq!(
            row.get::<_, Option<String>>(1),
            (i % 3 != 0).then(|| format!("thing {i} ✓"))
        );
        assert_eq!(
            row.get::<_, Option<f64>>(2),
            (i % 5 != 0).then_some(i as f64 / 7.0)
        );
        assert_eq!(
            row.get::<_, Option<Vec<u8>>>(3),
            (i % 2 == 0).then(|| vec![i as u8, 0, 255])
        );
        assert_eq!(
            row.get::<_, Option<bool>>(4),
            (i % 4 != 0).then_some(i % 2 == 0)
        );
    }
    let nulls: i64 = client
        .query_one("SELECT count(*) FROM things WHERE name IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(nulls, 67);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_and_roll_back() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    let mut client = connect(proxy.port).await;
    client
        .batch_execute("CREATE TABLE ledger (n int)")
        .await
        .unwrap();

    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO ledger VALUES (1), (2)", &[])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO ledger VALUES (3)", &[])
        .await
        .unwrap();
    // A failed statement inside a transaction, rolled back to a savepoint.
    let sp = {
        let mut tx = tx;
        let sp = tx.savepoint("before_error").await.unwrap();
        let err = sp
            .execute("INSERT INTO ledger VALUES (1/0)", &[])
            .await
            .unwrap_err();
        assert_eq!(err.code().map(|c| c.code()), Some("22012"));
        sp.rollback().await.unwrap();
        tx
    };
    sp.commit().await.unwrap();
    let sum: i64 = client
        .query_one("SELECT coalesce(sum(n), 0) FROM ledger", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_through_the_proxy() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    let client = connect(proxy.port).await;
    client
        .batch_execute("CREATE TABLE copied (id int, label text)")
        .await
        .unwrap();
    let sink = client.copy_in("COPY copied FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    let mut expected = Vec::new();
    for chunk in 0..50 {
        let mut data = String::new();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            data.push_str(&format!("{i}\tlabel {i}\n"));
        }
        expected.extend_from_slice(data.as_bytes());
        sink.send(Bytes::from(data)).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 50_000);

    let out = client
        .copy_out("COPY (SELECT * FROM copied ORDER BY id) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<Bytes> = out.try_collect().await.unwrap();
    assert_eq!(chunks.concat(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_of_100_queries_answers_each_in_order() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    let client = connect(proxy.port).await;
    let stmt = client
        .prepare("SELECT $1::int * 2, pg_backend_pid()")
        .await
        .unwrap();
    // tokio-postgres sends every request as soon as it is polled, without
    // waiting for earlier replies: all 100 are in flight at once.
    let queries = (0..100i32).map(|i| {
        let client = &client;
        let stmt = &stmt;
        async move {
            client
                .query_one(stmt, &[&i])
                .await
                .map(|r| (i, r.get::<_, i32>(0), r.get::<_, i32>(1)))
        }
    });
    let results = futures_util::stream::iter(queries)
        .buffered(100)
        .collect::<Vec<_>>()
        .await;
    let pids: std::collections::HashSet<i32> = results
        .into_iter()
        .map(|r| {
            let (i, doubled, pid) = r.unwrap();
            assert_eq!(doubled, i * 2);
            pid
        })
        .collect();
    assert_eq!(pids.len(), 1, "one session, one backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_carry_the_same_fields_as_directly() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    let direct = connect(pg.port()).await;
    let proxied = connect(proxy.port).await;
    direct
        .batch_execute("CREATE TABLE uniq (id int PRIMARY KEY); INSERT INTO uniq VALUES (1)")
        .await
        .unwrap();
    let failing = [
        "SELECT * FROM uniq WHERE nosuchcolumn = 1",
        "SELEC 1",
        "INSERT INTO uniq VALUES (1)",
        "SELECT 1/0",
        "SELECT 'not a number'::int",
    ];
    for sql in failing {
        let a = direct.simple_query(sql).await.unwrap_err();
        let b = proxied.simple_query(sql).await.unwrap_err();
        let (a, b): (&DbError, &DbError) = (a.as_db_error().unwrap(), b.as_db_error().unwrap());
        assert_eq!(b.code(), a.code(), "{sql}");
        assert_eq!(b.message(), a.message(), "{sql}");
        assert_eq!(b.detail(), a.detail(), "{sql}");
        assert_eq!(b.hint(), a.hint(), "{sql}");
        assert_eq!(
            format!("{:?}", b.position()),
            format!("{:?}", a.position()),
            "{sql}"
        );
        assert_eq!(b.constraint(), a.constraint(), "{sql}");
        // Extended protocol too.
        let a = direct.query(sql, &[]).await.unwrap_err();
        let b = proxied.query(sql, &[]).await.unwrap_err();
        assert_eq!(b.code(), a.code(), "{sql}");
    }
    let pos = proxied
        .simple_query("SELECT nosuch FROM uniq")
        .await
        .unwrap_err();
    assert!(pos.as_db_error().unwrap().position().is_some());
    // The session is still usable after all those errors.
    assert_eq!(
        proxied
            .query_one("SELECT 7", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        7
    );
}
