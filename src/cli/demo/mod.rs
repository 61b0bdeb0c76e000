//! `pgshadow demo`: see pgshadow catch a real inconsistency in a minute,
//! with one command and no database of one's own.
//!
//! The demo starts a throw-away PostgreSQL from the machine's binaries
//! ([`crate::localpg`], which also handles running as root), builds the old
//! and the migrated schema with one deliberate backfill bug ([`schema`]),
//! starts the proxy exactly as `pgshadow run` does ([`crate::server::Server`])
//! with the shadow on, and drives an application's traffic through it
//! ([`traffic`]) while printing progress ([`progress`]). At the end it
//! prints what was compared and the incidents the mismatch store holds
//! ([`report`]), and where to look. With `--keep` everything stays up until
//! Ctrl-C; in any case everything it created is removed before it exits:
//! the server process, its data directory and the demo's own directory.
//!
//! Exit codes: 0 when the seeded bug was found, 1 when it was not or the
//! demo could not run (e.g. no PostgreSQL binaries: the message says what
//! to install).

pub mod progress;
pub mod report;
pub mod schema;
pub mod traffic;

use crate::admin::{self, MetricsSource};
use crate::cli::exit::EXIT_FAILURE;
use crate::config::Config;
use crate::localpg::{Binaries, Cluster, ClusterOptions};
use crate::observability;
use crate::server::Server;
use crate::store::Store;
use anyhow::Context;
use progress::Counts;
use report::{Findings, Verdict};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use traffic::{TrafficOptions, TrafficStats};

/// How often a progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Fraction of reads compared: high, so a short run compares thousands.
const SAMPLE_RATE: f64 = 0.5;
/// Reader and writer connections.
const READERS: usize = 4;
const WRITERS: usize = 2;
/// Longest wait for the shadow and the store to catch up after the
/// traffic stops.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `pgshadow demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Seconds of live traffic before the summary.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duration: u64,
    /// Keep the database, the proxy and its admin server running after the
    /// summary, for exploring, until Ctrl-C.
    #[arg(long)]
    pub keep: bool,
    /// Reads per second the demo application sends through the proxy.
    #[arg(long, value_name = "N", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,
}

/// Runs the demo and returns the process exit code.
pub fn main(options: DemoOptions) -> ExitCode {
    match run(&options) {
        Ok(Verdict::Found) => ExitCode::SUCCESS,
        Ok(Verdict::NotFound) => ExitCode::from(EXIT_FAILURE),
        Err(e) => {
            eprintln!("pgshadow demo: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The whole demo: setup, run, cleanup. Cleanup happens on every path
/// after the directories exist: the cluster and the directory remove
/// themselves when dropped, and the runtime (with the proxy) is shut down
/// before the cluster is stopped.
fn run(options: &DemoOptions) -> anyhow::Result<Verdict> {
    println!("pgshadow demo: an old and a migrated schema, one backfill bug, live traffic through the proxy");
    let binaries = Binaries::find()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // From here on Ctrl-C and SIGTERM end the demo through its cleanup
    // instead of killing it with its directories left behind.
    let interrupted = {
        let _in_runtime = runtime.enter();
        watch_for_interrupts().context("cannot install signal handlers")?
    };
    let dir = tempfile::Builder::new()
        .prefix("pgshadow-demo-")
        .tempdir()
        .context("cannot create the demo's temporary directory")?;
    println!("  demo directory    {}", dir.path().display());
    println!(
        "  starting PostgreSQL ({}) from {}",
        binaries
            .version()
            .unwrap_or_else(|_| "unknown version".into()),
        binaries.dir().display()
    );
    let cluster = Cluster::start(&binaries, &ClusterOptions::default())?;
    println!(
        "  PostgreSQL        127.0.0.1:{} (pid {}), data directory {}",
        cluster.port(),
        cluster.pid(),
        cluster.root_path().display()
    );
    let result = if interrupted.is_cancelled() {
        Err(anyhow::anyhow!("interrupted"))
    } else {
        runtime.block_on(session(options, &cluster, dir.path(), interrupted))
    };
    // The proxy, its shadow connections and the store go first, then the
    // server, then the files.
    runtime.shutdown_timeout(Duration::from_secs(5));
    let cluster_root = cluster.root_path();
    let stopped = cluster.stop();
    let dir_path = dir.path().to_path_buf();
    let removed = dir.close();
    match (&stopped, &removed) {
        (Ok(()), Ok(())) => println!(
            "Cleaned up: stopped PostgreSQL, removed {} and {}",
            cluster_root.display(),
            dir_path.display()
        ),
        _ => {
            if let Err(e) = &stopped {
                eprintln!("pgshadow demo: cleanup: {e}");
            }
            if let Err(e) = &removed {
                eprintln!("pgshadow demo: cleanup: remove {}: {e}", dir_path.display());
            }
        }
    }
    let verdict = result?;
    stopped.context("cannot stop the demo's PostgreSQL")?;
    removed.with_context(|| format!("cannot remove {}", dir_path.display()))?;
    Ok(verdict)
}

/// Fires on the first SIGINT or SIGTERM.
fn watch_for_interrupts() -> std::io::Result<CancellationToken> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let token = CancellationToken::new();
    let fired = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        fired.cancel();
    });
    Ok(token)
}

/// Everything that runs on the database: schema, proxy, traffic, summary.
async fn session(
    options: &DemoOptions,
    cluster: &Cluster,
    dir: &Path,
    interrupted: CancellationToken,
) -> anyhow::Result<Verdict> {
    build_schemas(cluster).await?;
    println!(
        "  old schema        {}: normalised (environments, entries, entry_fields)",
        schema::OLD_SCHEMA
    );
    println!(
        "  new schema        {}: denormalised (entry_map + deduplicated field_values), views with the old names",
        schema::NEW_SCHEMA
    );
    println!("  data              {}", schema::describe());
    println!(
        "  seeded bug        the backfill of environment master double-encoded {} accented titles",
        schema::BUGGY_ENTRIES.len()
    );

    let config_path = dir.join("pgshadow.toml");
    let store_url = format!("sqlite://{}", dir.join("mismatches.db").display());
    let text = demo_config(cluster.port(), &store_url);
    std::fs::write(&config_path, &text)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let config = Config::parse(&text, &config_path.display().to_string())?;
    observability::logs::init(&config.log).map_err(anyhow::Error::msg)?;
    let metrics = admin::install_metrics()?;
    let server = Server::bind(Arc::new(config), metrics.clone(), |_, _| Ok(())).await?;
    let metrics = MetricsSource::new(metrics, server.shadow().cloned());
    let proxy = server.proxy_address()?;
    let admin_address = server.admin_address()?;
    let store = server
        .store_writer()
        .map(|w| w.store().clone())
        .context("the demo's proxy has no mismatch store")?;
    let (shutdown, shutdown_rx) = mpsc::channel(2);
    let serving = tokio::spawn(server.run(shutdown_rx));
    println!(
        "  pgshadow          {proxy} -> PostgreSQL; shadow on, sample_rate {SAMPLE_RATE}, keys from the catalog; admin http://{admin_address}/"
    );
    println!("  config            {}", config_path.display());

    let result = drive(options, proxy, &metrics, &store, &interrupted).await;
    let mut first_incident = None;
    let result = match result {
        Ok((seconds, stats)) => {
            let counts = Counts::parse(&metrics.render());
            match Findings::load(&store).await {
                Ok(findings) => {
                    println!();
                    if interrupted.is_cancelled() {
                        println!("(interrupted after {seconds} s)");
                    }
                    print!("{}", report::summary(seconds, &counts, &stats, &findings));
                    first_incident = findings.incidents.first().map(|d| d.incident.id.clone());
                    Ok(findings.verdict())
                }
                Err(e) => Err(anyhow::Error::new(e).context("cannot read the mismatch store")),
            }
        }
        Err(e) => Err(e),
    };
    where_to_look(
        options.keep,
        proxy,
        admin_address,
        &store_url,
        first_incident.as_deref(),
    );
    if options.keep && result.is_ok() && !interrupted.is_cancelled() {
        println!(
            "Everything stays up; the demo's traffic has stopped, and what you send through \
             the proxy is compared too. Press Ctrl-C to stop and remove it all."
        );
        interrupted.cancelled().await;
    }
    // A graceful proxy shutdown writes the store's last batch.
    let _ = shutdown.send(()).await;
    let _ = serving.await;
    result
}

/// Drives the traffic for the chosen duration (or until interrupted),
/// printing progress, then waits for the shadow and the store to catch up.
/// Returns the seconds of traffic and what the application saw.
async fn drive(
    options: &DemoOptions,
    proxy: SocketAddr,
    metrics: &MetricsSource,
    store: &Store,
    interrupted: &CancellationToken,
) -> anyhow::Result<(u64, Arc<TrafficStats>)> {
    let traffic_options = TrafficOptions {
        reads_per_second: options.rate,
        readers: READERS,
        writers: WRITERS,
    };
    println!(
        "  traffic           {READERS} readers ({} reads/s: pages sorted by a tied key, featured entries, lookups), {WRITERS} writers dual-writing both schemas ({}/s), {} s",
        options.rate,
        traffic_options.writes_per_second(),
        options.duration
    );
    println!();
    let stats = Arc::new(TrafficStats::default());
    let stop = CancellationToken::new();
    let mut traffic = tokio::spawn(traffic::run(
        proxy,
        traffic_options,
        stats.clone(),
        stop.clone(),
    ));
    let started = Instant::now();
    let end = tokio::time::sleep(Duration::from_secs(options.duration));
    tokio::pin!(end);
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    let mut ended_early = None;
    loop {
        tokio::select! {
            _ = &mut end => break,
            _ = interrupted.cancelled() => {
                println!("  interrupted: stopping the traffic");
                break;
            }
            _ = ticks.tick() => {
                let counts = Counts::parse(&metrics.render());
                let at = format!("{}s", started.elapsed().as_secs());
                println!("{}", counts.progress_line(&at));
            }
            finished = &mut traffic => {
                ended_early = Some(finished);
                break;
            }
        }
    }
    stop.cancel();
    let finished = match ended_early {
        Some(finished) => finished,
        None => traffic.await,
    };
    match finished {
        Ok(Ok(())) => {}
        Ok(Err(e)) => anyhow::bail!("the demo application failed: {e}"),
        Err(e) => anyhow::bail!("the demo application failed: {e}"),
    }
    let seconds = started.elapsed().as_secs();
    settle(metrics, store).await;
    let counts = Counts::parse(&metrics.render());
    println!("{}", counts.progress_line("done"));
    Ok((seconds, stats))
}

/// Waits until the samples the traffic left in the shadow's queue are
/// compared and every outcome is in the store, so the summary's numbers
/// and incidents agree. Neither has an event to await, so this asks: the
/// queue is empty, the comparison count has not moved since the last
/// look, and the store has counted as many comparisons as `/metrics`.
async fn settle(metrics: &MetricsSource, store: &Store) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut last = None;
    loop {
        let counts = Counts::parse(&metrics.render());
        let stored: u64 = store
            .list_coverage(None, 100_000)
            .await
            .map(|c| c.iter().map(|c| c.compared).sum())
            .unwrap_or(0);
        let compared = counts.compared();
        if counts.queue_depth == 0 && last == Some(compared) && stored >= compared {
            return;
        }
        if Instant::now() >= deadline {
            return;
        }
        last = Some(compared);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Creates the roles, the database, both schemas and the grants, as the
/// superuser over direct connections (not through the proxy).
async fn build_schemas(cluster: &Cluster) -> anyhow::Result<()> {
    let admin = connect(cluster, "postgres").await?;
    for statement in schema::cluster_setup() {
        admin
            .batch_execute(&statement)
            .await
            .with_context(|| format!("demo setup failed: {statement}"))?;
    }
    drop(admin);
    let db = connect(cluster, schema::DATABASE).await?;
    for (what, sql) in [
        ("old schema", schema::old_schema()),
        ("new schema", schema::new_schema()),
        ("grants", schema::grants()),
    ] {
        db.batch_execute(&sql)
            .await
            .map_err(|e| match e.as_db_error() {
                Some(db) => anyhow::anyhow!("{}: {}", db.code().code(), db.message()),
                None => anyhow::Error::new(e),
            })
            .with_context(|| format!("cannot create the demo's {what}"))?;
    }
    Ok(())
}

async fn connect(cluster: &Cluster, database: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(
        &cluster.conninfo(cluster.superuser(), database),
        tokio_postgres::NoTls,
    )
    .await
    .with_context(|| format!("cannot connect to the demo's PostgreSQL (database {database})"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The proxy's configuration: written to the demo directory (so it can be
/// read and reused) and loaded from there like any config file.
fn demo_config(postgres_port: u16, store_url: &str) -> String {
    let store_url = toml::Value::String(store_url.to_string());
    format!(
        r#"# Written by `pgshadow demo` for this run; removed with the demo directory.
[listen]
address = "127.0.0.1:0"
shutdown_timeout_ms = 5000

[upstream]
host = "127.0.0.1"
port = {postgres_port}

[shadow]
enabled = true
sample_rate = {SAMPLE_RATE}
user = "{shadow_role}"
old_search_path = "{old}"
new_search_path = "{new}"
max_in_flight = 4

# No [tiebreak] section: the keys that break ties on sort keys come from
# the catalog (entries by sys_id, entry_fields by (sys_id, name)).

[store]
url = {store_url}
max_examples = 20

[admin]
address = "127.0.0.1:0"

[log]
# The demo prints its own progress; RUST_LOG=info shows the proxy's log.
level = "error"
"#,
        shadow_role = schema::SHADOW_ROLE,
        old = schema::OLD_SCHEMA,
        new = schema::NEW_SCHEMA,
    )
}

/// Where the incidents, metrics and database can be seen.
fn where_to_look(
    keep: bool,
    proxy: SocketAddr,
    admin: SocketAddr,
    store_url: &str,
    incident: Option<&str>,
) {
    println!();
    if keep {
        println!("Where to look:");
    } else {
        println!("Where to look (with `pgshadow demo --keep` these stay up until Ctrl-C; this run removes them now):");
    }
    println!("  incidents page   http://{admin}/");
    println!("  metrics          http://{admin}/metrics");
    println!("  incidents (CLI)  pgshadow mismatches list --store {store_url}");
    if let Some(id) = incident {
        println!("  one incident     pgshadow mismatches show {id} --store {store_url}");
    }
    println!(
        "  the database     psql \"host={} port={} user={} dbname={}\"   (through the proxy)",
        proxy.ip(),
        proxy.port(),
        schema::APP_ROLE,
        schema::DATABASE
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_config_is_valid_and_turns_the_shadow_on() {
        let text = demo_config(5432, "sqlite:///tmp/pgshadow-demo-x/mismatches.db");
        let config = Config::parse(&text, "demo").unwrap();
        assert!(config.shadow.enabled);
        assert_eq!(config.upstream.port, 5432);
        assert_eq!(config.shadow.new_search_path, schema::NEW_SCHEMA);
        assert_eq!(
            config.store.url,
            crate::config::StoreUrl::Sqlite("/tmp/pgshadow-demo-x/mismatches.db".into())
        );
        assert!(
            config.tiebreak.columns.is_empty(),
            "the demo needs no configured keys: they come from the catalog"
        );
    }
}
