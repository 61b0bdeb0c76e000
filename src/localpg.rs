//! Throw-away PostgreSQL clusters from the machine's own binaries.
//!
//! Used by the test suite, the benchmark and `pgshadow demo`. A cluster
//! lives in a fresh temporary directory, listens on a free loopback port,
//! and is stopped and deleted when the [`Cluster`] is dropped, including
//! when a test panics. If the whole process dies, the server gets SIGQUIT
//! from the kernel (parent-death signal), so no postmaster outlives it.
//!
//! PostgreSQL refuses to run as root. When pgshadow runs as root (as CI
//! does), the server runs as the `postgres` system user; otherwise as the
//! current user.

use std::collections::hash_map::DefaultHasher;
use std::ffi::CString;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex, PoisonError};
use std::time::Duration;
use thiserror::Error;

/// How long a cluster may take to start or stop.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// The line the postmaster logs once it accepts connections (lc_messages=C).
const READY_LINE: &str = "database system is ready to accept connections";

/// Why a cluster could not be created or used.
#[derive(Debug, Error)]
pub enum LocalPgError {
    /// No server binaries on this machine.
    #[error(
        "PostgreSQL server binaries (initdb, postgres) were not found on PATH or in \
         /usr/lib/postgresql/*/bin: install them (Debian/Ubuntu: `apt-get install -y postgresql`) \
         or set PGSHADOW_PG_BINDIR to the directory that holds them"
    )]
    BinariesNotFound,
    /// Running as root without a `postgres` user to hand the server to.
    #[error(
        "running as root, but there is no `postgres` system user to run PostgreSQL as \
         (it refuses to run as root): install the postgresql package, which creates it, \
         or run as an ordinary user"
    )]
    NoPostgresUser,
    /// A file-system step failed.
    #[error("{action}: {source}")]
    Io {
        action: String,
        source: std::io::Error,
    },
    /// A helper program failed.
    #[error("{program} failed: {output}")]
    Command { program: String, output: String },
    /// The server did not come up.
    #[error("PostgreSQL did not start: {reason}\n--- server log ---\n{log}")]
    StartFailed { reason: String, log: String },
}

fn io_err(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalPgError {
    let action = action.into();
    move |source| LocalPgError::Io { action, source }
}

/// The directory holding `initdb`, `postgres`, `psql` and `pgbench`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// Finds the server binaries: `$PGSHADOW_PG_BINDIR`, then `initdb` on
    /// `PATH` (symlinks resolved), then the newest `/usr/lib/postgresql/*/bin`.
    pub fn find() -> Result<Binaries, LocalPgError> {
        let has_server =
            |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
        if let Some(dir) = std::env::var_os("PGSHADOW_PG_BINDIR").map(PathBuf::from) {
            return if has_server(&dir) {
                Ok(Binaries { dir })
            } else {
                Err(LocalPgError::BinariesNotFound)
            };
        }
        let on_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|d| fs::canonicalize(d.join("initdb")).ok())
            .filter_map(|initdb| initdb.parent().map(Path::to_path_buf))
            .find(|d| has_server(d));
        if let Some(dir) = on_path {
            return Ok(Binaries { dir });
        }
        let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((version, e.path().join("bin")))
            })
            .filter(|(_, d)| has_server(d))
            .collect();
        versions.sort();
        versions
            .pop()
            .map(|(_, dir)| Binaries { dir })
            .ok_or(LocalPgError::BinariesNotFound)
    }

    /// Path of one program in this directory (`psql`, `pgbench`, ...).
    pub fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `postgres --version`, e.g. "postgres (PostgreSQL) 15.18".
    pub fn version(&self) -> Result<String, LocalPgError> {
        let out = Command::new(self.program("postgres"))
            .arg("--version")
            .output()
            .map_err(io_err("run postgres --version"))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

/// How to set up a cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// `pg_hba.conf` lines; by default every loopback connection is trusted.
    pub hba: Vec<String>,
    /// Extra server settings (`name`, `value`), passed as `-c name=value`.
    pub settings: Vec<(String, String)>,
    /// A directory where an initialised cluster is kept and copied from,
    /// which turns the ~2 s `initdb` into a ~0.1 s copy. Tests pass
    /// `CARGO_TARGET_TMPDIR`. `None` runs `initdb` every time.
    pub template_cache: Option<PathBuf>,
    /// A certificate and key: the server runs with `ssl = on` (pair it with
    /// `hostssl` lines in `hba` to refuse plain connections, as managed
    /// databases do).
    pub tls: Option<ServerCertificate>,
}

/// A server certificate and its key, in PEM.
#[derive(Debug, Clone)]
pub struct ServerCertificate {
    /// The certificate chain, leaf first.
    pub cert_pem: String,
    /// The private key.
    pub key_pem: String,
}

/// The OS user the server runs as.
#[derive(Debug, Clone, Copy)]
struct ServerUser {
    uid: u32,
    gid: u32,
}

impl ServerUser {
    /// `postgres` when we are root, else ourselves (`None`: no switch).
    fn detect() -> Result<Option<ServerUser>, LocalPgError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(None);
        }
        let name = CString::new("postgres").map_err(|_| LocalPgError::NoPostgresUser)?;
        // SAFETY: getpwnam returns NULL or a pointer to a static passwd
        // record that stays valid until the next getpw* call; we copy the
        // two ids out immediately.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if pw.is_null() {
            return Err(LocalPgError::NoPostgresUser);
        }
        // SAFETY: pw is non-null and points to a valid passwd record.
        let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
        Ok(Some(ServerUser { uid, gid }))
    }

    fn chown(self, path: &Path) -> Result<(), LocalPgError> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(io_err(format!("chown {}", path.display())))
    }
}

/// Runs `cmd` as the server user.
fn as_server_user(cmd: &mut Command, user: Option<ServerUser>) -> &mut Command {
    if let Some(u) = user {
        cmd.uid(u.uid).gid(u.gid);
    }
    cmd.env("LC_ALL", "C").env_remove("PGDATA")
}

/// A running throw-away PostgreSQL cluster.
#[derive(Debug)]
pub struct Cluster {
    binaries: Binaries,
    root: Option<tempfile::TempDir>,
    port: u16,
    pid: i32,
    exited: mpsc::Receiver<()>,
    stopped: bool,
}

impl Cluster {
    /// Creates and starts a cluster with a `postgres` superuser.
    pub fn start(binaries: &Binaries, options: &ClusterOptions) -> Result<Cluster, LocalPgError> {
        let user = ServerUser::detect()?;
        let root = tempfile::Builder::new()
            .prefix("pgshadow-pg-")
            .tempdir()
            .map_err(io_err("create a temporary directory"))?;
        if let Some(u) = user {
            u.chown(root.path())?;
        }
        let data = root.path().join("data");
        match &options.template_cache {
            Some(cache) => {
                let template = ensure_template(binaries, cache, user)?;
                copy_tree(&template, &data)?;
            }
            None => initdb(binaries, &data, user)?,
        }
        let hba = if options.hba.is_empty() {
            "host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n".to_string()
        } else {
            options.hba.join("\n") + "\n"
        };
        fs::write(data.join("pg_hba.conf"), hba).map_err(io_err("write pg_hba.conf"))?;
        if let Some(u) = user {
            u.chown(&data.join("pg_hba.conf"))?;
        }
        let mut options = options.clone();
        if let Some(tls) = &options.tls {
            // The server refuses a key others can read.
            for (name, pem, mode) in [
                ("server.crt", &tls.cert_pem, 0o644),
                ("server.key", &tls.key_pem, 0o600),
            ] {
                let path = data.join(name);
                fs::write(&path, pem).map_err(io_err(format!("write {name}")))?;
                fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
                    .map_err(io_err(format!("chmod {name}")))?;
                if let Some(u) = user {
                    u.chown(&path)?;
                }
            }
            options.settings.push(("ssl".into(), "on".into()));
        }
        let options = &options;

        // A free port can be taken by someone else before the server binds
        // it; then the server exits at once and we try another.
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_port()?;
            match launch(binaries, &data, root.path(), port, options, user) {
                Ok((pid, exited)) => {
                    return Ok(Cluster {
                        binaries: binaries.clone(),
                        root: Some(root),
                        port,
                        pid,
                        exited,
                        stopped: false,
                    })
                }
                Err(e @ LocalPgError::StartFailed { .. })
                    if e.to_string().contains("could not bind") =>
                {
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or(LocalPgError::StartFailed {
            reason: "no free port".into(),
            log: String::new(),
        }))
    }

    /// Loopback address the server listens on.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser role.
    pub fn superuser(&self) -> &'static str {
        "postgres"
    }

    /// The binaries the cluster runs from.
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// Process id of the postmaster.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.root_path().join("postgres.log")
    }

    /// The cluster's temporary directory (data directory and log).
    pub fn root_path(&self) -> PathBuf {
        self.root
            .as_ref()
            .map(|r| r.path().to_path_buf())
            .unwrap_or_default()
    }

    /// A libpq connection string for `user` on `database`.
    pub fn conninfo(&self, user: &str, database: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            self.host(),
            self.port,
            user,
            database
        )
    }

    /// Runs SQL as the superuser with `psql` (stopping at the first error)
    /// and returns its unaligned, tuples-only output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, LocalPgError> {
        let out = Command::new(self.binaries.program("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg("-d")
            .arg(self.conninfo(self.superuser(), database))
            .arg("-c")
            .arg(sql)
            .env_remove("PGPASSWORD")
            .output()
            .map_err(io_err("run psql"))?;
        if !out.status.success() {
            return Err(LocalPgError::Command {
                program: "psql".into(),
                output: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }

    /// Stops the server (fast shutdown) and deletes its directory.
    pub fn stop(mut self) -> Result<(), LocalPgError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), LocalPgError> {
        if !self.stopped {
            self.stopped = true;
            // Fast shutdown: abort sessions, checkpoint, exit.
            signal(self.pid, libc::SIGINT);
            if self.exited.recv_timeout(STOP_TIMEOUT).is_err() {
                signal(self.pid, libc::SIGQUIT);
                let _ = self.exited.recv_timeout(STOP_TIMEOUT);
            }
        }
        match self.root.take() {
            Some(root) => {
                let path = root.path().display().to_string();
                root.close().map_err(io_err(format!("remove {path}")))
            }
            None => Ok(()),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("pgshadow localpg: {e}");
        }
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions; pid is our child.
    unsafe {
        libc::kill(pid, sig);
    }
}

fn free_port() -> Result<u16, LocalPgError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io_err("find a free port"))?;
    Ok(l.local_addr().map_err(io_err("find a free port"))?.port())
}

fn initdb(binaries: &Binaries, data: &Path, user: Option<ServerUser>) -> Result<(), LocalPgError> {
    let mut cmd = Command::new(binaries.program("initdb"));
    cmd.arg("-D")
        .arg(data)
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ])
        .current_dir(data.parent().unwrap_or(Path::new("/")));
    let out = as_server_user(&mut cmd, user)
        .output()
        .map_err(io_err("run initdb"))?;
    if !out.status.success() {
        return Err(LocalPgError::Command {
            program: "initdb".into(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// Returns an initialised data directory in `cache`, creating it once.
/// Concurrent callers (parallel tests, several test binaries) each may
/// build one; the first atomic rename wins and the others discard theirs.
fn ensure_template(
    binaries: &Binaries,
    cache: &Path,
    user: Option<ServerUser>,
) -> Result<PathBuf, LocalPgError> {
    let mut h = DefaultHasher::new();
    binaries.version()?.hash(&mut h);
    binaries.dir().hash(&mut h);
    user.map(|u| (u.uid, u.gid)).hash(&mut h);
    let template = cache.join(format!("pg-template-{:016x}", h.finish()));
    // One initdb per process at a time; other processes are handled by
    // the atomic rename below.
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(PoisonError::into_inner);
    if template.join("PG_VERSION").is_file() {
        return Ok(template);
    }
    fs::create_dir_all(cache).map_err(io_err(format!("create {}", cache.display())))?;
    let staging = tempfile::Builder::new()
        .prefix("pgshadow-initdb-")
        .tempdir()
        .map_err(io_err("create a temporary directory"))?;
    if let Some(u) = user {
        u.chown(staging.path())?;
    }
    let fresh = staging.path().join("data");
    initdb(binaries, &fresh, user)?;
    let partial = tempfile::Builder::new()
        .prefix("pg-template-partial-")
        .tempdir_in(cache)
        .map_err(io_err(format!("create a directory in {}", cache.display())))?;
    let copied = partial.path().join("data");
    copy_tree(&fresh, &copied)?;
    // If another process won the race, its template is as good as ours,
    // and ours is deleted with `partial`.
    let _ = fs::rename(&copied, &template);
    Ok(template)
}

/// Copies a directory tree preserving owners and modes (`cp -a`).
fn copy_tree(from: &Path, to: &Path) -> Result<(), LocalPgError> {
    let out = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .map_err(io_err("run cp"))?;
    if !out.status.success() {
        return Err(LocalPgError::Command {
            program: "cp -a".into(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// Starts the postmaster from a guardian thread and waits until it is
/// ready. The guardian owns the child: it spawns it (so the parent-death
/// signal is tied to a thread that lives exactly as long as the server),
/// copies its stderr into `postgres.log`, and reports its exit.
fn launch(
    binaries: &Binaries,
    data: &Path,
    root: &Path,
    port: u16,
    options: &ClusterOptions,
    user: Option<ServerUser>,
) -> Result<(i32, mpsc::Receiver<()>), LocalPgError> {
    let mut cmd = Command::new(binaries.program("postgres"));
    cmd.arg("-D").arg(data).arg("-p").arg(port.to_string());
    let defaults = [
        ("listen_addresses", "127.0.0.1"),
        ("unix_socket_directories", ""),
        ("fsync", "off"),
        ("synchronous_commit", "off"),
        ("full_page_writes", "off"),
        ("lc_messages", "C"),
        ("max_connections", "300"),
    ];
    for (k, v) in defaults.iter().map(|(k, v)| (*k, *v)).chain(
        options
            .settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    ) {
        cmd.arg("-c").arg(format!("{k}={v}"));
    }
    cmd.current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // A process group of its own: Ctrl-C in the terminal (SIGINT to the
    // foreground group) reaches pgshadow, which then stops the cluster in
    // order, instead of reaching the postmaster too and cutting the demo's
    // last queries short. The parent-death signal below still stops the
    // cluster if pgshadow dies without cleaning up.
    cmd.process_group(0);
    as_server_user(&mut cmd, user);
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no
    // memory of the parent. It runs after the uid switch, which would
    // otherwise clear it.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let log_path = root.join("postgres.log");
    let (ready_tx, ready_rx) = mpsc::channel::<Result<i32, String>>();
    let (exit_tx, exit_rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name(format!("postgres-{port}"))
        .spawn(move || guard_postmaster(cmd, log_path, ready_tx, exit_tx))
        .map_err(io_err("spawn the postgres guardian thread"))?;
    let log_tail = || fs::read_to_string(root.join("postgres.log")).unwrap_or_default();
    match ready_rx.recv_timeout(START_TIMEOUT) {
        Ok(Ok(pid)) => Ok((pid, exit_rx)),
        Ok(Err(reason)) => Err(LocalPgError::StartFailed {
            reason,
            log: log_tail(),
        }),
        Err(_) => Err(LocalPgError::StartFailed {
            reason: format!("not ready after {START_TIMEOUT:?}"),
            log: log_tail(),
        }),
    }
}

fn guard_postmaster(
    mut cmd: Command,
    log_path: PathBuf,
    ready: mpsc::Sender<Result<i32, String>>,
    exited: mpsc::Sender<()>,
) {
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot run postgres: {e}")));
            return;
        }
    };
    let pid = child.id() as i32;
    let mut log = fs::File::create(&log_path).ok();
    let mut announced = false;
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(f) = log.as_mut() {
                let _ = writeln!(f, "{line}");
            }
            if !announced && line.contains(READY_LINE) {
                announced = true;
                let _ = ready.send(Ok(pid));
            }
        }
    }
    let status = child.wait();
    if !announced {
        let _ = ready.send(Err(format!("postgres exited early ({status:?})")));
    }
    let _ = exited.send(());
}
