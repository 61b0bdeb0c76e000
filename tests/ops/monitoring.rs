//! `docker/prometheus/alerts.yml` and the Grafana dashboard reference only
//! metrics the proxy really emits, with label values it really uses, and
//! are well-formed. When `promtool` is at hand (`.ci/run` fetches it), the
//! rules and every dashboard query are also checked by Prometheus itself.

use crate::fixture;
use crate::harness::{connect, Pg, Proxy};
use crate::{comparisons, wait_for_metric};
use pgshadow::capture::skip::SkipReason;
use pgshadow::outcome::OutcomeKind;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

const ALERTS: &str = "docker/prometheus/alerts.yml";
const ALERT_TESTS: &str = "docker/prometheus/alerts.test.yml";
const DASHBOARD: &str = "docker/grafana/dashboards/pgshadow.json";

/// One alerting rule of alerts.yml, its keys flattened: `expr`, `for`,
/// `labels.severity`, `annotations.summary`, …
#[derive(Debug)]
struct Rule {
    name: String,
    fields: BTreeMap<String, String>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// A deliberately small reader for the YAML subset alerts.yml is written
/// in (block mappings, `- alert:` list items, plain and quoted scalars,
/// `|` and `>-` block scalars). promtool does the full parse in CI; this
/// one gives the test the rules' structure without a YAML dependency.
fn parse_rules(yaml: &str) -> Vec<Rule> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut rules = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(name) = lines[i].trim_start().strip_prefix("- alert:") else {
            i += 1;
            continue;
        };
        let key_indent = indent(lines[i]) + 2;
        let mut rule = Rule {
            name: name.trim().to_string(),
            fields: BTreeMap::new(),
        };
        let mut parent = String::new();
        i += 1;
        while i < lines.len() {
            let line = lines[i];
            let text = line.trim();
            if text.is_empty() || text.starts_with('#') {
                i += 1;
                continue;
            }
            let at = indent(line);
            if at < key_indent {
                break;
            }
            let (key, value) = text
                .split_once(':')
                .unwrap_or_else(|| panic!("rule {}: not `key: value`: {line:?}", rule.name));
            let key = if at == key_indent {
                parent = key.to_string();
                key.to_string()
            } else if at == key_indent + 2 {
                format!("{parent}.{key}")
            } else {
                panic!("rule {}: unexpected indentation: {line:?}", rule.name)
            };
            let value = value.trim();
            i += 1;
            let value = if value == "|" || value.starts_with('>') {
                let mut block = Vec::new();
                while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > at) {
                    block.push(lines[i].trim());
                    i += 1;
                }
                block.join(if value == "|" { "\n" } else { " " })
            } else {
                value.trim_matches('"').to_string()
            };
            rule.fields.insert(key, value);
        }
        rules.push(rule);
    }
    rules
}

/// Every `pgshadow_…` identifier in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("pgshadow_") {
        if text[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let name: String = text[at..].chars().take_while(|c| is_ident(*c)).collect();
        names.insert(name);
    }
    names
}

/// Every `metric{label="value"}` matcher of a PromQL expression, as
/// (metric, label, value), one entry per value of a `label=~"a|b"`.
fn matchers(expr: &str) -> Vec<(String, String, String)> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut found = Vec::new();
    for (open, _) in expr.match_indices('{') {
        let start = expr[..open]
            .rfind(|c: char| !is_ident(c))
            .map_or(0, |at| at + 1);
        let metric = &expr[start..open];
        let Some(len) = expr[open..].find('}') else {
            continue;
        };
        if metric.is_empty() {
            continue; // not a selector
        }
        for matcher in expr[open + 1..open + len].split(',') {
            let Some((label, value)) = matcher.split_once('=') else {
                continue;
            };
            let label = label.trim().trim_end_matches('!');
            let value = value.trim_start_matches('~').trim().trim_matches('"');
            for v in value.split('|') {
                found.push((metric.to_string(), label.to_string(), v.to_string()));
            }
        }
    }
    found
}

/// The values a PromQL expression matches `label` against (`label="a"`,
/// `label=~"a|b"`).
fn label_values(expr: &str, label: &str) -> Vec<String> {
    let mut values = Vec::new();
    for op in ["=\"", "=~\""] {
        let needle = format!("{label}{op}");
        for (at, _) in expr.match_indices(&needle) {
            let rest = &expr[at + needle.len()..];
            let value = rest.split('"').next().unwrap_or_default();
            values.extend(value.split('|').map(str::to_string));
        }
    }
    values
}

/// What one scrape of `/metrics` contains.
struct Exposition {
    /// Metric family → type, from the `# TYPE` lines.
    families: BTreeMap<String, String>,
    /// Names of the sample lines (`…_bucket`, `…_sum`, `…_count` for
    /// histograms).
    series: BTreeSet<String>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut families = BTreeMap::new();
        let mut series = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    families.insert(name.to_string(), kind.to_string());
                }
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                series.insert(name.to_string());
            }
        }
        Exposition { families, series }
    }

    /// The family a name in a PromQL expression selects: itself, or for
    /// `_bucket`/`_sum`/`_count` the histogram it belongs to.
    fn family_of<'a>(&self, name: &'a str) -> Option<&'a str> {
        if self.families.contains_key(name) {
            return Some(name);
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = name.strip_suffix(suffix)?;
            matches!(
                self.families.get(base).map(String::as_str),
                Some("histogram" | "summary")
            )
            .then_some(base)
        })
    }

    /// Whether a PromQL selector of `name` can match a series: the name
    /// of a counter or gauge, or a histogram's `_bucket`/`_sum`/`_count`
    /// (a bare histogram name selects nothing).
    fn selectable(&self, name: &str) -> bool {
        self.series.contains(name)
            && self
                .family_of(name)
                .is_some_and(|family| family != name || self.families[name] != "histogram")
    }
}

/// Every PromQL expression of the dashboard: panel targets and the
/// template variable queries, by where they are.
fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    let mut stack: Vec<&serde_json::Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    while let Some(panel) = stack.pop() {
        if let Some(nested) = panel["panels"].as_array() {
            stack.extend(nested);
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            exprs.push((format!("panel {:?}", panel["title"]), expr.to_string()));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if let Some(query) = variable["query"]["query"].as_str() {
            exprs.push((
                format!("variable {:?}", variable["name"]),
                query.to_string(),
            ));
        }
    }
    exprs
}

/// A dashboard expression as plain PromQL: Grafana's variables replaced.
fn as_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$instance", ".*")
}

fn alert_exprs(rules: &[Rule]) -> Vec<(String, String)> {
    rules
        .iter()
        .map(|r| (format!("alert {}", r.name), r.fields["expr"].clone()))
        .collect()
}

#[test]
fn the_alert_rules_are_complete_and_tell_on_call_what_to_do() {
    let yaml = read(ALERTS);
    assert!(!yaml.contains('\t'), "tabs are not YAML indentation");
    let top: Vec<&str> = yaml
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .take(3)
        .collect();
    assert_eq!(
        top,
        ["groups:", "  - name: pgshadow", "    rules:"],
        "{ALERTS} starts with one group"
    );
    let rules = parse_rules(&yaml);
    let names: BTreeSet<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), rules.len(), "alert names are unique");
    for required in [
        "PgshadowDown",
        "PgshadowMismatchIncidentsOpen",
        "PgshadowMismatchRateHigh",
        "PgshadowShadowErrorRateHigh",
        "PgshadowSamplesDropped",
        "PgshadowStoreDroppingOutcomes",
    ] {
        assert!(names.contains(required), "{required} missing: {names:?}");
    }
    for rule in &rules {
        let field = |key: &str| -> &str {
            rule.fields
                .get(key)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| panic!("alert {}: no {key}: {:?}", rule.name, rule.fields))
        };
        field("expr");
        let duration = field("for");
        assert!(
            duration.len() > 1
                && duration[..duration.len() - 1]
                    .chars()
                    .all(|c| c.is_ascii_digit())
                && duration.ends_with(['s', 'm', 'h']),
            "alert {}: for: {duration:?}",
            rule.name
        );
        assert!(
            ["critical", "warning"].contains(&field("labels.severity")),
            "alert {}: severity {:?}",
            rule.name,
            field("labels.severity")
        );
        field("annotations.summary");
        assert!(
            field("annotations.description").contains("README.md#runbook"),
            "alert {}: the description links the runbook",
            rule.name
        );
        assert!(field("annotations.runbook_url").ends_with("#runbook"));
    }
    let expr_of = |name: &str| &rules.iter().find(|r| r.name == name).unwrap().fields["expr"];
    assert!(expr_of("PgshadowDown").contains("up{job=\"pgshadow\"} == 0"));
    assert!(expr_of("PgshadowMismatchIncidentsOpen").contains("pgshadow_incidents_open"));
    assert!(expr_of("PgshadowMismatchRateHigh").contains("result=\"mismatch\""));
    assert!(expr_of("PgshadowSamplesDropped").contains("reason=\"queue_full\""));
    assert!(expr_of("PgshadowStoreDroppingOutcomes").contains("pgshadow_store_dropped_total"));
    assert!(expr_of("PgshadowNewSchemaSlower").contains("pgshadow_slower_statements"));
    let errors = label_values(expr_of("PgshadowShadowErrorRateHigh"), "result");
    let expected: BTreeSet<&str> = OutcomeKind::ALL
        .iter()
        .map(|k| k.label())
        // A noisy comparison is not an error: a nondeterministic statement.
        .filter(|l| !["match", "mismatch", "noisy"].contains(l))
        .collect();
    assert_eq!(
        errors.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        expected,
        "the error-rate rule counts every error result"
    );
}

#[test]
fn the_dashboard_is_well_formed_and_shows_every_on_call_metric() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "pgshadow");
    assert!(dashboard["schemaVersion"].as_u64().is_some());
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "every panel has a title: {panel}");
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "duplicate id in {title}"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(w > 0 && x + w <= 24, "{title}: gridPos {grid}");
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
            assert!(
                !panel["targets"].as_array().unwrap().is_empty(),
                "{title} has queries"
            );
        }
    }
    let exprs = dashboard_exprs(&dashboard);
    let used: BTreeSet<String> = exprs.iter().flat_map(|(_, e)| metric_names(e)).collect();
    for required in [
        "pgshadow_client_connections",
        "pgshadow_queries_total",
        "pgshadow_comparisons_total",
        "pgshadow_skipped_total",
        "pgshadow_queue_depth",
        "pgshadow_shadow_duration_seconds_bucket",
        "pgshadow_incidents_open",
        "pgshadow_store_dropped_total",
        "pgshadow_slower_statements",
    ] {
        assert!(used.contains(required), "no panel shows {required}");
    }
    for quantile in ["histogram_quantile(0.5,", "histogram_quantile(0.95,"] {
        assert!(
            exprs
                .iter()
                .any(|(_, e)| e.contains(quantile) && e.contains("by (le, side)")),
            "{quantile} by side"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboard_reference_only_metrics_and_labels_the_proxy_emits() {
    let pg = Pg::start();
    fixture::create(&pg);
    let proxy = Proxy::start(pg.port(), &fixture::shadow_config(""));
    let client = connect(proxy.port).await;
    for environment in 1..=3i32 {
        let rows = client
            .query(
                "SELECT sys_id, entry_id FROM entries WHERE environment_id = $1 ORDER BY sys_id",
                &[&environment],
            )
            .await
            .unwrap();
        assert!(!rows.is_empty());
    }
    wait_for_metric(&proxy, 3.0, |p| comparisons(p, "match"), "matches");
    let emitted = Exposition::parse(&proxy.metrics_text());

    let alerts = read(ALERTS);
    let dashboard: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    let mut exprs = alert_exprs(&parse_rules(&alerts));
    exprs.extend(dashboard_exprs(&dashboard));
    assert!(exprs.len() > 10, "{exprs:?}");

    let mut missing = BTreeSet::new();
    for (place, expr) in &exprs {
        for name in metric_names(expr) {
            if !emitted.selectable(&name) {
                missing.insert(format!("{name} (in {place})"));
            }
        }
        for (metric, label, value) in matchers(expr) {
            let family = emitted.family_of(&metric).unwrap_or(&metric);
            let values: Vec<&str> = match (family, label.as_str()) {
                (_, "instance") => continue,
                ("pgshadow_comparisons_total", "result") => {
                    OutcomeKind::ALL.iter().map(|k| k.label()).collect()
                }
                ("pgshadow_skipped_total", "reason") => {
                    SkipReason::ALL.iter().map(|r| r.label()).collect()
                }
                ("pgshadow_shadow_duration_seconds", "side") => vec!["old", "new"],
                ("pgshadow_config_reloads_total", "result") => vec!["ok", "error"],
                ("up", "job") => vec!["pgshadow"],
                _ => panic!("{place}: {metric} has no label {label} that pgshadow sets"),
            };
            assert!(
                values.contains(&value.as_str()),
                "{place}: {metric}{{{label}=\"{value}\"}}: not a value pgshadow uses ({values:?})"
            );
        }
    }
    // Names mentioned in prose (descriptions, annotations) must be metric
    // families too.
    let prose = format!("{alerts}\n{dashboard}");
    for name in metric_names(&prose) {
        if emitted.family_of(&name).is_none() {
            missing.insert(format!("{name} (mentioned in the text)"));
        }
    }
    assert!(
        missing.is_empty(),
        "referenced but not emitted by the proxy:\n  {}\nemitted families: {:?}",
        missing.into_iter().collect::<Vec<_>>().join("\n  "),
        emitted.families.keys().collect::<Vec<_>>()
    );
}

/// alerts.yml without its `annotations:` blocks.
fn without_annotations(yaml: &str) -> String {
    let mut out = String::new();
    let mut skipping: Option<usize> = None;
    for line in yaml.lines() {
        if let Some(at) = skipping {
            if line.trim().is_empty() || indent(line) > at {
                continue;
            }
            skipping = None;
        }
        if line.trim() == "annotations:" {
            skipping = Some(indent(line));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `promtool` from PATH, or where `.ci/run` puts it.
fn promtool() -> Option<PathBuf> {
    let local = repo_file("target/tools/promtool");
    if local.is_file() {
        return Some(local);
    }
    let found = Command::new("promtool").arg("--version").output();
    found
        .is_ok_and(|o| o.status.success())
        .then(|| PathBuf::from("promtool"))
}

#[test]
fn promtool_accepts_the_rules_their_unit_tests_and_every_dashboard_query() {
    let Some(promtool) = promtool() else {
        eprintln!("promtool not found (.ci/run fetches it into target/tools): skipped");
        return;
    };
    let run = |args: &[&str]| {
        let out = Command::new(&promtool)
            .args(args)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let alerts = repo_file(ALERTS);
    run(&["check", "rules", alerts.to_str().unwrap()]);
    // promtool's unit tests compare annotations as well: run them against
    // a copy without annotations, so they test conditions, not wording.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("alerts.yml"),
        without_annotations(&read(ALERTS)),
    )
    .unwrap();
    let tests = dir.path().join("alerts.test.yml");
    std::fs::copy(repo_file(ALERT_TESTS), &tests).unwrap();
    run(&["test", "rules", tests.to_str().unwrap()]);

    // The dashboard's queries as recording rules: promtool parses each.
    let dashboard: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in dashboard_exprs(&dashboard).iter().enumerate() {
        if expr.starts_with("label_values(") {
            continue; // Grafana's own function, not PromQL.
        }
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&as_promql(expr)).unwrap()
        ));
    }
    let file = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
    std::fs::write(file.path(), rules).unwrap();
    run(&["check", "rules", file.path().to_str().unwrap()]);
}

#[test]
fn the_yaml_reader_sees_block_scalars_and_nested_keys() {
    let rules = parse_rules(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: |\n          x\n            > 1\n        for: 5m\n        labels:\n          severity: warning\n        annotations:\n          summary: \"s: t\"\n          description: >-\n            one\n            two\n      - alert: B\n        expr: up == 0\n",
    );
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].fields["expr"], "x\n> 1");
    assert_eq!(rules[0].fields["labels.severity"], "warning");
    assert_eq!(rules[0].fields["annotations.summary"], "s: t");
    assert_eq!(rules[0].fields["annotations.description"], "one two");
    assert_eq!(rules[1].fields["expr"], "up == 0");
    assert_eq!(
        metric_names("rate(pgshadow_a_total[5m]) / xpgshadow_b + pgshadow_c:d"),
        BTreeSet::from(["pgshadow_a_total".into(), "pgshadow_c:d".into()])
    );
    assert_eq!(
        label_values(r#"x{result=~"a|b", reason="c"}"#, "result"),
        ["a", "b"]
    );
    let m = |metric: &str, label: &str, value: &str| {
        (metric.to_string(), label.to_string(), value.to_string())
    };
    assert_eq!(
        matchers(r#"sum(rate(pgshadow_a{result=~"a|b", side!="c"}[5m])) / up{job="p"}"#),
        [
            m("pgshadow_a", "result", "a"),
            m("pgshadow_a", "result", "b"),
            m("pgshadow_a", "side", "c"),
            m("up", "job", "p"),
        ]
    );
}
