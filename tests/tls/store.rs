//! The PostgreSQL mismatch store honours `sslmode` (and `sslrootcert`) in
//! its URL, with libpq's meanings, against an ssl-only server.

use crate::harness::{Pg, TRUST_USER};
use crate::Certs;
use pgshadow::store::{Store, StoreOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_honours_sslmode_in_its_url() {
    let certs = Certs::make();
    let pg = Pg::start_tls_only(&certs.server());
    let base = format!("postgres://{TRUST_USER}@127.0.0.1:{}/app", pg.port());
    let open = |url: String| async move { Store::open(&url, StoreOptions::default()).await };

    let store = open(format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        certs.ca_path.display()
    ))
    .await
    .expect("verify-full with the CA");
    store.ping().await.unwrap();
    // libpq's default, prefer, encrypts without verifying.
    open(base.clone()).await.expect("prefer");

    let err = open(format!("{base}?sslmode=disable")).await.err().unwrap();
    assert!(err.to_string().contains("no encryption"), "{err}");
    let err = open(format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        certs.other_ca_path.display()
    ))
    .await
    .err()
    .unwrap();
    assert!(err.to_string().to_lowercase().contains("unknown"), "{err}");
    let err = open(format!("{base}?sslmode=bogus")).await.err().unwrap();
    assert!(err.to_string().contains("sslmode=bogus"), "{err}");
}
