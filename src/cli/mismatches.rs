//! `pgshadow mismatches list|show|ids|ack|mute|unmute|coverage`: the
//! mismatch store from a terminal, for the on-call engineer (DESIGN §7).
//!
//! The store is found through `--store URL` or the `[store]` section of
//! `--config FILE` (the proxy's own config file). Output is a table or a
//! labelled block for people, or with `--json` the same JSON the store's
//! types serialise to, for scripts.
//!
//! Exit codes: 0 done; 1 no such incident, or the store cannot be opened
//! or read (the message says what to do); 2 bad usage (clap's own errors,
//! no store given, an invalid config file).

pub mod duration;
mod render;

use crate::cli::exit::{EXIT_FAILURE, EXIT_USAGE};
use crate::config::{Config, ConfigError, StoreConfig, StoreUrl};
use crate::outcome::signature::IncidentKind;
use crate::store::{format_utc, now_ms, Incident, IncidentFilter, IncidentStatus, Store};
use clap::{Args, Subcommand};
use duration::{format_duration, parse_duration};
use serde::Serialize;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// `pgshadow mismatches …`: options shared by every subcommand.
#[derive(Debug, Args)]
pub struct MismatchesArgs {
    /// The mismatch store, `sqlite://FILE` or `postgres://user@host:port/db`;
    /// instead of the `[store]` section of `--config FILE`.
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<StoreUrl>,
    /// Print JSON instead of tables, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: MismatchesCommand,
}

/// The `mismatches` subcommands.
#[derive(Debug, Subcommand)]
pub enum MismatchesCommand {
    /// List incidents, most recently seen first.
    List(ListArgs),
    /// Show one incident with its examples: both SQL texts as run,
    /// parameters, session settings, snapshot xmin and the differing rows.
    Show {
        /// Incident id (12 hex digits, as in `list` and in alerts).
        id: String,
    },
    /// Every differing row id an incident kept (its key values, how the
    /// row differed, first and last seen): the list a repair script needs.
    /// `--json` or `--csv` for scripts.
    Ids {
        /// Incident id.
        id: String,
        /// Print CSV (a header, then one row per id).
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// At most this many ids, most recently seen first.
        #[arg(long, default_value_t = 100_000)]
        limit: u64,
    },
    /// Acknowledge an incident: it keeps counting but raises no more alerts.
    Ack {
        /// Incident id.
        id: String,
        /// Who acknowledges it (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Mute an incident: it keeps counting, alerts no more, and reads as
    /// open again when the mute ends (which raises an alert).
    Mute {
        /// Incident id.
        id: String,
        /// How long: 30m, 2h, 1d, 1h30m (default: until `unmute`).
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Why, for whoever looks next.
        #[arg(long)]
        reason: String,
        /// Who mutes it (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// End a mute now (a running proxy then alerts that the incident is
    /// open again), or reopen an acknowledged incident.
    Unmute {
        /// Incident id.
        id: String,
        /// Who unmutes it (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Per statement fingerprint: comparisons, matches, mismatches,
    /// errors, skips and the 95% upper bound of its mismatch rate.
    Coverage {
        /// Only this fingerprint (16 hex digits).
        #[arg(long)]
        fingerprint: Option<String>,
        /// At most this many, most compared first.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
}

/// Filters of `mismatches list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only incidents with this status: open, acknowledged, muted, resolved.
    #[arg(long, value_parser = parse_status)]
    pub status: Option<IncidentStatus>,
    /// Only this kind: mismatch, old_error, new_error, both_error,
    /// timeout, rewrite_error, shadow_error.
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<IncidentKind>,
    /// Only this statement fingerprint (16 hex digits).
    #[arg(long)]
    pub fingerprint: Option<String>,
    /// Only incidents seen within this long: 30m, 2h, 1d.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    pub limit: u64,
}

fn parse_status(text: &str) -> Result<IncidentStatus, String> {
    IncidentStatus::parse(text)
        .ok_or_else(|| format!("{text:?} is not a status: open, acknowledged, muted or resolved"))
}

fn parse_kind(text: &str) -> Result<IncidentKind, String> {
    IncidentKind::parse(text).ok_or_else(|| {
        let kinds: Vec<_> = IncidentKind::ALL.iter().map(|k| k.label()).collect();
        format!("{text:?} is not an incident kind: {}", kinds.join(", "))
    })
}

/// Why a command did not succeed; decides the exit code.
#[derive(Debug)]
enum Failure {
    /// Exit 2: the command line or the config file is wrong.
    Usage(String),
    /// Exit 1: no such incident, or the store failed.
    Failed(String),
}

/// Runs `pgshadow mismatches …` and returns the exit code. `config` is
/// the global `--config FILE`, where the store is found unless `--store`
/// names it.
pub fn main(args: MismatchesArgs, config: Option<&Path>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pgshadow mismatches: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(run(&args, config)) {
        Ok(output) => {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::stdout().lock().write_all(output.as_bytes());
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(message)) => {
            eprintln!("pgshadow mismatches: {message}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Failed(message)) => {
            eprintln!("pgshadow mismatches: {message}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Runs the command; returns what to print.
async fn run(args: &MismatchesArgs, config: Option<&Path>) -> Result<String, Failure> {
    let store = open_store(args.store.as_ref(), config).await?;
    let failed = |e: crate::store::StoreError| {
        Failure::Failed(format!("mismatch store {}: {e}", store.url()))
    };
    let not_found = |id: &str| {
        Failure::Failed(format!(
            "no incident with id {id:?} in {}; `pgshadow mismatches list` shows the ids",
            store.url()
        ))
    };
    match &args.command {
        MismatchesCommand::List(list) => {
            let filter = IncidentFilter {
                status: list.status,
                kind: list.kind,
                fingerprint: list.fingerprint.clone(),
                since_ms: list.since.map(|d| now_ms().saturating_sub(millis(d))),
                limit: list.limit,
            };
            let incidents = store.list_incidents(&filter).await.map_err(failed)?;
            if args.json {
                return json(&incidents);
            }
            if incidents.is_empty() {
                return Ok(format!("no incidents in {}\n", store.url()));
            }
            Ok(render::incident_table(&incidents))
        }
        MismatchesCommand::Show { id } => {
            let detail = store
                .incident(id.trim())
                .await
                .map_err(failed)?
                .ok_or_else(|| not_found(id))?;
            if args.json {
                return json(&detail);
            }
            Ok(render::incident_detail(&detail))
        }
        MismatchesCommand::Ids { id, csv, limit } => {
            let ids = store
                .incident_ids(id.trim(), *limit)
                .await
                .map_err(failed)?
                .ok_or_else(|| not_found(id))?;
            if args.json {
                return json(&ids);
            }
            if *csv {
                return Ok(ids.to_csv());
            }
            Ok(render::id_table(&ids))
        }
        MismatchesCommand::Ack { id, by } => {
            let by = who(by);
            let incident = store
                .ack(id.trim(), by.as_deref())
                .await
                .map_err(failed)?
                .ok_or_else(|| not_found(id))?;
            changed(
                args.json,
                &incident,
                "acknowledged: it keeps counting but raises no more alerts",
            )
        }
        MismatchesCommand::Mute {
            id,
            duration,
            reason,
            by,
        } => {
            let by = who(by);
            let until = duration.map(|d| now_ms().saturating_add(millis(d)));
            let incident = store
                .mute(id.trim(), until, reason, by.as_deref())
                .await
                .map_err(failed)?
                .ok_or_else(|| not_found(id))?;
            let how_long = match duration {
                Some(d) => format!("for {}", format_duration(*d)),
                None => "until `pgshadow mismatches unmute`".into(),
            };
            changed(
                args.json,
                &incident,
                &format!("muted {how_long}: it keeps counting but raises no alerts"),
            )
        }
        MismatchesCommand::Unmute { id, by } => {
            let by = who(by);
            let id = id.trim();
            let current = store
                .incident(id)
                .await
                .map_err(failed)?
                .ok_or_else(|| not_found(id))?
                .incident;
            let incident = match current.status {
                IncidentStatus::Open => current,
                // Ending the mute *now* rather than deleting it: the running
                // proxy's store writer notices within a second, logs
                // "incident mute ended" and raises the alert, exactly as
                // for a mute that runs out by itself.
                IncidentStatus::Muted => store
                    .mute(
                        id,
                        Some(now_ms()),
                        current.mute_reason.as_deref().unwrap_or("unmuted"),
                        by.as_deref(),
                    )
                    .await
                    .map_err(failed)?
                    .ok_or_else(|| not_found(id))?,
                IncidentStatus::Acknowledged | IncidentStatus::Resolved => store
                    .unmute(id, by.as_deref())
                    .await
                    .map_err(failed)?
                    .ok_or_else(|| not_found(id))?,
            };
            changed(args.json, &incident, "open")
        }
        MismatchesCommand::Coverage { fingerprint, limit } => {
            let coverage = store
                .list_coverage(fingerprint.as_deref(), *limit)
                .await
                .map_err(failed)?;
            if args.json {
                return json(&coverage);
            }
            if coverage.is_empty() {
                return Ok(format!("no coverage recorded in {}\n", store.url()));
            }
            Ok(render::coverage_table(&coverage))
        }
    }
}

/// Opens the store named by `--store`, else by `--config`'s `[store]`.
async fn open_store(url: Option<&StoreUrl>, config: Option<&Path>) -> Result<Store, Failure> {
    let store_config = match (url, config) {
        (Some(url), _) => StoreConfig {
            url: url.clone(),
            ..StoreConfig::default()
        },
        (None, Some(path)) => store_section(path)?,
        (None, None) => {
            return Err(Failure::Usage(
                "no mismatch store given: pass --store URL (sqlite://FILE or \
                 postgres://user@host:port/db) or --config FILE (the proxy's config; its \
                 [store] section is used)"
                    .into(),
            ))
        }
    };
    let url = &store_config.url;
    // Opening creates a missing SQLite file; for a reader that would only
    // hide a wrong path behind an empty list.
    if let StoreUrl::Sqlite(path) = url {
        if !path.exists() {
            let shown = std::env::current_dir()
                .map(|d| d.join(path))
                .unwrap_or_else(|_| path.to_path_buf());
            return Err(Failure::Failed(format!(
                "no mismatch store at {} ({url}): sqlite:// paths are relative to the working \
                 directory of the proxy that writes them; run this from there, or pass \
                 --store sqlite:///absolute/path",
                shown.display()
            )));
        }
    }
    Store::from_config(&store_config).await.map_err(|e| {
        Failure::Failed(format!(
            "{e}\n(check --store or the [store] section of the config file, and that the \
             store is reachable from here)"
        ))
    })
}

/// The `[store]` section of a config file. A file that is valid TOML with
/// the right types but fails a check outside `[store]` (typically
/// `shadow.password_env` naming a variable only the proxy's environment
/// sets) still yields its store: that is all the CLI needs.
fn store_section(path: &Path) -> Result<StoreConfig, Failure> {
    match Config::load(path) {
        Ok(config) => Ok(config.store),
        Err(ConfigError::Invalid { key, .. }) if !key.starts_with("store.") => {
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::Usage(format!("cannot read config file {origin}: {e}")))?;
            let table: toml::Table = text
                .parse()
                .map_err(|e| Failure::Usage(format!("{origin}: {e}")))?;
            let mut only_store = toml::Table::new();
            if let Some(store) = table.get("store") {
                only_store.insert("store".into(), store.clone());
            }
            let text = toml::to_string(&only_store)
                .map_err(|e| Failure::Usage(format!("{origin}: {e}")))?;
            Config::parse(&text, &origin)
                .map(|c| c.store)
                .map_err(|e| Failure::Usage(e.to_string()))
        }
        Err(e) => Err(Failure::Usage(e.to_string())),
    }
}

/// The result of ack/mute/unmute: the incident as it now is.
fn changed(as_json: bool, incident: &Incident, what: &str) -> Result<String, Failure> {
    if as_json {
        return json(incident);
    }
    Ok(format!(
        "incident {} {what}\n  status        {}\n  last seen     {} (count {})\n",
        incident.id,
        render::status(incident),
        format_utc(incident.last_seen_ms),
        incident.count
    ))
}

fn json(value: &impl Serialize) -> Result<String, Failure> {
    serde_json::to_string_pretty(value)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| Failure::Failed(format!("cannot render JSON: {e}")))
}

/// `--by`, else the login name.
fn who(by: &Option<String>) -> Option<String> {
    by.clone()
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|s| !s.trim().is_empty())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
