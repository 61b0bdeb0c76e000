//! `deploy/kubernetes/pgshadow.yaml`: the Secret, ConfigMap, Deployment and
//! Service agree with each other, and the embedded config passes
//! `pgshadow check-config` with the Secret's environment and the mounted
//! files in place (a CA bundle and a certificate made by the test).

use crate::harness::certs::TestCa;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

fn manifest() -> Vec<Yaml> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/pgshadow.yaml");
    let text = std::fs::read_to_string(&path).expect("read the manifest");
    assert!(!text.contains('\t'), "tabs are not YAML indentation");
    YamlLoader::load_from_str(&text).expect("valid YAML")
}

fn of_kind<'a>(docs: &'a [Yaml], kind: &str) -> Vec<&'a Yaml> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

fn one<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    let found = of_kind(docs, kind);
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn str_of<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {y:?}"))
}

#[test]
fn the_manifest_has_a_deployment_service_configmap_and_secret_that_agree() {
    let docs = manifest();
    let deployment = one(&docs, "Deployment");
    let service = one(&docs, "Service");
    let secret = one(&docs, "Secret");
    let configmap = one(&docs, "ConfigMap");
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];

    // The Service selects the pods.
    let labels = pod["metadata"]["labels"].as_hash().expect("pod labels");
    for (k, v) in service["spec"]["selector"].as_hash().expect("selector") {
        assert_eq!(labels.get(k), Some(v), "selector {k:?}");
    }
    // The config the container runs with is the ConfigMap's.
    let args: Vec<&str> = container["args"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    let at = args
        .iter()
        .position(|a| *a == "--config")
        .expect("--config");
    let config_path = args[at + 1];
    let mounts = container["volumeMounts"].as_vec().unwrap();
    let config_mount = mounts
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(config_path))
        .expect("the config file is mounted");
    let volumes = pod["spec"]["volumes"].as_vec().unwrap();
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("volume {name}"))
    };
    let config_volume = volume(str_of(&config_mount["name"], "mount name"));
    assert_eq!(
        config_volume["configMap"]["name"],
        configmap["metadata"]["name"]
    );
    let key = str_of(&config_mount["subPath"], "subPath");
    let toml_text = str_of(&configmap["data"][key], "the config");
    let config: pgshadow::config::Config = toml::from_str(toml_text).expect("the embedded config");

    // Ports: the container's named ports are the config's, the Service
    // exposes both, readiness is /readyz and scraping /metrics on admin.
    let port_named = |name: &str| {
        container["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_i64())
            .unwrap_or_else(|| panic!("port {name}"))
    };
    assert_eq!(
        port_named("postgres"),
        i64::from(config.listen.address.port())
    );
    assert_eq!(port_named("admin"), i64::from(config.admin.address.port()));
    assert!(config.listen.address.ip().is_unspecified());
    assert!(config.admin.address.ip().is_unspecified());
    let targets: Vec<&str> = service["spec"]["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|p| str_of(&p["targetPort"], "targetPort"))
        .collect();
    assert_eq!(targets, ["postgres", "admin"]);
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["port"].as_str(),
        Some("admin")
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(config.admin.address.port().to_string().as_str())
    );
    assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"));
    // A grace period longer than pgshadow's own.
    let grace = pod["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .unwrap();
    assert!(grace * 1000 > config.listen.shutdown_timeout_ms as i64);

    // Every secret the config reads from the environment is in the Secret
    // the container loads.
    let from = container["envFrom"][0]["secretRef"]["name"].as_str();
    assert_eq!(from, secret["metadata"]["name"].as_str());
    let secret_keys = secret["stringData"].as_hash().unwrap();
    for var in [
        config.shadow.password_env.clone(),
        config.admin.token_env.clone(),
        config.store.password_env.clone(),
    ]
    .into_iter()
    .flatten()
    {
        assert!(
            secret_keys.contains_key(&Yaml::String(var.clone())),
            "{var} is not in the Secret"
        );
    }

    // TLS on both legs, with the files the pod mounts.
    assert_eq!(
        config.listen.tls_mode,
        pgshadow::config::ListenTlsMode::Require
    );
    assert_eq!(config.upstream.tls, pgshadow::config::TlsMode::VerifyFull);
    assert!(config.store.url.to_string().contains("sslmode=verify-full"));
    let mounted = |file: &Path| {
        mounts
            .iter()
            .any(|m| m["mountPath"].as_str().is_some_and(|p| file.starts_with(p)))
    };
    for file in [
        config.listen.tls_cert.clone().unwrap(),
        config.listen.tls_key.clone().unwrap(),
        config.upstream.tls_root_cert.clone().unwrap(),
    ] {
        assert!(
            mounted(&file),
            "{} is not on a mounted volume",
            file.display()
        );
    }
    assert_eq!(
        volume("tls")["secret"]["secretName"].as_str(),
        Some("pgshadow-tls")
    );
    assert_eq!(
        volume("ca")["configMap"]["name"].as_str(),
        Some("pgshadow-ca")
    );
    assert!(container["securityContext"]["readOnlyRootFilesystem"].as_bool() == Some(true));
}

#[test]
fn the_embedded_config_passes_check_config() {
    let docs = manifest();
    let configmap = one(&docs, "ConfigMap");
    let secret = one(&docs, "Secret");
    let toml_text = str_of(&configmap["data"]["pgshadow.toml"], "the config");
    // The files the pod mounts, made here: a CA bundle and a certificate.
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("provider CA");
    std::fs::create_dir_all(dir.path().join("ca")).unwrap();
    std::fs::create_dir_all(dir.path().join("tls")).unwrap();
    ca.write(&dir.path().join("ca"), "ca.pem");
    let issued = ca.issue(&["pgshadow.example.internal"]);
    std::fs::write(dir.path().join("tls/tls.crt"), &issued.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls/tls.key"), &issued.key_pem).unwrap();
    let root: PathBuf = dir.path().to_path_buf();
    let relocated = toml_text.replace("/etc/pgshadow/", &format!("{}/", root.display()));
    let file = dir.path().join("pgshadow.toml");
    std::fs::write(&file, relocated).unwrap();
    let env: BTreeMap<String, String> = secret["stringData"]
        .as_hash()
        .unwrap()
        .iter()
        .map(|(k, v)| (str_of(k, "key").to_string(), str_of(v, "value").to_string()))
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_pgshadow"))
        .arg("check-config")
        .arg(&file)
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
}
