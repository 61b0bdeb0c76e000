//! The demo's application: readers and dual-writing writers, connected
//! through the proxy like any application would be.
//!
//! Readers run what a content site runs: paginated listings sorted by a
//! column whose values tie (`ORDER BY updated_at DESC LIMIT 25 OFFSET n`),
//! the homepage's featured entries (among them the entries the backfill
//! broke), point lookups and a dashboard aggregate. Writers do what an
//! application does during the dual-write phase of a migration: update an
//! entry in the old and the new schema in one transaction. They move rows
//! between pages while the readers page, so a comparison that ran the old
//! and new query in two snapshots would see different rows; pgshadow's
//! single snapshot must keep that from ever raising an alarm.

use super::schema::{
    featured_entries, ACCENTED_TITLES, APP_ROLE, DATABASE, ENTRIES_PER_ENVIRONMENT, ENVIRONMENTS,
    NEW_SCHEMA,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

/// Rows per listing page.
const PAGE_SIZE: i64 = 25;

/// A page of one environment's entries, most recently updated first. The
/// sort key ties (entries share `updated_at`), so without a tiebreaker the
/// old and new schema would return different rows on the same page.
const LISTING: &str = "SELECT e.sys_id, e.entry_id, e.content_type, e.updated_at, e.version, \
     f.value AS title \
     FROM entries e JOIN entry_fields f ON f.sys_id = e.sys_id AND f.name = 'title' \
     WHERE e.environment_id = $1 \
     ORDER BY e.updated_at DESC LIMIT 25 OFFSET $2";

/// The homepage's featured entries, grouped by content type (which ties).
const FEATURED: &str = "SELECT e.sys_id, e.content_type, e.updated_at, f.value AS title \
     FROM entries e JOIN entry_fields f ON f.sys_id = e.sys_id AND f.name = 'title' \
     WHERE e.sys_id = ANY($1) \
     ORDER BY e.content_type";

/// One entry with its fields, as an entry page shows it.
const LOOKUP: &str =
    "SELECT e.sys_id, e.environment_id, e.version, t.value AS title, b.value AS body \
     FROM entries e \
     JOIN entry_fields t ON t.sys_id = e.sys_id AND t.name = 'title' \
     LEFT JOIN entry_fields b ON b.sys_id = e.sys_id AND b.name = 'body' \
     WHERE e.sys_id = $1";

/// An entry's assets: the statement the new schema's forgotten index
/// makes slower.
const ASSETS: &str = super::schema::SLOW_STATEMENT;

/// Entries per environment, sent as a simple Query (as a dashboard or
/// an admin tool would).
const DASHBOARD: &str = "SELECT v.name AS environment, count(*) AS entries, \
     max(e.version) AS max_version, max(e.updated_at) AS last_update \
     FROM entries e JOIN environments v ON v.id = e.environment_id \
     GROUP BY v.name ORDER BY v.name";

/// How much traffic to drive.
#[derive(Debug, Clone, Copy)]
pub struct TrafficOptions {
    /// Reads per second over all readers.
    pub reads_per_second: u32,
    /// Reader connections.
    pub readers: usize,
    /// Writer connections.
    pub writers: usize,
}

impl TrafficOptions {
    /// Write transactions per second over all writers: one for every
    /// twenty reads, at least one per writer.
    pub fn writes_per_second(&self) -> u32 {
        (self.reads_per_second / 20).max(self.writers as u32)
    }
}

/// What the application did, as it saw it.
#[derive(Debug, Default)]
pub struct TrafficStats {
    reads: AtomicU64,
    writes: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl TrafficStats {
    /// Read statements completed.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Write transactions committed.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Statements or transactions that failed.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The first failure, for the summary.
    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|e| e.clone())
    }

    fn failed(&self, what: &str, error: &tokio_postgres::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert_with(|| format!("{what}: {}", describe(error)));
        }
    }
}

/// An error with the server's message when there is one (tokio-postgres's
/// own Display says only "db error").
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => error.to_string(),
    }
}

/// Connects every reader and writer to the proxy at `proxy`, then drives
/// traffic until `stop` fires. Returns once every connection is closed.
/// Fails only if a connection cannot be opened; errors of single
/// statements are counted in `stats`.
pub async fn run(
    proxy: SocketAddr,
    options: TrafficOptions,
    stats: Arc<TrafficStats>,
    stop: CancellationToken,
) -> Result<(), String> {
    let mut readers = Vec::with_capacity(options.readers);
    for i in 0..options.readers {
        readers.push(connect(proxy, &format!("demo-reader-{i}")).await?);
    }
    let mut writers = Vec::with_capacity(options.writers);
    for i in 0..options.writers {
        writers.push(connect(proxy, &format!("demo-writer-{i}")).await?);
    }
    let read_every = per_worker_period(options.reads_per_second, options.readers);
    let write_every = per_worker_period(options.writes_per_second(), options.writers);
    let mut tasks = JoinSet::new();
    for (i, client) in readers.into_iter().enumerate() {
        tasks.spawn(read_loop(
            client,
            i,
            read_every,
            stats.clone(),
            stop.clone(),
        ));
    }
    for (i, client) in writers.into_iter().enumerate() {
        tasks.spawn(write_loop(
            client,
            i,
            write_every,
            stats.clone(),
            stop.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Each worker's pause between operations for a total rate.
fn per_worker_period(per_second: u32, workers: usize) -> Duration {
    let per_worker = f64::from(per_second.max(1)) / workers.max(1) as f64;
    Duration::from_secs_f64(1.0 / per_worker)
}

async fn connect(proxy: SocketAddr, name: &str) -> Result<Client, String> {
    let conninfo = format!(
        "host={} port={} user={APP_ROLE} dbname={DATABASE} application_name={name}",
        proxy.ip(),
        proxy.port()
    );
    let (client, connection) = tokio_postgres::connect(&conninfo, NoTls)
        .await
        .map_err(|e| format!("cannot connect to the proxy at {proxy}: {}", describe(&e)))?;
    tokio::spawn(async move {
        // Ends when the client is dropped or the proxy closes the session.
        let _ = connection.await;
    });
    Ok(client)
}

/// What a reader does next, in a fixed rotation: mostly listing pages,
/// then lookups, the homepage and the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Listing,
    Lookup,
    Featured,
    Dashboard,
    Assets,
}

impl Read {
    fn nth(n: u64) -> Read {
        match n % 20 {
            3 => Read::Featured,
            13 => Read::Dashboard,
            7 | 17 => Read::Assets,
            1 | 5 | 9 | 15 | 19 => Read::Lookup,
            _ => Read::Listing,
        }
    }
}

async fn read_loop(
    client: Client,
    reader: usize,
    every: Duration,
    stats: Arc<TrafficStats>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let pages = (ENTRIES_PER_ENVIRONMENT + PAGE_SIZE - 1) / PAGE_SIZE;
    let featured = featured_entries();
    // Readers start at different pages, so together they cover every page
    // of every environment within a few seconds.
    let mut page = (reader as i64 * 7) % pages;
    let mut environment = reader % ENVIRONMENTS.len();
    for n in 0u64.. {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let read = Read::nth(n);
        let result = match read {
            Read::Listing => {
                let (env_id, _) = ENVIRONMENTS[environment];
                let offset = page * PAGE_SIZE;
                page = (page + 1) % pages;
                if page == 0 {
                    environment = (environment + 1) % ENVIRONMENTS.len();
                }
                // `environment_id` is an int4 column.
                let env_id = env_id as i32;
                client.query(LISTING, &[&env_id, &offset]).await.map(|_| ())
            }
            Read::Lookup => {
                let (env_id, _) = ENVIRONMENTS[rand::random_range(0..ENVIRONMENTS.len())];
                let entry = rand::random_range(1..=ENTRIES_PER_ENVIRONMENT);
                let sys_id = super::schema::sys_id(env_id, entry);
                client.query(LOOKUP, &[&sys_id]).await.map(|_| ())
            }
            Read::Featured => client.query(FEATURED, &[&featured]).await.map(|_| ()),
            Read::Assets => {
                let (env_id, _) = ENVIRONMENTS[rand::random_range(0..ENVIRONMENTS.len())];
                let entry = rand::random_range(1..=ENTRIES_PER_ENVIRONMENT);
                let sys_id = super::schema::sys_id(env_id, entry);
                client.query(ASSETS, &[&sys_id]).await.map(|_| ())
            }
            Read::Dashboard => client.simple_query(DASHBOARD).await.map(|_| ()),
        };
        match result {
            Ok(()) => {
                stats.reads.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                stats.failed(&format!("{read:?} read"), &e);
                if client.is_closed() {
                    break;
                }
            }
        }
    }
}

async fn write_loop(
    mut client: Client,
    writer: usize,
    every: Duration,
    stats: Arc<TrafficStats>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u64.. {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        // Writers leave the accented entries alone: a dual write would
        // repair the broken copy, as it would in production.
        let entry = loop {
            let candidate = rand::random_range(1..=ENTRIES_PER_ENVIRONMENT);
            if !ACCENTED_TITLES.iter().any(|(id, _)| *id == candidate) {
                break candidate;
            }
        };
        let (env_id, _) = ENVIRONMENTS[rand::random_range(0..ENVIRONMENTS.len())];
        let sys_id = super::schema::sys_id(env_id, entry);
        let title = format!("Title {entry} (edit {writer}.{n})");
        match dual_write(&mut client, sys_id, &title).await {
            Ok(()) => {
                stats.writes.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                stats.failed("dual write", &e);
                if client.is_closed() {
                    break;
                }
            }
        }
    }
}

/// Updates an entry's title and sys columns in both schemas, in one
/// transaction: the dual-write phase of the migration.
async fn dual_write(
    client: &mut Client,
    sys_id: i64,
    title: &str,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute(
        "UPDATE entries SET updated_at = now(), version = version + 1 WHERE sys_id = $1",
        &[&sys_id],
    )
    .await?;
    tx.execute(
        "UPDATE entry_fields SET value = $2 WHERE sys_id = $1 AND name = 'title'",
        &[&sys_id, &title],
    )
    .await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO {NEW_SCHEMA}.field_values (value) VALUES ($1) \
                 ON CONFLICT (value) DO UPDATE SET value = excluded.value RETURNING value_id"
            ),
            &[&title],
        )
        .await?;
    let value_id: i64 = row.try_get(0)?;
    tx.execute(
        &format!(
            "UPDATE {NEW_SCHEMA}.entry_map \
             SET updated_at = now(), version = version + 1, title_id = $2 WHERE sys_id = $1"
        ),
        &[&sys_id, &value_id],
    )
    .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rotation_reads_every_kind() {
        let kinds: Vec<Read> = (0..20).map(Read::nth).collect();
        for kind in [
            Read::Listing,
            Read::Lookup,
            Read::Featured,
            Read::Dashboard,
            Read::Assets,
        ] {
            assert!(kinds.contains(&kind), "{kind:?} never read");
        }
        assert!(kinds.iter().filter(|k| **k == Read::Listing).count() >= 10);
    }

    #[test]
    fn rates_split_over_workers() {
        assert_eq!(per_worker_period(200, 4), Duration::from_millis(20));
        assert_eq!(per_worker_period(0, 0), Duration::from_secs(1));
        let options = TrafficOptions {
            reads_per_second: 10,
            readers: 1,
            writers: 2,
        };
        assert_eq!(options.writes_per_second(), 2);
    }
}
