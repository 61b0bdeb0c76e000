//! The `pgshadow` command line.
//!
//! Exit codes: 0 success, 1 the proxy failed while running, 2 bad usage or
//! an invalid configuration (the message names the key).

pub mod mismatches;

use crate::admin::{self, AdminServer};
use crate::config::Config;
use crate::observability;
use crate::proxy::Proxy;
use crate::reload::{self, Reloader};
use anyhow::Context;
use clap::{Parser, Subcommand};
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A Postgres proxy that verifies a schema migration on real reads.
#[derive(Debug, Parser)]
#[command(name = "pgshadow", version, about, long_about = None)]
pub struct Cli {
    /// Config file for `run` (the default command); `mismatches` finds
    /// the store in its `[store]` section.
    #[arg(
        long,
        short,
        global = true,
        env = "PGSHADOW_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default).
    Run,
    /// Check a config file and print a summary; exit 0 if valid, 2 if not.
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// See pgshadow catch a backfill bug: a throw-away PostgreSQL with an
    /// old and a migrated schema, the proxy and live traffic.
    Demo(crate::demo::DemoOptions),
    /// The mismatch store: list, show, acknowledge and mute incidents
    /// (the store comes from --store URL or --config FILE).
    Mismatches(mismatches::MismatchesArgs),
}

/// Exit code for bad usage or invalid configuration.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a failure while running.
pub const EXIT_FAILURE: u8 = 1;

/// Runs the command line and returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig { file } => check_config(&file),
        Command::Demo(options) => crate::demo::main(options),
        Command::Mismatches(args) => mismatches::main(args, cli.config.as_deref()),
        Command::Run => {
            let Some(path) = cli.config else {
                eprintln!(
                    "pgshadow: no config file given: use `pgshadow run --config FILE` \
                     (config.example.toml documents every key)"
                );
                return ExitCode::from(EXIT_USAGE);
            };
            let config = match Config::load(&path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("pgshadow: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            match run(config, &path) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("pgshadow: {e:#}");
                    ExitCode::from(EXIT_FAILURE)
                }
            }
        }
    }
}

fn check_config(file: &Path) -> ExitCode {
    match Config::load(file) {
        Ok(c) => {
            println!("{}: OK", file.display());
            println!("  listen    {}", c.listen.address);
            println!("  upstream  {}", c.upstream.display_address());
            println!(
                "  shadow    {}",
                if c.shadow.enabled {
                    format!("enabled, sample_rate {}", c.shadow.sample_rate)
                } else {
                    "disabled".into()
                }
            );
            println!("  admin     {}", c.admin.address);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pgshadow: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Runs the proxy until SIGTERM/SIGINT and a graceful shutdown; SIGHUP
/// re-reads `path` ([`reload`]).
fn run(config: Config, path: &Path) -> anyhow::Result<()> {
    observability::logs::init(&config.log).map_err(anyhow::Error::msg)?;
    let metrics = admin::install_metrics()?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.listen.worker_threads > 0 {
        runtime.worker_threads(config.listen.worker_threads);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let config = Arc::new(config);
    runtime.block_on(async move {
        let server = Server::bind(config.clone(), metrics, |proxy, certificates| {
            // Before the first log line announces the proxy: from here on a
            // SIGHUP reloads instead of terminating the process.
            let reloader = Reloader::new(
                path.to_path_buf(),
                (*config).clone(),
                proxy.shadow().cloned(),
            )
            .with_certificates(certificates);
            reload::reload_on_sighup(reloader).context("cannot install the SIGHUP handler")?;
            Ok(())
        })
        .await?;
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(forward_shutdown_signals(tx));
        server.run(rx).await;
        Ok(())
    })
}

/// A bound proxy and admin server: the serving part of `pgshadow run`.
///
/// `pgshadow demo` starts its proxy through this too, so the demo shows
/// exactly what `run` does (shadow, mismatch store, admin endpoints) and
/// cannot drift from it.
pub struct Server {
    proxy: Proxy,
    admin: AdminServer,
    /// Alerts on new incidents, when `alerts.webhook_url` is set.
    webhook: Option<crate::alerts::Webhook>,
}

impl Server {
    /// Binds `listen.address` (starting the shadow and opening the
    /// mismatch store when `shadow.enabled`) and `admin.address`, and logs
    /// both addresses (`listening`, `admin server listening`: tests and
    /// scripts read the ports chosen for port 0 from those lines).
    ///
    /// `before_announce` runs once the proxy is bound and before the first
    /// line announces it, with the TLS certificates in use (listener and
    /// admin server): `run` installs its SIGHUP handler there, so a
    /// reload can never hit a proxy that looks up but would still die of
    /// the signal.
    pub async fn bind(
        config: Arc<Config>,
        metrics: PrometheusHandle,
        before_announce: impl FnOnce(&Proxy, Vec<Arc<crate::tls::ServerTls>>) -> anyhow::Result<()>,
    ) -> anyhow::Result<Server> {
        let proxy = Proxy::bind(config.clone()).await?;
        let admin_tls = AdminServer::load_tls(&config)?;
        let certificates = proxy
            .client_tls()
            .into_iter()
            .chain(admin_tls.as_ref())
            .cloned()
            .collect();
        before_announce(&proxy, certificates)?;
        let address = proxy
            .local_addr()
            .context("cannot read the bound address")?;
        tracing::info!(
            %address,
            upstream = %config.upstream.display_address(),
            version = env!("CARGO_PKG_VERSION"),
            "listening"
        );
        let admin = AdminServer::bind(&config, metrics, &proxy, admin_tls).await?;
        tracing::info!(address = %admin.local_addr()?, "admin server listening");
        let webhook =
            crate::alerts::start_webhook(&config, admin.local_addr()?, proxy.store_writer())?;
        Ok(Server {
            proxy,
            admin,
            webhook,
        })
    }

    /// The address clients connect to.
    pub fn proxy_address(&self) -> std::io::Result<SocketAddr> {
        self.proxy.local_addr()
    }

    /// The admin server's address (`/metrics`, `/healthz`, the page).
    pub fn admin_address(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// The proxy, for its shadow and mismatch store handles.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Serves until the first message on `shutdown`, then shuts down
    /// gracefully (a second message cuts the grace period short; see
    /// [`Proxy::run`]). The admin server stops once the proxy has finished,
    /// so `/metrics` stays scrapeable during the grace period.
    pub async fn run(self, shutdown: mpsc::Receiver<()>) {
        let admin_stop = CancellationToken::new();
        let admin_task = tokio::spawn(self.admin.run(admin_stop.clone()));
        self.proxy.run(shutdown).await;
        if let Some(webhook) = self.webhook {
            // After the store's last flush, so its new incidents still alert.
            webhook.shutdown(std::time::Duration::from_secs(5)).await;
        }
        admin_stop.cancel();
        let _ = admin_task.await;
    }
}

/// Turns every SIGTERM or SIGINT into a shutdown request: the first starts
/// a graceful shutdown, the second cuts it short.
async fn forward_shutdown_signals(tx: mpsc::Sender<()>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop pgshadow with SIGKILL");
        return;
    };
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
        if tx.send(()).await.is_err() {
            return;
        }
    }
}
