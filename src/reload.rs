//! SIGHUP: re-read the config file and apply what can change at run time.
//!
//! On-call needs to turn the shadow down (or off) in the middle of an
//! incident without dropping every client connection, so a few sampling
//! keys are *hot*: `shadow.enabled` (the kill switch), `shadow.sample_rate`,
//! `shadow.fingerprint_sample_rates`, `shadow.max_samples_per_second` and
//! `shadow.muted_fingerprints`. They are handed to the running
//! [`Sampler`](crate::shadow::sampler::Sampler), whose controls are atomics
//! and `arc-swap`s, so a reload never pauses the relay.
//!
//! Everything else (addresses, the upstream, pools, rewrite rules, the
//! store, logging) is fixed at startup: a changed key is named in one
//! warning, "… changed; restart to apply", and otherwise ignored.
//!
//! TLS certificates (`listen.tls_cert`, `admin.tls_cert` and their keys)
//! are re-read from their files on every SIGHUP, so a renewed certificate
//! is served from the next handshake on; a pair that cannot be used keeps
//! the running one and counts as a failed reload.
//!
//! Invariants:
//! - A file that cannot be read, parsed or validated changes nothing: the
//!   running config stays, and the error (naming the key) is logged at
//!   error level.
//! - Only keys whose value *in the file* changed since the last applied
//!   file are applied. A run-time change made elsewhere (the admin API) thus
//!   survives a reload that leaves that key alone, and mutes are applied as
//!   a difference, never by replacing the whole muted set.
//! - A proxy started with the shadow off has no shadow to switch on: that
//!   (and any other shadow key) needs a restart.

use crate::capture::fingerprint::Fingerprint;
use crate::config::{Config, ConfigError, ShadowConfig};
use crate::observability::metrics::CONFIG_RELOADS_TOTAL;
use crate::shadow::sampler::Sampler;
use crate::shadow::Shadow;
use crate::tls::ServerTls;
use metrics::Counter;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// What one successful reload did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reloaded {
    /// Hot keys that changed and now apply, each with a short
    /// description of the change (`shadow.sample_rate 0 -> 1`).
    pub applied: Vec<String>,
    /// Keys that changed but only take effect after a restart.
    pub restart_needed: Vec<&'static str>,
}

/// Re-reads one config file and applies its hot keys to the running
/// shadow.
pub struct Reloader {
    path: PathBuf,
    /// The config in effect: the startup config, with the hot keys of each
    /// successful reload applied. The next reload is compared with it.
    running: Config,
    shadow: Option<Arc<Shadow>>,
    /// Certificates re-read on every reload.
    certificates: Vec<Arc<ServerTls>>,
    reloads_ok: Counter,
    reloads_failed: Counter,
}

impl Reloader {
    /// A reloader for the proxy started from `path` with `running`, whose
    /// shadow (if the shadow is enabled) is `shadow`. Registers both
    /// reload counters at 0, so alert rules see the series before the
    /// first reload.
    pub fn new(path: PathBuf, running: Config, shadow: Option<Arc<Shadow>>) -> Self {
        Self {
            path,
            running,
            shadow,
            certificates: Vec::new(),
            reloads_ok: metrics::counter!(CONFIG_RELOADS_TOTAL, "result" => "ok"),
            reloads_failed: metrics::counter!(CONFIG_RELOADS_TOTAL, "result" => "error"),
        }
    }

    /// Also re-reads these certificates on every reload.
    pub fn with_certificates(mut self, certificates: Vec<Arc<ServerTls>>) -> Self {
        self.certificates = certificates;
        self
    }

    /// Re-reads every certificate; the first failure, if any.
    fn reload_certificates(&self) -> Result<usize, crate::tls::TlsError> {
        for tls in &self.certificates {
            tls.reload()?;
        }
        Ok(self.certificates.len())
    }

    /// The config now in effect.
    pub fn running(&self) -> &Config {
        &self.running
    }

    /// Reads and validates the file, then applies its hot keys. On error
    /// nothing changes.
    pub fn reload(&mut self) -> Result<Reloaded, ConfigError> {
        let new = Config::load(&self.path)?;
        let mut restart_needed = restart_only_changes(&self.running, &new);
        let applied = match &self.shadow {
            Some(shadow) => {
                let applied = apply_hot_keys(shadow.sampler(), &self.running.shadow, &new.shadow);
                copy_hot_keys(&new.shadow, &mut self.running.shadow);
                applied
            }
            None => {
                // Nothing runs that could take the new values.
                restart_needed.extend(hot_keys_changed(&self.running.shadow, &new.shadow));
                Vec::new()
            }
        };
        Ok(Reloaded {
            applied,
            restart_needed,
        })
    }

    /// [`Reloader::reload`], logged and counted: one info line listing what
    /// changed (and one warning for what needs a restart), or one error
    /// line saying why the file was refused.
    pub fn reload_and_report(&mut self) {
        let path = self.path.display().to_string();
        match self.reload_certificates() {
            Ok(0) => {}
            Ok(n) => tracing::info!(certificates = n, "TLS certificates re-read"),
            Err(e) => {
                self.reloads_failed.increment(1);
                tracing::error!(error = %e, "TLS certificate reload failed; keeping the running certificate");
                return;
            }
        }
        match self.reload() {
            Ok(reloaded) => {
                self.reloads_ok.increment(1);
                if !reloaded.restart_needed.is_empty() {
                    let keys = reloaded.restart_needed.join(", ");
                    if self.shadow.is_none() && reloaded.restart_needed.contains(&"shadow.enabled")
                    {
                        tracing::warn!(
                            %path,
                            %keys,
                            "{keys} changed; restart to apply (the proxy was started with the \
                             shadow off, so it cannot be switched on at run time)"
                        );
                    } else {
                        tracing::warn!(%path, %keys, "{keys} changed; restart to apply");
                    }
                }
                let changed = if reloaded.applied.is_empty() {
                    "nothing".to_string()
                } else {
                    reloaded.applied.join("; ")
                };
                tracing::info!(%path, %changed, "config reloaded");
            }
            Err(e) => {
                self.reloads_failed.increment(1);
                // TOML errors span several lines (a caret under the
                // column); a log line must not.
                let error = e
                    .to_string()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                tracing::error!(%path, %error, "config reload failed; keeping the running config");
            }
        }
    }
}

/// Installs the SIGHUP handler *now*, so that from this call on a SIGHUP
/// reloads the config instead of terminating the process (its default),
/// and spawns the task that reloads on each one. Needs a Tokio runtime.
pub fn reload_on_sighup(mut reloader: Reloader) -> std::io::Result<JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::debug!(signal = "SIGHUP", "reloading the config file");
            // A config file is small: reading it on a runtime thread
            // costs less than handing it to the blocking pool.
            reloader.reload_and_report();
        }
    }))
}

/// The muted fingerprints of a config, as the sampler holds them.
pub fn muted_fingerprints(shadow: &ShadowConfig) -> HashSet<Fingerprint> {
    shadow.muted_fingerprints.iter().copied().collect()
}

/// The per-fingerprint sample rates of a config, as the sampler holds them.
fn fingerprint_rates(shadow: &ShadowConfig) -> HashMap<Fingerprint, f64> {
    shadow
        .fingerprint_sample_rates
        .iter()
        .map(|(fingerprint, rate)| (*fingerprint, *rate))
        .collect()
}

/// Applies every hot key whose value differs between `old` and `new` to
/// `sampler`; returns a description of each change.
fn apply_hot_keys(sampler: &Sampler, old: &ShadowConfig, new: &ShadowConfig) -> Vec<String> {
    let mut applied = Vec::new();
    if old.enabled != new.enabled {
        sampler.set_enabled(new.enabled);
        applied.push(format!("shadow.enabled {} -> {}", old.enabled, new.enabled));
    }
    if old.sample_rate != new.sample_rate {
        sampler.set_rate(new.sample_rate);
        applied.push(format!(
            "shadow.sample_rate {} -> {}",
            old.sample_rate, new.sample_rate
        ));
    }
    if old.fingerprint_sample_rates != new.fingerprint_sample_rates {
        sampler.set_overrides(fingerprint_rates(new));
        applied.push(format!(
            "shadow.fingerprint_sample_rates ({} fingerprints)",
            new.fingerprint_sample_rates.len()
        ));
    }
    if old.max_samples_per_second != new.max_samples_per_second {
        sampler.set_max_samples_per_second(new.max_samples_per_second);
        applied.push(format!(
            "shadow.max_samples_per_second {} -> {}",
            old.max_samples_per_second, new.max_samples_per_second
        ));
    }
    if old.muted_fingerprints != new.muted_fingerprints {
        let (before, after) = (muted_fingerprints(old), muted_fingerprints(new));
        let unmute: HashSet<Fingerprint> = before.difference(&after).copied().collect();
        let mute: HashSet<Fingerprint> = after.difference(&before).copied().collect();
        sampler.update_muted(&unmute, &mute);
        applied.push(format!(
            "shadow.muted_fingerprints (+{} muted, -{} unmuted)",
            mute.len(),
            unmute.len()
        ));
    }
    applied
}

/// The hot keys whose value differs.
fn hot_keys_changed(old: &ShadowConfig, new: &ShadowConfig) -> Vec<&'static str> {
    let mut changed = Vec::new();
    for (key, differs) in [
        ("shadow.enabled", old.enabled != new.enabled),
        ("shadow.sample_rate", old.sample_rate != new.sample_rate),
        (
            "shadow.fingerprint_sample_rates",
            old.fingerprint_sample_rates != new.fingerprint_sample_rates,
        ),
        (
            "shadow.max_samples_per_second",
            old.max_samples_per_second != new.max_samples_per_second,
        ),
        (
            "shadow.muted_fingerprints",
            old.muted_fingerprints != new.muted_fingerprints,
        ),
    ] {
        if differs {
            changed.push(key);
        }
    }
    changed
}

/// Copies the hot keys of `from` into `to`.
fn copy_hot_keys(from: &ShadowConfig, to: &mut ShadowConfig) {
    to.enabled = from.enabled;
    to.sample_rate = from.sample_rate;
    to.fingerprint_sample_rates = from.fingerprint_sample_rates.clone();
    to.max_samples_per_second = from.max_samples_per_second;
    to.muted_fingerprints = from.muted_fingerprints.clone();
}

/// Pushes `section.key` for each listed key that differs; if the section
/// differs in a key not listed (one added since), names the section.
macro_rules! diff_section {
    ($out:ident, $name:literal, $old:expr, $new:expr; $($key:ident),+ $(,)?) => {{
        let before = $out.len();
        $(
            if $old.$key != $new.$key {
                $out.push(concat!($name, ".", stringify!($key)));
            }
        )+
        if $out.len() == before && $old != $new {
            $out.push(concat!("[", $name, "]"));
        }
    }};
}

/// Keys that differ between `old` and `new` and only take effect at
/// startup (the hot keys are left out).
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    diff_section!(out, "listen", old.listen, new.listen;
        address, max_message_bytes, max_client_connections, startup_timeout_ms, shutdown_timeout_ms, worker_threads,
        tls_cert, tls_key, tls_mode);
    diff_section!(out, "upstream", old.upstream, new.upstream;
        host, port, connect_timeout_ms, tls, tls_root_cert);
    let mut new_shadow = new.shadow.clone();
    copy_hot_keys(&old.shadow, &mut new_shadow);
    diff_section!(out, "shadow", old.shadow, new_shadow;
        host, port, user, password_env, old_search_path, new_search_path, max_in_flight,
        queue_capacity, statement_timeout_ms, first_executions, deny_functions, table_map,
        max_capture_bytes, max_session_statement_bytes, recheck_mismatches, plan_cache_size, snapshot, tls, tls_root_cert);
    diff_section!(out, "tiebreak", old.tiebreak, new.tiebreak;
        enabled, default_column, columns, apply_to_primary);
    diff_section!(out, "compare", old.compare, new.compare;
        ignore_columns, max_rows, float_tolerance, numeric_scale, strict_types, max_reported);
    diff_section!(out, "store", old.store, new.store; url, values, op_timeout_ms, max_pending_outcomes);
    diff_section!(out, "admin", old.admin, new.admin;
        address, token, token_env, allowed_hosts, tls_cert, tls_key);
    diff_section!(out, "log", old.log, new.log; level, format, values);
    if out.is_empty() {
        // A section added to `Config` since this list was written.
        let mut masked = new.clone();
        copy_hot_keys(&old.shadow, &mut masked.shadow);
        if masked != *old {
            out.push("other keys");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> Config {
        Config::parse(toml, "test").unwrap()
    }

    fn sampler() -> Sampler {
        Sampler::new(true, 0.0, HashMap::new(), 0, 0)
    }

    #[test]
    fn changed_hot_keys_reach_the_sampler_and_are_described() {
        let s = sampler();
        let old = config("[shadow]\nenabled = true\nsample_rate = 0.0");
        let new = config(
            "[shadow]\nenabled = true\nsample_rate = 1.0\nmax_samples_per_second = 7\n\
             muted_fingerprints = [\"00000000000000aa\"]\n\
             fingerprint_sample_rates = { \"00000000000000bb\" = 0.0 }",
        );
        let applied = apply_hot_keys(&s, &old.shadow, &new.shadow);
        assert_eq!(
            applied,
            [
                "shadow.sample_rate 0 -> 1",
                "shadow.fingerprint_sample_rates (1 fingerprints)",
                "shadow.max_samples_per_second 0 -> 7",
                "shadow.muted_fingerprints (+1 muted, -0 unmuted)",
            ]
        );
        assert_eq!(s.rate(), 1.0);
        assert_eq!(s.max_samples_per_second(), 7);
        assert_eq!(
            s.decide(Fingerprint(0xaa), 0, &mut rand::rng()),
            Err(crate::capture::skip::SkipReason::Muted)
        );
        assert_eq!(
            s.decide(Fingerprint(0xbb), 0, &mut rand::rng()),
            Err(crate::capture::skip::SkipReason::NotSampled)
        );
        assert_eq!(s.decide(Fingerprint(0xcc), 0, &mut rand::rng()), Ok(()));
    }

    #[test]
    fn the_kill_switch_turns_sampling_off_and_on_again() {
        let s = sampler();
        s.set_rate(1.0);
        let on = config("[shadow]\nenabled = true\nsample_rate = 1.0");
        let off = config("[shadow]\nenabled = false\nsample_rate = 1.0");
        apply_hot_keys(&s, &on.shadow, &off.shadow);
        assert_eq!(
            s.decide(Fingerprint(1), 0, &mut rand::rng()),
            Err(crate::capture::skip::SkipReason::Disabled)
        );
        apply_hot_keys(&s, &off.shadow, &on.shadow);
        assert_eq!(s.decide(Fingerprint(1), 0, &mut rand::rng()), Ok(()));
    }

    #[test]
    fn unchanged_keys_leave_run_time_changes_alone() {
        let s = sampler();
        let c = config(
            "[shadow]\nenabled = true\nsample_rate = 0.0\nmuted_fingerprints = [\"0000000000000001\"]",
        );
        // Changed elsewhere (the admin API) after startup.
        s.set_rate(0.5);
        s.set_muted(HashSet::from([Fingerprint(1), Fingerprint(2)]));
        let applied = apply_hot_keys(&s, &c.shadow, &c.clone().shadow);
        assert!(applied.is_empty(), "{applied:?}");
        assert_eq!(s.rate(), 0.5);
        // Unmuting in the file removes only the file's own mute.
        let unmuted = config("[shadow]\nenabled = true\nsample_rate = 0.0");
        apply_hot_keys(&s, &c.shadow, &unmuted.shadow);
        assert_eq!(*s.muted(), HashSet::from([Fingerprint(2)]));
    }

    #[test]
    fn keys_fixed_at_startup_are_named_and_hot_keys_are_not() {
        let old = config("");
        let new = config(
            "[listen]\naddress = \"127.0.0.1:7777\"\n[upstream]\nport = 5433\n\
             [shadow]\nsample_rate = 0.5\nmax_in_flight = 9\n[store]\nurl = \"sqlite://other.db\"\n\
             [admin]\naddress = \"127.0.0.1:9999\"",
        );
        assert_eq!(
            restart_only_changes(&old, &new),
            [
                "listen.address",
                "upstream.port",
                "shadow.max_in_flight",
                "store.url",
                "admin.address"
            ]
        );
        assert!(restart_only_changes(&old, &old.clone()).is_empty());
    }

    #[tokio::test]
    async fn a_broken_file_changes_nothing_and_a_fixed_one_applies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let good = "[shadow]\nenabled = true\nsample_rate = 0.0\n";
        std::fs::write(&path, good).unwrap();
        let running = Config::load(&path).unwrap();
        let shadow = Shadow::start(&running, None, Default::default()).unwrap();
        let mut reloader = Reloader::new(path.clone(), running, Some(shadow.clone()));

        std::fs::write(&path, "[shadow]\nenabled = true\nsample_rate = 1.5\n").unwrap();
        let err = reloader.reload().unwrap_err().to_string();
        assert!(err.contains("shadow.sample_rate"), "{err}");
        std::fs::write(&path, "[shadow\n").unwrap();
        assert!(reloader.reload().is_err());
        assert_eq!(shadow.sampler().rate(), 0.0);
        assert_eq!(reloader.running().shadow.sample_rate, 0.0);

        std::fs::write(
            &path,
            "[shadow]\nenabled = true\nsample_rate = 1.0\n[listen]\nworker_threads = 3\n",
        )
        .unwrap();
        let reloaded = reloader.reload().unwrap();
        assert_eq!(reloaded.applied, ["shadow.sample_rate 0 -> 1"]);
        assert_eq!(reloaded.restart_needed, ["listen.worker_threads"]);
        assert_eq!(shadow.sampler().rate(), 1.0);
        // Still not applied, so still reported on the next reload.
        let again = reloader.reload().unwrap();
        assert!(again.applied.is_empty());
        assert_eq!(again.restart_needed, ["listen.worker_threads"]);
    }

    #[test]
    fn without_a_running_shadow_every_shadow_change_needs_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "").unwrap();
        let mut reloader = Reloader::new(path.clone(), Config::load(&path).unwrap(), None);
        std::fs::write(&path, "[shadow]\nenabled = true\nsample_rate = 0.5\n").unwrap();
        let reloaded = reloader.reload().unwrap();
        assert!(reloaded.applied.is_empty());
        assert_eq!(
            reloaded.restart_needed,
            ["shadow.enabled", "shadow.sample_rate"]
        );
        assert!(!reloader.running().shadow.enabled);
    }
}
