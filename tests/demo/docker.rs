//! `docker/`: the compose stack's files agree with each other (acceptance
//! 3), and its init scripts and config work against a real PostgreSQL.
//!
//! Docker cannot run here, so the checks read the files: the config that
//! `docker-compose.yml` mounts into the pgshadow service passes
//! `pgshadow check-config`; the ports it listens on are published; its
//! upstream is the postgres service; every mounted host path exists; the
//! Prometheus scrape target, rule files and Grafana provisioning point at
//! what compose provides. Then the init scripts build the example schemas
//! in a throw-away cluster and the mounted config, with only its addresses
//! changed, compares reads through the real binary.

use crate::harness::{self, http_get, metric_value, wait_until, Pg};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use yaml_rust2::{Yaml, YamlLoader};

/// `docker/`, where compose resolves relative paths.
fn docker_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docker")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn yaml(path: &Path) -> Yaml {
    let text = read(path);
    assert!(
        !text.contains('\t'),
        "{}: tabs are not YAML indentation",
        path.display()
    );
    let mut docs = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    assert_eq!(docs.len(), 1, "{}: one document", path.display());
    docs.remove(0)
}

/// The compose file.
struct Compose {
    doc: Yaml,
}

/// One bind mount or volume of a service, short syntax `source:target[:mode]`.
#[derive(Debug)]
struct Mount {
    source: String,
    target: String,
}

impl Mount {
    /// A bind mount of a file or directory next to the compose file.
    fn is_bind(&self) -> bool {
        self.source.starts_with('.') || self.source.starts_with('/')
    }

    /// Where a bind mount's source is in the repository.
    fn host_path(&self) -> PathBuf {
        docker_dir().join(&self.source)
    }
}

impl Compose {
    fn load() -> Compose {
        Compose {
            doc: yaml(&docker_dir().join("docker-compose.yml")),
        }
    }

    fn service(&self, name: &str) -> &Yaml {
        let service = &self.doc["services"][name];
        assert!(
            service.as_hash().is_some(),
            "docker-compose.yml has no service {name:?}"
        );
        service
    }

    fn service_names(&self) -> Vec<String> {
        self.doc["services"]
            .as_hash()
            .expect("services")
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect()
    }

    fn mounts(&self, service: &str) -> Vec<Mount> {
        self.service(service)["volumes"]
            .as_vec()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|v| {
                let text = v.as_str().expect("short volume syntax");
                let mut parts = text.split(':');
                Mount {
                    source: parts.next().unwrap().to_owned(),
                    target: parts.next().expect("a target path").to_owned(),
                }
            })
            .collect()
    }

    /// The bind mount whose container path is `target`.
    fn mounted_at(&self, service: &str, target: &str) -> Mount {
        self.mounts(service)
            .into_iter()
            .find(|m| m.target == target)
            .unwrap_or_else(|| panic!("service {service} mounts nothing at {target}"))
    }

    /// Container ports a service publishes.
    fn published_ports(&self, service: &str) -> Vec<u16> {
        self.service(service)["ports"]
            .as_vec()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|p| {
                let text = p
                    .as_str()
                    .expect("quoted short port syntax, e.g. \"6432:6432\"");
                let container = text.rsplit(':').next().unwrap().trim_end_matches("/tcp");
                container.parse().expect("a container port")
            })
            .collect()
    }

    /// A service's environment, with `${NAME:-default}` resolved to its
    /// default (what compose does when the variable is not set).
    fn environment(&self, service: &str) -> BTreeMap<String, String> {
        self.service(service)["environment"]
            .as_hash()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| {
                        let value = match v {
                            Yaml::String(s) => s.clone(),
                            Yaml::Integer(i) => i.to_string(),
                            Yaml::Boolean(b) => b.to_string(),
                            other => panic!("unexpected environment value {other:?}"),
                        };
                        (k.as_str().unwrap().to_owned(), with_defaults(&value))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The pgshadow service's config file: `--config PATH` in its command.
    fn pgshadow_config_target(&self) -> String {
        let command: Vec<&str> = self.service("pgshadow")["command"]
            .as_vec()
            .expect("the pgshadow service's command, as a list")
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let at = command
            .iter()
            .position(|c| *c == "--config")
            .expect("pgshadow's command passes --config");
        command[at + 1].to_owned()
    }
}

/// `${NAME:-default}` → `default`, as compose resolves an unset variable.
fn with_defaults(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closing }") + start;
        let inner = &rest[start + 2..end];
        let (_, default) = inner
            .split_once(":-")
            .unwrap_or_else(|| panic!("${{{inner}}} has no default: compose would leave it empty"));
        out.push_str(default);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The config the pgshadow service runs with, read without validation:
/// validating needs the service's environment (`shadow.password_env` must
/// be set), which [`the_mounted_config_passes_check_config`] provides.
fn mounted_config(compose: &Compose) -> (PathBuf, pgshadow::config::Config) {
    let target = compose.pgshadow_config_target();
    let mount = compose.mounted_at("pgshadow", &target);
    assert!(mount.is_bind(), "{target} should come from the repository");
    let path = mount.host_path();
    let config = toml::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, config)
}

#[test]
fn the_stack_is_postgres_pgshadow_prometheus_and_grafana() {
    let compose = Compose::load();
    let mut names = compose.service_names();
    names.sort();
    assert_eq!(names, ["grafana", "pgshadow", "postgres", "prometheus"]);
    let build = &compose.service("pgshadow")["build"];
    let context = docker_dir().join(build["context"].as_str().expect("build context"));
    let dockerfile = context.join(build["dockerfile"].as_str().expect("dockerfile"));
    assert_eq!(
        dockerfile.canonicalize().unwrap(),
        docker_dir().join("Dockerfile").canonicalize().unwrap()
    );
    // Named volumes are declared.
    let declared = compose.doc["volumes"].as_hash().expect("top-level volumes");
    for service in compose.service_names() {
        for mount in compose.mounts(&service).iter().filter(|m| !m.is_bind()) {
            assert!(
                declared.contains_key(&Yaml::String(mount.source.clone())),
                "volume {} of {service} is not declared",
                mount.source
            );
        }
    }
}

#[test]
fn the_mounted_config_passes_check_config() {
    let compose = Compose::load();
    let (path, _) = mounted_config(&compose);
    assert_eq!(path, docker_dir().join("./pgshadow.toml"));
    let out = Command::new(env!("CARGO_BIN_EXE_pgshadow"))
        .arg("check-config")
        .arg(&path)
        .env_clear()
        .envs(compose.environment("pgshadow"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("OK"), "{stdout}");
    assert!(stdout.contains("upstream  postgres:5432"), "{stdout}");
}

#[test]
fn ports_upstream_and_secrets_agree_with_the_config() {
    let compose = Compose::load();
    let (_, config) = mounted_config(&compose);

    // What pgshadow listens on is reachable from outside its container.
    let published = compose.published_ports("pgshadow");
    for (key, address) in [
        ("listen.address", config.listen.address),
        ("admin.address", config.admin.address),
    ] {
        assert!(
            address.ip().is_unspecified(),
            "{key} {address} is unreachable from outside the container"
        );
        assert!(
            published.contains(&address.port()),
            "{key} port {} is not published (ports: {published:?})",
            address.port()
        );
    }

    // The upstream is the postgres service, on the image's port.
    assert_eq!(config.upstream.host, "postgres");
    assert_eq!(config.upstream.port, 5432);
    let postgres_env = compose.environment("postgres");
    assert!(!postgres_env.contains_key("PGPORT"));

    // The shadow logs in with the password the init script gave its role.
    assert!(config.shadow.enabled);
    let var = config
        .shadow
        .password_env
        .clone()
        .expect("shadow.password_env");
    let pgshadow_env = compose.environment("pgshadow");
    let password = pgshadow_env
        .get(&var)
        .unwrap_or_else(|| panic!("{var} is not set for pgshadow"));
    assert_eq!(postgres_env.get(&var), Some(password));
    let init = read(&docker_dir().join("postgres/initdb/02-shadow-role.sh"));
    assert!(init.contains(&format!(
        "CREATE ROLE {} LOGIN PASSWORD",
        config.shadow.user
    )));
    assert!(init.contains(&format!("${var}")));

    // The SQLite store lives on a volume, so incidents survive a restart.
    let store = config.store.url.to_string();
    let store = store.strip_prefix("sqlite://").expect("an SQLite store");
    let mounts = compose.mounts("pgshadow");
    assert!(
        mounts
            .iter()
            .any(|m| !m.is_bind() && Path::new(store).starts_with(&m.target)),
        "the store {store} is not on a volume: {mounts:?}"
    );

    // The image's defaults agree too.
    let dockerfile = read(&docker_dir().join("Dockerfile"));
    let expose = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE");
    for port in [config.listen.address.port(), config.admin.address.port()] {
        assert!(expose.split_whitespace().any(|p| p == port.to_string()));
    }
}

#[test]
fn prometheus_and_grafana_find_what_compose_provides() {
    let compose = Compose::load();
    let (_, config) = mounted_config(&compose);

    let prometheus_yml = compose.mounted_at("prometheus", "/etc/prometheus/prometheus.yml");
    let prometheus = yaml(&prometheus_yml.host_path());
    let jobs = prometheus["scrape_configs"]
        .as_vec()
        .expect("scrape_configs");
    let job = jobs
        .iter()
        .find(|j| j["job_name"].as_str() == Some("pgshadow"))
        .expect("a scrape job named pgshadow (the alerts watch up{job=\"pgshadow\"})");
    let targets: Vec<&str> = job["static_configs"][0]["targets"]
        .as_vec()
        .expect("targets")
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        [format!("pgshadow:{}", config.admin.address.port())]
    );
    // Rule files resolve next to prometheus.yml in the container, and
    // compose mounts each of them there from a file that exists.
    let rule_files = prometheus["rule_files"].as_vec().expect("rule_files");
    assert!(!rule_files.is_empty());
    for rule_file in rule_files {
        let name = rule_file.as_str().unwrap();
        let mount = compose.mounted_at("prometheus", &format!("/etc/prometheus/{name}"));
        assert!(mount.host_path().is_file(), "{mount:?}");
    }

    // Grafana's data source is this Prometheus, and its dashboard provider
    // reads the directory compose mounts the dashboards into.
    let provisioning = compose.mounted_at("grafana", "/etc/grafana/provisioning");
    let datasources = yaml(&provisioning.host_path().join("datasources/prometheus.yml"));
    let url = datasources["datasources"][0]["url"].as_str().expect("url");
    assert_eq!(url, "http://prometheus:9090");
    let providers = yaml(&provisioning.host_path().join("dashboards/pgshadow.yml"));
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .expect("provider path");
    let dashboards = compose.mounted_at("grafana", path);
    assert!(dashboards.host_path().join("pgshadow.json").is_file());
}

#[test]
fn every_mounted_host_path_exists() {
    let compose = Compose::load();
    let mut checked = 0;
    for service in compose.service_names() {
        for mount in compose.mounts(&service).iter().filter(|m| m.is_bind()) {
            assert!(
                mount.host_path().exists(),
                "{service} mounts {} ({}), which does not exist",
                mount.source,
                mount.host_path().display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} bind mounts");
}

#[test]
fn the_image_is_built_in_stages_and_runs_unprivileged() {
    let dockerfile = read(&docker_dir().join("Dockerfile"));
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "a builder and a runtime stage");
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(runtime.starts_with("debian:") && runtime.contains("-slim"));
    let user = runtime
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "runs as {user}");
    // What the build copies exists, and the context filter (everything
    // excluded but an allowlist, so target/ is never sent) lets it through.
    let ignore = read(&docker_dir().join("Dockerfile.dockerignore"));
    let allowed: Vec<&str> = ignore.lines().filter_map(|l| l.strip_prefix('!')).collect();
    assert!(ignore.lines().any(|l| l.trim() == "*"), "{ignore}");
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for source in &parts[1..parts.len() - 1] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
            assert!(path.exists(), "{line}: {} is missing", path.display());
            assert!(
                allowed.contains(&source.trim_end_matches('/')),
                "{source} is excluded from the build context by Dockerfile.dockerignore"
            );
        }
    }
}

/// The init scripts, run as the postgres image runs them, build schemas
/// and a role that the mounted config works with: reads through the proxy
/// are compared, the example bug shows up as a mismatch, everything else
/// matches, and the shadow's role cannot write.
#[test]
fn the_init_scripts_and_the_mounted_config_work_together() {
    let compose = Compose::load();
    let (_, mut config_toml) = {
        let (path, _) = mounted_config(&compose);
        let text = read(&path);
        (path, text.parse::<toml::Table>().unwrap())
    };
    let pg = Pg::start();
    let initdb = compose.mounted_at("postgres", "/docker-entrypoint-initdb.d");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(initdb.host_path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    scripts.sort();
    assert_eq!(scripts.len(), 2, "{scripts:?}");
    let bindir = pg.program("psql").parent().unwrap().to_path_buf();
    let path_env = format!(
        "{}:{}",
        bindir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let shadow_password = compose.environment("postgres")["PGSHADOW_SHADOW_PASSWORD"].clone();
    for script in &scripts {
        let mut cmd = match script.extension().and_then(|e| e.to_str()) {
            Some("sql") => {
                let mut c = Command::new(pg.program("psql"));
                c.args(["-X", "-v", "ON_ERROR_STOP=1", "-f"]).arg(script);
                c.args(["-U", harness::TRUST_USER, "-d", harness::DB]);
                c
            }
            Some("sh") => Command::new(script),
            other => panic!("unexpected init script type {other:?}"),
        };
        // What the postgres image's entrypoint provides.
        cmd.env("PATH", &path_env)
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", pg.port().to_string())
            .env("POSTGRES_USER", harness::TRUST_USER)
            .env("POSTGRES_DB", harness::DB)
            .env("PGSHADOW_SHADOW_PASSWORD", &shadow_password);
        let (ok, out, err) = harness::run(&mut cmd);
        assert!(ok, "{}: {out}{err}", script.display());
    }

    // The shadow's role may read both schemas and write nothing.
    let user = config_toml["shadow"]["user"].as_str().unwrap().to_owned();
    let denied = harness::run(
        harness::psql(&pg, pg.port(), &user)
            .args(["-v", "ON_ERROR_STOP=1", "-c"])
            .arg("UPDATE entries SET version = 2 WHERE sys_id = 100001"),
    );
    assert!(
        !denied.0 && denied.2.contains("read-only transaction"),
        "{denied:?}"
    );

    // The mounted config, with only its addresses pointed at this machine
    // (the harness supplies [listen], [upstream], [admin] and [log]), every
    // read sampled and the store in a temporary directory.
    let store_dir = tempfile::tempdir().unwrap();
    for section in ["listen", "upstream", "admin", "log"] {
        config_toml.remove(section);
    }
    let set = |table: &mut toml::Table, section: &str, key: &str, value: toml::Value| {
        table[section]
            .as_table_mut()
            .unwrap()
            .insert(key.into(), value);
    };
    set(&mut config_toml, "shadow", "sample_rate", 1.0.into());
    // The mismatch line below is read for its values (logged only with
    // log.values = true).
    let mut log = toml::Table::new();
    log.insert("values".into(), true.into());
    config_toml.insert("log".into(), log.into());
    set(
        &mut config_toml,
        "store",
        "url",
        format!("sqlite://{}", store_dir.path().join("m.db").display()).into(),
    );
    let proxy = harness::Proxy::start_with_env(
        pg.port(),
        &toml::to_string(&config_toml).unwrap(),
        &[("PGSHADOW_SHADOW_PASSWORD", shadow_password.as_str())],
    );
    // The first ten entries of master (among them the broken sys_id
    // 100007) and of staging, whose copy was backfilled correctly.
    let master = "SELECT e.sys_id, f.value AS title FROM entries e \
                  JOIN entry_fields f ON f.sys_id = e.sys_id AND f.name = 'title' \
                  WHERE e.environment_id = 1 AND e.entry_id <= 10 ORDER BY e.updated_at";
    let staging = master.replace("environment_id = 1", "environment_id = 2");
    for sql in [master, &staging] {
        let (ok, out, err) = harness::run(
            harness::psql(&pg, proxy.port, harness::TRUST_USER)
                .args(["-v", "ON_ERROR_STOP=1", "-c"])
                .arg(sql),
        );
        assert!(ok, "{out}{err}");
    }
    let text = wait_until(Duration::from_secs(30), || {
        let text = http_get(proxy.admin_port, "/metrics");
        let series = |r: &str| {
            metric_value(
                &text,
                &format!("pgshadow_comparisons_total{{result=\"{r}\"}}"),
            )
        };
        (series("match") + series("mismatch") >= 2.0).then_some(text)
    })
    .expect("two comparisons");
    let count = |r: &str| {
        metric_value(
            &text,
            &format!("pgshadow_comparisons_total{{result=\"{r}\"}}"),
        )
    };
    assert_eq!(count("mismatch"), 1.0, "{text}");
    assert_eq!(count("match"), 1.0, "{text}");
    let mismatch = proxy.wait_for_log(Duration::from_secs(10), |l| l.contains("shadow mismatch"));
    assert!(
        mismatch.contains("sys_id=100007") && mismatch.contains("CafÃ© au lait"),
        "{mismatch}"
    );
}
