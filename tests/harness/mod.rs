//! Shared by every integration test: throw-away PostgreSQL clusters, the
//! real `pgshadow` binary started against them, and a raw wire client.
//!
//! Each test starts its own cluster (copied from a cached `initdb` under
//! `CARGO_TARGET_TMPDIR`) and its own proxy; both are torn down on drop,
//! also when the test fails.

#![allow(dead_code)]

pub mod certs;
pub mod items;
pub mod wire;

use pgshadow::localpg::{Binaries, Cluster, ClusterOptions};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A role that logs in without a password.
pub const TRUST_USER: &str = "trust_user";
/// A role whose password is stored and checked as MD5.
pub const MD5_USER: &str = "md5_user";
/// Its password.
pub const MD5_PASSWORD: &str = "md5 secret";
/// A role that authenticates with SCRAM-SHA-256.
pub const SCRAM_USER: &str = "scram_user";
/// Its password.
pub const SCRAM_PASSWORD: &str = "scram secret";
/// The database every test uses.
pub const DB: &str = "app";

/// A throw-away cluster with the three test roles and database `app`.
pub struct Pg {
    pub cluster: Cluster,
}

impl Pg {
    /// Starts a cluster with trust, md5 and SCRAM roles.
    pub fn start() -> Pg {
        Self::start_with(&[])
    }

    /// Starts a cluster with extra server settings.
    pub fn start_with(settings: &[(&str, &str)]) -> Pg {
        Self::start_options(settings, "host", None)
    }

    /// Starts a cluster that, like a managed database, accepts only TLS
    /// connections (`ssl = on`, `hostssl` lines only) with `cert`.
    pub fn start_tls_only(cert: &certs::Issued) -> Pg {
        Self::start_options(&[], "hostssl", Some(cert.for_server()))
    }

    fn start_options(
        settings: &[(&str, &str)],
        host: &str,
        tls: Option<pgshadow::localpg::ServerCertificate>,
    ) -> Pg {
        let binaries = Binaries::find().expect("PostgreSQL binaries");
        let options = ClusterOptions {
            hba: vec![
                format!("{host} all {MD5_USER} 127.0.0.1/32 md5"),
                format!("{host} all {SCRAM_USER} 127.0.0.1/32 scram-sha-256"),
                format!("{host} all all 127.0.0.1/32 trust"),
            ],
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            template_cache: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR"))),
            tls,
        };
        let cluster = Cluster::start(&binaries, &options).expect("start PostgreSQL");
        cluster
            .psql(
                "postgres",
                &format!(
                    "SET password_encryption = 'md5';
                     CREATE ROLE {MD5_USER} LOGIN SUPERUSER PASSWORD '{MD5_PASSWORD}';
                     SET password_encryption = 'scram-sha-256';
                     CREATE ROLE {SCRAM_USER} LOGIN SUPERUSER PASSWORD '{SCRAM_PASSWORD}';
                     CREATE ROLE {TRUST_USER} LOGIN SUPERUSER;"
                ),
            )
            .expect("create roles");
        // CREATE DATABASE cannot share a (multi-statement) transaction.
        cluster
            .psql(
                "postgres",
                &format!("CREATE DATABASE {DB} OWNER {TRUST_USER}"),
            )
            .expect("create database");
        Pg { cluster }
    }

    /// Port of the server, for direct connections.
    pub fn port(&self) -> u16 {
        self.cluster.port()
    }

    /// Runs SQL as the superuser in `app` and returns psql's output.
    pub fn sql(&self, sql: &str) -> String {
        self.cluster.psql(DB, sql).expect("psql")
    }

    /// Path of a client program next to the server (`psql`, `pgbench`).
    pub fn program(&self, name: &str) -> PathBuf {
        self.cluster.binaries().program(name)
    }

    /// A tokio-postgres connection string for `user` on `port`.
    pub fn url(port: u16, user: &str, password: Option<&str>) -> String {
        match password {
            Some(p) => format!("host=127.0.0.1 port={port} user={user} password='{p}' dbname={DB}"),
            None => format!("host=127.0.0.1 port={port} user={user} dbname={DB}"),
        }
    }
}

/// A running `pgshadow` process.
pub struct Proxy {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
    logs: Arc<Mutex<Vec<String>>>,
    exited: Option<mpsc::Receiver<()>>,
    /// The config file it runs with (tests rewrite it before a SIGHUP).
    config: tempfile::NamedTempFile,
    /// The mismatch store's directory, unless the test chose a store.
    _store_dir: Option<tempfile::TempDir>,
}

impl Proxy {
    /// Starts pgshadow in front of `upstream_port` with extra TOML appended
    /// to a minimal config (listen on a free port, log at debug).
    pub fn start(upstream_port: u16, extra_toml: &str) -> Proxy {
        Self::start_with_env(upstream_port, extra_toml, &[])
    }

    /// Like [`Proxy::start`], with extra environment variables.
    pub fn start_with_env(upstream_port: u16, extra_toml: &str, env: &[(&str, &str)]) -> Proxy {
        // Each proxy gets its own mismatch store unless the test names one.
        let store_dir =
            (!extra_toml.contains("[store]")).then(|| tempfile::tempdir().expect("store dir"));
        let store = store_dir.as_ref().map_or(String::new(), |d| {
            format!(
                "[store]\nurl = \"sqlite://{}\"\n",
                d.path().join("store.db").display()
            )
        });
        let toml = format!(
            "[listen]\naddress = \"127.0.0.1:0\"\n{listen_extra}\n\
             [upstream]\nhost = \"127.0.0.1\"\nport = {upstream_port}\n{upstream_extra}\n\
             [log]\nlevel = \"debug\"\n{log_extra}\n\
             [admin]\naddress = \"127.0.0.1:0\"\n{admin_extra}\n{store}{rest}",
            listen_extra = section_part(extra_toml, "listen"),
            upstream_extra = section_part(extra_toml, "upstream"),
            log_extra = section_part(extra_toml, "log"),
            admin_extra = section_part(extra_toml, "admin"),
            rest = without_sections(extra_toml, &["listen", "upstream", "log", "admin"]),
        );
        let mut proxy = Self::spawn(&toml, env);
        proxy._store_dir = store_dir;
        proxy
    }

    /// Starts pgshadow with a complete config file.
    pub fn start_with_config(toml: &str) -> Proxy {
        Self::spawn(toml, &[])
    }

    fn spawn(toml: &str, env: &[(&str, &str)]) -> Proxy {
        let config = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("temp config");
        std::fs::write(config.path(), toml).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_pgshadow"))
            .arg("run")
            .arg("--config")
            .arg(config.path())
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pgshadow");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let (exit_tx, exit_rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = listening_port(&line, "listening") {
                    let _ = addr_tx.send((false, port));
                }
                if let Some(port) = listening_port(&line, "admin server listening") {
                    let _ = addr_tx.send((true, port));
                }
                if std::env::var_os("PGSHADOW_TEST_ECHO").is_some() {
                    eprintln!("[pgshadow] {line}");
                }
                sink.lock().unwrap().push(line);
            }
            let _ = exit_tx.send(());
        });
        let (mut port, mut admin_port) = (None, None);
        while port.is_none() || admin_port.is_none() {
            match addr_rx.recv_timeout(Duration::from_secs(30)) {
                Ok((true, p)) => admin_port = Some(p),
                Ok((false, p)) => port = Some(p),
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "pgshadow did not report its addresses; its log:\n{}",
                        logs.lock().unwrap().join("\n")
                    );
                }
            }
        }
        let (port, admin_port) = (port.unwrap_or_default(), admin_port.unwrap_or_default());
        Proxy {
            child,
            port,
            admin_port,
            logs,
            exited: Some(exit_rx),
            config,
            _store_dir: None,
        }
    }

    /// Process id of the proxy.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the proxy logged so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until a log line satisfies `pred`, up to `timeout`.
    pub fn wait_for_log(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        wait_until(timeout, || self.logs().into_iter().find(|l| pred(l)))
            .unwrap_or_else(|| panic!("no matching log line; log:\n{}", self.logs().join("\n")))
    }

    /// Sends a signal to the proxy.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits for the process to exit and returns its exit code. The log
    /// reader sees stderr close when the process exits.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let rx = self.exited.take()?;
        rx.recv_timeout(timeout).ok()?;
        self.child.wait().ok()?.code()
    }

    /// Fetches `/metrics` from the admin server.
    pub fn metrics_text(&self) -> String {
        http_get(self.admin_port, "/metrics")
    }

    /// The value of one metric series, e.g.
    /// `pgshadow_skipped_total{reason="not_read"}`; 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics_text(), series)
    }

    /// All comparisons so far, whatever their result.
    pub fn all_comparisons(&self) -> f64 {
        total_comparisons(&self.metrics_text())
    }

    /// The config file the proxy was started with.
    pub fn config_path(&self) -> &std::path::Path {
        self.config.path()
    }

    /// Resident set size of the proxy right now, and its peak, in KiB.
    pub fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        let get = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .expect("VmRSS/VmHWM")
        };
        (get("VmRSS:"), get("VmHWM:"))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- pgshadow log ---\n{}", self.logs().join("\n"));
        }
    }
}

/// The port in the log line with this message, text or JSON.
fn listening_port(line: &str, message: &str) -> Option<u16> {
    let address = if line.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        if v["fields"]["message"] != message {
            return None;
        }
        v["fields"]["address"].as_str()?.to_string()
    } else {
        let (_, after) = line.split_once(": ")?;
        let (text, _) = after.split_once(" address=")?;
        if text.rsplit(": ").next()? != message {
            return None;
        }
        field(line, "address")?.to_string()
    };
    address.rsplit(':').next()?.parse().ok()
}

/// The value of `key=value` in a text log line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("{key}=");
    let start = line.find(&needle)? + needle.len();
    line[start..].split_whitespace().next()
}

/// The `[section]` body of a small TOML snippet.
fn section_part(toml: &str, section: &str) -> String {
    let header = format!("[{section}]");
    let mut out = String::new();
    let mut inside = false;
    for line in toml.lines() {
        if line.trim_start().starts_with('[') {
            inside = line.trim() == header;
            continue;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A TOML snippet without the given `[section]`s.
fn without_sections(toml: &str, sections: &[&str]) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in toml.lines() {
        if line.trim_start().starts_with('[') {
            inside = sections.iter().any(|s| line.trim() == format!("[{s}]"));
        }
        if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Polls `f` until it returns `Some`, or `timeout` passes. For conditions
/// only observable by asking (server views, process tables).
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command and returns (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A psql command connected to `port` as `user`, with no psqlrc.
pub fn psql(pg: &Pg, port: u16, user: &str) -> Command {
    let mut cmd = Command::new(pg.program("psql"));
    cmd.args([
        "-X",
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        user,
        "-d",
        DB,
    ])
    .env_remove("PGPASSWORD")
    .env_remove("PGCLIENTENCODING")
    .env("PGCONNECT_TIMEOUT", "10");
    cmd
}

/// Connects tokio-postgres to `port` as the trust user.
pub async fn connect(port: u16) -> tokio_postgres::Client {
    connect_as(port, TRUST_USER, None).await.expect("connect")
}

/// Connects tokio-postgres and drives the connection in a task.
pub async fn connect_as(
    port: u16,
    user: &str,
    password: Option<&str>,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) =
        tokio_postgres::connect(&Pg::url(port, user, password), tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A Python 3 interpreter that has psycopg 3 (Debian's python3-psycopg
/// installs into the system interpreter, which may not be first on PATH).
pub fn python_with_psycopg() -> PathBuf {
    for candidate in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(candidate)
            .args(["-c", "import psycopg"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "no python3 with psycopg 3 found: install it (Debian: apt-get install -y python3-psycopg)"
    );
}

/// Runs a command like [`run`], with stdin closed, but kills it and panics
/// if it has not finished within `timeout`: a client stuck on the proxy then
/// fails its test (and the proxy log is printed) instead of stalling the run.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> (bool, String, String) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let (out, timed_out) = match rx.recv_timeout(timeout) {
        Ok(out) => (out, false),
        Err(_) => {
            // SAFETY: kill has no memory-safety preconditions. The pid is
            // still our child's unless it exited in the instant since the
            // timeout, and a pid is not reused that quickly.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            // Its output, unless a grandchild still holds the pipes open.
            let out = rx
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|_| panic!("{cmd:?} did not finish within {timeout:?}"));
            (out, true)
        }
    };
    let out = out.unwrap_or_else(|e| panic!("wait for {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !timed_out,
        "{cmd:?} did not finish within {timeout:?} and was killed\n\
         --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    (out.status.success(), stdout, stderr)
}

/// A plain HTTP/1.1 GET on localhost; returns the body.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to admin");
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    body.to_string()
}

/// The value of a series in Prometheus text; 0 when absent. Label order
/// in `series` must match the exporter's (alphabetical by key).
/// All comparisons in one scrape of `/metrics`, whatever their result.
pub fn total_comparisons(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("pgshadow_comparisons_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}
