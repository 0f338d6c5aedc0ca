//! Static checks of the deployment assets under `deploy/` (they cannot be built or run on the
//! development machines: no Docker daemon there).
//!
//! * every YAML file under deploy/ parses (multi-document aware);
//! * both Grafana dashboards: every panel (also inside rows) has a title, the provisioned
//!   Prometheus datasource, a unit and at least one target with an `expr`;
//! * every `churnguard_*` metric referenced by a dashboard, an alert rule or a rule unit test is
//!   one the service exports (read from the service's own registry, so they cannot drift);
//! * every alert rule has a severity label and summary/description/runbook annotations;
//! * compose / Kubernetes wiring: CHURNGUARD_* variables are real flags, probes hit /healthz and
//!   /readyz on the metrics port, the HPA never exceeds the input topic's partitions, the
//!   kustomization lists files that exist;
//! * `promtool check rules`, `promtool check config`, `promtool test rules` and a syntax check of
//!   every dashboard query, when promtool is installed (required when `CI` is set).

mod util;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use util::dashboards::{deploy, leaf_panels};

/// Metric families the service really exports, read from its own registry: `(name, type)`.
/// Dashboards and rules may reference only these (histograms also by `_bucket`/`_sum`/`_count`).
fn exported_families() -> &'static Vec<(String, String)> {
    static FAMILIES: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    FAMILIES.get_or_init(|| {
        // As a running service renders it: with a model loaded (model_info has no series before).
        let metrics = churnguard::metrics::Metrics::new();
        metrics.set_model("sha256:test", "logistic_regression", 0.5);
        // Per-partition lag has series once partitions are assigned.
        metrics.consumer_lag.with_label_values(&["0"]).set(0);
        metrics
            .render()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    })
}

/// Environment variables `churnguard` reads (plus `RUST_LOG`): every `[env: NAME=…]` note of
/// the binary's `--help` and of each subcommand's. The flags are defined on the binary's side,
/// so its help is their one public listing.
fn known_env() -> &'static Vec<String> {
    static ENV: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let top = churnguard_help(&[]);
        let mut vars: Vec<String> = vec!["RUST_LOG".into()];
        vars.extend(env_notes(&top));
        for sub in subcommands(&top) {
            vars.extend(env_notes(&churnguard_help(&[sub.as_str()])));
        }
        assert!(
            vars.iter().any(|v| v == "CHURNGUARD_BROKERS"),
            "no env notes found in the help text: {vars:?}"
        );
        vars
    })
}

/// `churnguard [subcommand] --help`, run without any `CHURNGUARD_*` variable of this process
/// (a set value is shown in the help and could fail validation).
fn churnguard_help(subcommand: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_churnguard"));
    cmd.args(subcommand).arg("--help");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CHURNGUARD_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("cannot run churnguard --help");
    assert!(
        out.status.success(),
        "churnguard {subcommand:?} --help failed"
    );
    String::from_utf8(out.stdout).expect("help text is UTF-8")
}

/// Subcommand names listed under `Commands:` (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Variable names of the `[env: NAME=value]` notes in a help text (a note may wrap lines).
fn env_notes(help: &str) -> Vec<String> {
    help.split("[env:")
        .skip(1)
        .map(|rest| {
            rest.trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

const ALERTS: &[&str] = &[
    "ChurnguardNoEvents",
    "ChurnguardDLQRateHigh",
    "ChurnguardConsumerLagGrowing",
    "ChurnguardNotReady",
    "ChurnguardDeliveryErrors",
    "ChurnguardCommitErrors",
    "ChurnguardAlertVolumeAnomaly",
    "ChurnguardModelMissing",
    "ChurnguardEventTimeStalled",
    "ChurnguardModelStale",
    "ChurnguardUserCapReached",
    "ChurnguardUserCapNear",
    "ChurnguardOversizedInput",
    "ChurnguardDedupeOverflow",
];

const DASHBOARDS: &[&str] = &["churnguard-service.json", "churnguard-winback.json"];

const METRICS_PORT: u64 = 9464;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn files_with_ext(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
    {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_with_ext(&path, exts, out);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| exts.contains(&e))
        {
            out.push(path);
        }
    }
    out.sort();
}

/// Every document of a (possibly multi-document) YAML file.
fn yaml_docs(path: &Path) -> Vec<Yaml> {
    let text = read(path);
    let mut docs = Vec::new();
    for de in serde_yaml::Deserializer::from_str(&text) {
        let doc = <Yaml as serde::Deserialize>::deserialize(de)
            .unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", path.display()));
        if !doc.is_null() {
            docs.push(doc);
        }
    }
    docs
}

fn yaml_one(path: &Path) -> Yaml {
    let mut docs = yaml_docs(path);
    assert_eq!(
        docs.len(),
        1,
        "{}: expected exactly one YAML document",
        path.display()
    );
    docs.remove(0)
}

fn ystr<'a>(v: &'a Yaml, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Yaml::as_str)
}

/// `churnguard_[a-z_]+` tokens of a PromQL expression (not preceded by a name character).
fn metric_tokens(expr: &str) -> Vec<String> {
    const PREFIX: &str = "churnguard_";
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = expr[from..].find(PREFIX) {
        let start = from + pos;
        let mut end = start + PREFIX.len();
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        let preceded_by_name_char = start > 0
            && (bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b':');
        if !preceded_by_name_char && end > start + PREFIX.len() {
            out.push(expr[start..end].to_string());
        }
        from = end;
    }
    out
}

fn is_exported(name: &str) -> bool {
    let families = exported_families();
    let is_histogram = |n: &str| families.iter().any(|(f, t)| f == n && t == "histogram");
    if families.iter().any(|(f, _)| f == name) {
        return true;
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .any(|suffix| name.strip_suffix(suffix).is_some_and(is_histogram))
}

/// Checks the metric names of `expr`; returns how many churnguard metrics it references.
fn check_metrics(expr: &str, context: &str, errors: &mut Vec<String>) -> usize {
    let tokens = metric_tokens(expr);
    for t in &tokens {
        if !is_exported(t) {
            errors.push(format!("{context}: unknown metric `{t}` in `{expr}`"));
        }
    }
    tokens.len()
}

// ---------------------------------------------------------------------------------------------
// YAML

#[test]
fn every_yaml_file_parses() {
    let mut files = Vec::new();
    files_with_ext(&deploy(), &["yml", "yaml"], &mut files);
    assert!(
        files.len() >= 12,
        "expected the compose, prometheus, grafana and k8s YAML files, found {files:?}"
    );
    for f in &files {
        let docs = yaml_docs(f);
        assert!(!docs.is_empty(), "{}: no YAML document", f.display());
        for d in &docs {
            assert!(
                d.is_mapping(),
                "{}: top-level document is not a mapping",
                f.display()
            );
        }
    }
}

#[test]
fn metric_token_scanner() {
    assert_eq!(
        metric_tokens(
            r#"histogram_quantile(0.5, sum by (le) (rate(churnguard_churn_score_bucket{job="x"}[5m]))) / my_churnguard_x"#
        ),
        vec!["churnguard_churn_score_bucket"]
    );
    assert!(is_exported("churnguard_churn_score_bucket"));
    assert!(is_exported("churnguard_ready"));
    assert!(!is_exported("churnguard_ready_bucket"));
    assert!(!is_exported("churnguard_consumer_lag"));
}

// ---------------------------------------------------------------------------------------------
// Prometheus

#[test]
fn alert_rules_are_complete_and_use_exported_metrics() {
    let rules = yaml_one(&deploy().join("prometheus/rules.yml"));
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    let groups = rules
        .get("groups")
        .and_then(Yaml::as_sequence)
        .expect("rules.yml: groups");
    for group in groups {
        for rule in group
            .get("rules")
            .and_then(Yaml::as_sequence)
            .expect("group without rules")
        {
            let expr = ystr(rule, "expr").expect("rule without expr");
            let name = ystr(rule, "alert")
                .or(ystr(rule, "record"))
                .unwrap_or("?")
                .to_string();
            if check_metrics(expr, &format!("rules.yml {name}"), &mut errors) == 0 {
                errors.push(format!("rules.yml {name}: references no churnguard metric"));
            }
            if ystr(rule, "alert").is_none() {
                continue;
            }
            let severity = rule.get("labels").and_then(|l| ystr(l, "severity"));
            if !matches!(severity, Some("critical" | "warning" | "info")) {
                errors.push(format!(
                    "{name}: severity label missing or unusual: {severity:?}"
                ));
            }
            for key in ["summary", "description", "runbook"] {
                if rule
                    .get("annotations")
                    .and_then(|a| ystr(a, key))
                    .is_none_or(|s| s.trim().is_empty())
                {
                    errors.push(format!("{name}: annotation `{key}` missing"));
                }
            }
            seen.insert(name);
        }
    }
    for a in ALERTS {
        if !seen.contains(*a) {
            errors.push(format!("alert {a} missing from rules.yml"));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn rule_tests_and_scrape_config_match() {
    let dir = deploy().join("prometheus");
    let tests = yaml_one(&dir.join("test-rules.yml"));
    let mut errors = Vec::new();
    let mut tested = BTreeSet::new();
    for case in tests
        .get("tests")
        .and_then(Yaml::as_sequence)
        .expect("test-rules.yml: tests")
    {
        for series in case
            .get("input_series")
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
        {
            let s = ystr(series, "series").expect("input series without `series`");
            check_metrics(s, "test-rules.yml input_series", &mut errors);
        }
        for t in case
            .get("alert_rule_test")
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
        {
            if t.get("exp_alerts")
                .and_then(Yaml::as_sequence)
                .is_some_and(|a| !a.is_empty())
            {
                tested.insert(ystr(t, "alertname").expect("alertname").to_string());
            }
        }
    }
    assert!(
        tested.len() >= 3,
        "fewer than 3 alerts have a firing unit test: {tested:?}"
    );
    for a in &tested {
        assert!(
            ALERTS.contains(&a.as_str()),
            "test-rules.yml tests unknown alert {a}"
        );
    }

    let config = yaml_one(&dir.join("prometheus.yml"));
    let rule_files: Vec<&str> = config
        .get("rule_files")
        .and_then(Yaml::as_sequence)
        .expect("rule_files")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(rule_files, ["rules.yml"]);
    let scrape = config
        .get("scrape_configs")
        .and_then(Yaml::as_sequence)
        .expect("scrape_configs");
    let job = scrape
        .iter()
        .find(|j| ystr(j, "job_name") == Some("churnguard"))
        .expect("job churnguard");
    let targets = format!("{:?}", job.get("static_configs"));
    assert!(
        targets.contains(&format!("churnguard:{METRICS_PORT}")),
        "scrape target: {targets}"
    );
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Grafana

fn load_dashboard(name: &str) -> Json {
    let path = deploy().join("grafana/dashboards").join(name);
    serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()))
}

/// All PromQL expressions of a dashboard's panels.
fn dashboard_exprs(dash: &Json) -> Vec<String> {
    let mut panels = Vec::new();
    leaf_panels(dash["panels"].as_array().expect("panels"), &mut panels);
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn dashboards_are_well_formed() {
    let datasource = serde_json::json!({"type": "prometheus", "uid": "prometheus"});
    let allowed_types = ["timeseries", "stat", "table", "heatmap"];
    let mut uids = BTreeSet::new();
    let mut errors = Vec::new();
    for name in DASHBOARDS {
        let dash = load_dashboard(name);
        let uid = dash["uid"].as_str().unwrap_or_default();
        if uid.is_empty() || !uids.insert(uid.to_string()) {
            errors.push(format!("{name}: missing or duplicate uid {uid:?}"));
        }
        if dash["title"].as_str().is_none_or(str::is_empty) {
            errors.push(format!("{name}: no title"));
        }
        if !dash["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "churnguard"))
        {
            errors.push(format!("{name}: tags must include churnguard"));
        }
        if !dash["schemaVersion"]
            .as_u64()
            .is_some_and(|v| (36..=41).contains(&v))
        {
            errors.push(format!("{name}: schemaVersion {}", dash["schemaVersion"]));
        }

        let mut panels = Vec::new();
        leaf_panels(dash["panels"].as_array().expect("panels"), &mut panels);
        assert!(panels.len() >= 8, "{name}: only {} panels", panels.len());
        let mut ids = BTreeSet::new();
        for p in panels {
            let title = p["title"].as_str().unwrap_or_default();
            let at = format!("{name} panel {:?} (id {})", title, p["id"]);
            if title.trim().is_empty() {
                errors.push(format!("{at}: empty title"));
            }
            if !ids.insert(p["id"].to_string()) {
                errors.push(format!("{at}: duplicate id"));
            }
            let ty = p["type"].as_str().unwrap_or_default();
            if !allowed_types.contains(&ty) {
                errors.push(format!("{at}: panel type {ty:?}"));
            }
            if p["datasource"] != datasource {
                errors.push(format!("{at}: datasource {}", p["datasource"]));
            }
            if p["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .is_none_or(str::is_empty)
            {
                errors.push(format!("{at}: fieldConfig.defaults.unit not set"));
            }
            let targets = p["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            if !targets
                .iter()
                .any(|t| t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()))
            {
                errors.push(format!("{at}: no target with an expr"));
            }
            for t in targets {
                if !t["datasource"].is_null() && t["datasource"] != datasource {
                    errors.push(format!("{at}: target datasource {}", t["datasource"]));
                }
                if let Some(expr) = t["expr"].as_str() {
                    if check_metrics(expr, &at, &mut errors) == 0 {
                        errors.push(format!(
                            "{at}: expr references no churnguard metric: {expr}"
                        ));
                    }
                }
            }
        }
        // Template variables query Prometheus too.
        for v in dash["templating"]["list"].as_array().into_iter().flatten() {
            let q = v["definition"].as_str().unwrap_or_default();
            check_metrics(q, &format!("{name} variable {}", v["name"]), &mut errors);
            if v["type"] == "query" && v["datasource"] != datasource {
                errors.push(format!(
                    "{name} variable {}: datasource {}",
                    v["name"], v["datasource"]
                ));
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn grafana_provisioning_matches_dashboards() {
    let prov = deploy().join("grafana/provisioning");
    let ds = yaml_one(&prov.join("datasources/prometheus.yml"));
    let sources = ds
        .get("datasources")
        .and_then(Yaml::as_sequence)
        .expect("datasources");
    assert!(
        sources
            .iter()
            .any(|s| ystr(s, "uid") == Some("prometheus") && ystr(s, "type") == Some("prometheus")),
        "no prometheus datasource with uid `prometheus`"
    );
    let dashboards = yaml_one(&prov.join("dashboards/churnguard.yml"));
    let provider = &dashboards
        .get("providers")
        .and_then(Yaml::as_sequence)
        .expect("providers")[0];
    assert_eq!(ystr(provider, "type"), Some("file"));
    assert_eq!(
        provider.get("options").and_then(|o| ystr(o, "path")),
        Some("/var/lib/grafana/dashboards")
    );
}

// ---------------------------------------------------------------------------------------------
// docker-compose and Kubernetes

fn env_keys(map: Option<&Yaml>) -> Vec<String> {
    map.and_then(Yaml::as_mapping)
        .map(|m| {
            m.keys()
                .filter_map(Yaml::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn assert_known_env(keys: &[String], context: &str) {
    assert!(
        keys.iter().any(|k| k == "CHURNGUARD_BROKERS"),
        "{context}: CHURNGUARD_BROKERS not set"
    );
    for k in keys {
        assert!(
            known_env().iter().any(|v| v == k),
            "{context}: `{k}` is not a churnguard setting"
        );
    }
}

/// Partition count of the `activity` topic created by the compose `kafka-init` service.
fn compose_input_partitions(compose: &Yaml) -> u64 {
    let command = &compose["services"]["kafka-init"]["command"];
    let script = match command {
        Yaml::String(s) => s.clone(),
        Yaml::Sequence(parts) => parts
            .iter()
            .filter_map(Yaml::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        other => panic!("kafka-init command: {other:?}"),
    };
    let words: Vec<&str> = script.split_whitespace().collect();
    let at = words
        .windows(2)
        .position(|w| w == ["--topic", "activity"])
        .expect("kafka-init creates the activity topic");
    let p = words[at..]
        .windows(2)
        .find(|w| w[0] == "--partitions")
        .expect("--partitions for activity");
    p[1].parse().expect("partition count")
}

#[test]
fn compose_wiring() {
    let compose = yaml_one(&deploy().join("docker-compose.yml"));
    let services = compose
        .get("services")
        .and_then(Yaml::as_mapping)
        .expect("services");
    for s in ["kafka", "kafka-init", "churnguard", "prometheus", "grafana"] {
        assert!(services.contains_key(s), "compose service {s} missing");
    }
    let cg = &compose["services"]["churnguard"];
    assert_eq!(
        cg["build"]["dockerfile"].as_str(),
        Some("deploy/Dockerfile")
    );
    let context = cg["build"]["context"].as_str().expect("build context");
    assert!(
        deploy().join(context).join("Cargo.toml").is_file(),
        "build context {context} is not the crate root"
    );
    assert!(deploy()
        .join(context)
        .join(cg["build"]["dockerfile"].as_str().unwrap())
        .is_file());
    assert_known_env(&env_keys(cg.get("environment")), "compose churnguard");
    // Hardened as on Kubernetes: non-root, read-only root filesystem, no capabilities.
    assert_eq!(cg["user"].as_str(), Some("10001:10001"));
    assert_eq!(cg["read_only"].as_bool(), Some(true));
    assert!(format!("{:?}", cg["cap_drop"]).contains("ALL"));
    assert!(format!("{:?}", cg["security_opt"]).contains("no-new-privileges:true"));
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.lines().any(|l| l.trim() == "USER 10001:10001"),
        "the image must run as the non-root uid 10001"
    );
    assert_eq!(compose_input_partitions(&compose), 6);
    for (svc, dir) in [
        ("prometheus", "prometheus"),
        ("grafana", "grafana/provisioning"),
        ("grafana", "grafana/dashboards"),
    ] {
        let mounts = format!("{:?}", compose["services"][svc]["volumes"]);
        assert!(
            mounts.contains(&format!("./{dir}:")),
            "{svc} does not mount ./{dir}"
        );
        assert!(deploy().join(dir).is_dir());
    }
}

#[test]
fn kubernetes_manifests() {
    let dir = deploy().join("k8s");
    let kust = yaml_one(&dir.join("kustomization.yaml"));
    let resources: Vec<&str> = kust
        .get("resources")
        .and_then(Yaml::as_sequence)
        .expect("resources")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let mut on_disk = Vec::new();
    files_with_ext(&dir, &["yaml", "yml"], &mut on_disk);
    for f in &on_disk {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(
            name == "kustomization.yaml" || resources.contains(&name),
            "{name} is not listed in kustomization.yaml"
        );
    }

    let mut kinds = BTreeSet::new();
    let mut deployment = None;
    let mut configmap = None;
    let mut policy = None;
    let mut hpa = None;
    for r in &resources {
        for doc in yaml_docs(&dir.join(r)) {
            let kind = ystr(&doc, "kind")
                .unwrap_or_else(|| panic!("{r}: no kind"))
                .to_string();
            assert!(ystr(&doc, "apiVersion").is_some(), "{r}: no apiVersion");
            assert!(
                doc["metadata"]["name"].as_str().is_some(),
                "{r}: no metadata.name"
            );
            match kind.as_str() {
                "Deployment" => deployment = Some(doc.clone()),
                "ConfigMap" if doc["metadata"]["name"].as_str() == Some("churnguard-policy") => {
                    policy = Some(doc.clone())
                }
                "ConfigMap" => configmap = Some(doc.clone()),
                "HorizontalPodAutoscaler" => hpa = Some(doc.clone()),
                _ => {}
            }
            kinds.insert(kind);
        }
    }
    for k in [
        "Namespace",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodMonitor",
        "HorizontalPodAutoscaler",
    ] {
        assert!(kinds.contains(k), "no {k} in deploy/k8s");
    }

    let cm = configmap.unwrap();
    assert_known_env(&env_keys(cm.get("data")), "configmap.yaml");

    // The policy ConfigMap ships the documented default verbatim, and it is a valid policy.
    let policy = policy.expect("a churnguard-policy ConfigMap");
    let text = policy["data"]["policy.toml"]
        .as_str()
        .expect("policy.toml key");
    assert_eq!(
        text,
        churnguard::policy::DEFAULT_POLICY_TOML,
        "deploy/k8s/policy-configmap.yaml drifted from deploy/policy/default.toml"
    );
    churnguard::policy::Policy::parse("policy-configmap.yaml", text).expect("valid policy");
    let addr = cm["data"]["CHURNGUARD_METRICS_ADDR"]
        .as_str()
        .unwrap_or("0.0.0.0:9464");
    assert!(
        addr.ends_with(&format!(":{METRICS_PORT}")),
        "metrics address {addr} must use port {METRICS_PORT}"
    );

    let d = deployment.unwrap();
    let spec = &d["spec"]["template"]["spec"];
    assert_eq!(d["spec"]["replicas"].as_u64(), Some(2));
    assert_eq!(spec["terminationGracePeriodSeconds"].as_u64(), Some(60));
    assert_eq!(
        spec["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );
    let c = &spec["containers"][0];
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false)
    );
    assert_eq!(
        c["envFrom"][0]["configMapRef"]["name"].as_str(),
        cm["metadata"]["name"].as_str()
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(c[probe]["httpGet"]["path"].as_str(), Some(path), "{probe}");
        let port = &c[probe]["httpGet"]["port"];
        let named = c["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"] == *port)
            .map(|p| &p["containerPort"]);
        assert_eq!(
            named.unwrap_or(port).as_u64(),
            Some(METRICS_PORT),
            "{probe} port"
        );
    }
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                !c["resources"][kind][res].is_null(),
                "resources.{kind}.{res} not set"
            );
        }
    }

    let hpa = hpa.unwrap();
    let compose = yaml_one(&deploy().join("docker-compose.yml"));
    let max = hpa["spec"]["maxReplicas"].as_u64().expect("maxReplicas");
    let partitions = compose_input_partitions(&compose);
    assert!(max <= partitions, "HPA maxReplicas {max} exceeds the {partitions} partitions of the input topic: extra pods would idle");
    assert!(hpa["spec"]["minReplicas"].as_u64().expect("minReplicas") <= max);
}

// ---------------------------------------------------------------------------------------------
// promtool

/// `Some(path)` when promtool is available; `None` (after printing why) when it may be skipped.
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("promtool");
    }
    if std::env::var_os("CI").is_some() {
        panic!("promtool not found on PATH but CI is set: CI must install it (apt-get install prometheus)");
    }
    eprintln!("skipped: promtool not installed (apt-get install prometheus)");
    None
}

fn run_promtool(bin: &str, args: &[&str]) {
    let out = Command::new(bin)
        .args(args)
        .current_dir(root())
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_checks() {
    let Some(bin) = promtool() else { return };
    run_promtool(bin, &["check", "rules", "deploy/prometheus/rules.yml"]);
    run_promtool(
        bin,
        &["check", "config", "deploy/prometheus/prometheus.yml"],
    );
    run_promtool(bin, &["test", "rules", "deploy/prometheus/test-rules.yml"]);
}

/// Every dashboard query must be valid PromQL once Grafana's variables are substituted: they
/// are written into a throwaway recording-rule file and checked with `promtool check rules`.
#[test]
fn dashboard_queries_are_valid_promql() {
    let Some(bin) = promtool() else { return };
    let mut rules = Vec::new();
    for name in DASHBOARDS {
        let dash = load_dashboard(name);
        for (i, expr) in dashboard_exprs(&dash).into_iter().enumerate() {
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "1m")
                .replace("$__range", "1h")
                .replace("$job", ".*")
                .replace("$instance", ".*");
            assert!(
                !expr.contains('$'),
                "{name}: unsubstituted variable in {expr}"
            );
            let mut rule = serde_yaml::Mapping::new();
            rule.insert(
                "record".into(),
                format!(
                    "dashboard:{}:q{i}",
                    name.trim_end_matches(".json").replace('-', "_")
                )
                .into(),
            );
            rule.insert("expr".into(), expr.into());
            rules.push(Yaml::Mapping(rule));
        }
    }
    let doc = serde_json::json!({"groups": [{"name": "dashboards", "rules": rules}]});
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    fs::write(&file, serde_yaml::to_string(&doc).unwrap()).unwrap();
    run_promtool(bin, &["check", "rules", file.to_str().unwrap()]);
}
