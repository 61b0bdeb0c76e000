//! The `pgshadow` command line: config checking, exit codes, errors a
//! person can act on.

mod mismatches;
#[path = "../harness/outcome.rs"]
mod outcome;

use std::path::Path;
use std::process::Command;

fn pgshadow(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pgshadow"))
        .args(args)
        .env_remove("PGSHADOW_CONFIG")
        .output()
        .expect("run pgshadow");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config.example.toml")
        .display()
        .to_string()
}

#[test]
fn the_example_config_is_valid_and_sets_every_key_to_its_default() {
    let (code, out, err) = pgshadow(&["check-config", &example()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("OK"), "{out}");
    let text = std::fs::read_to_string(example()).unwrap();
    let from_file = pgshadow::config::Config::parse(&text, "example").unwrap();
    let mut defaults = pgshadow::config::Config::parse("", "empty").unwrap();
    // The example documents a password variable, which has no default.
    defaults.shadow.password_env = Some("PGSHADOW_SHADOW_PASSWORD".into());
    assert_eq!(
        from_file, defaults,
        "config.example.toml must show the defaults"
    );
}

#[test]
fn invalid_configs_exit_2_and_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, key) in [
        ("[listen]\naddress = \"not an address\"\n", "listen.address"),
        ("[upstream]\nprot = 5432\n", "upstream.prot"),
        ("[shadow]\nsample_rate = 2.0\n", "shadow.sample_rate"),
        ("[log]\nformat = \"xml\"\n", "log.format"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, toml).unwrap();
        let (code, _, err) = pgshadow(&["check-config", path.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{toml}");
        assert!(err.contains(key), "{toml}: {err}");
        let (code, _, err) = pgshadow(&["run", "--config", path.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{toml}");
        assert!(err.contains(key), "{toml}: {err}");
    }
    let (code, _, err) = pgshadow(&["check-config", "/nonexistent/pgshadow.toml"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("cannot read config file /nonexistent/pgshadow.toml"),
        "{err}"
    );
}

#[test]
fn run_is_the_default_command_and_needs_a_config() {
    let (code, _, err) = pgshadow(&[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--config"), "{err}");
}

#[test]
fn a_taken_listen_address_is_a_clear_runtime_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, format!("[listen]\naddress = \"{addr}\"\n")).unwrap();
    // No subcommand: `run` is the default.
    let (code, _, err) = pgshadow(&["--config", path.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

/// Every key `config.example.toml` shows (commented-out ones too) has a row
/// in the README's configuration reference, written `section.key`.
#[test]
fn every_key_of_the_example_config_is_documented_in_the_readme() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("config.example.toml")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in example.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        // `key = value`, or a commented-out `# key = value`.
        let candidate = line.trim_start_matches('#').trim_start();
        let Some((key, _)) = candidate.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let is_key = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if is_key && !section.is_empty() {
            keys.push(format!("{section}.{key}"));
        }
    }
    assert!(keys.len() > 40, "too few keys found: {keys:?}");
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !readme.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "keys of config.example.toml not documented in README.md: {missing:?}"
    );
}
