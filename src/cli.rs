//! The `pgshadow` command line.
//!
//! Exit codes: 0 success, 1 the proxy failed while running, 2 bad usage or
//! an invalid configuration (the message names the key).

pub mod demo;
pub mod exit;
pub mod mismatches;

use crate::admin;
use crate::config::Config;
use crate::observability;
use crate::reload::{self, Reloader};
use crate::server::Server;
use anyhow::Context;
use clap::{Parser, Subcommand};
use exit::{EXIT_FAILURE, EXIT_USAGE};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::mpsc;

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
    Demo(demo::DemoOptions),
    /// The mismatch store: list, show, acknowledge and mute incidents
    /// (the store comes from --store URL or --config FILE).
    Mismatches(mismatches::MismatchesArgs),
}

/// Runs the command line and returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig { file } => check_config(&file),
        Command::Demo(options) => demo::main(options),
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
        let server = Server::bind(config.clone(), metrics, |parts, certificates| {
            // Before the first log line announces the proxy: from here on a
            // SIGHUP reloads instead of terminating the process.
            let reloader =
                Reloader::new(path.to_path_buf(), (*config).clone(), parts.shadow.clone())
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
