//! The dashboards and alert rules of `deploy/`, proven against a REAL Prometheus server scraping
//! the REAL service (`deploy_files.rs` checks them statically; this runs them).
//!
//! 1. Starts `churnguard demo` (embedded mock Kafka cluster, synthetic history, then a live stream
//!    of 50 events/s) with metrics on a kernel-chosen loopback port, and `prometheus` (Debian
//!    package; `.ci/run` installs it) on a free loopback port, scraping the service every second
//!    as `job="churnguard"` and loading `deploy/prometheus/rules.yml`, evaluated every second.
//! 2. Waits (condition-based, bounded) until the target is up and enough samples exist.
//! 3. Runs every PromQL expression of both dashboards (panel targets and template variables,
//!    with Grafana's variables substituted, once as "All" and once with the concrete job and
//!    instance selected) and of every alert rule through `/api/v1/query`: each must succeed.
//!    Every dashboard query must return data (the service pre-populates all its label values, so
//!    "no data" on a panel is a bug, not an idle service) and the core panels must return
//!    plausible values (see [`core_checks`]). On a healthy service, no alert expression may
//!    return anything, and `/api/v1/rules` must show every rule group loaded, evaluated, with
//!    health "ok" and every alert inactive.
//! 4. `promtool check metrics` on a live `/metrics` scrape reports no problems.
//!
//! Without `prometheus`/`promtool` on PATH the test is skipped, unless `CI` is set (then it
//! fails). Every process started here is stopped by a Drop guard, also when the test panics;
//! Prometheus runs under a supervisor that stops it when this test process dies in any way.

mod util;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use util::dashboards::{deploy, leaf_panels};
use util::service::free_port;
use util::wait_until;

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/churn-lr.json");
/// Live events per second the demo produces once its history is processed.
const LIVE_RATE: u32 = 50;
const JOB: &str = "churnguard";

/// Grafana's time variables, as Grafana would set them for a 1 s scrape interval and a short
/// dashboard range. `$__rate_interval` is at least 4 scrape intervals in Grafana; 10 s holds
/// ~10 samples, so `rate()` always has the two it needs. Longer names first (`$__range_s`
/// before `$__range`).
const TIME_VARS: &[(&str, &str)] = &[
    ("$__rate_interval_ms", "10000"),
    ("$__rate_interval", "10s"),
    ("$__interval_ms", "1000"),
    ("$__interval", "1s"),
    ("$__range_ms", "60000"),
    ("$__range_s", "60"),
    ("$__range", "1m"),
];

// ---------------------------------------------------------------------------------------------
// Tools and processes

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

fn pid_alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; count it as dead.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

/// `churnguard demo`, killed on drop. It also stops by itself after `--duration-secs`, so it
/// cannot outlive a test process that is killed outright.
struct Demo {
    child: Child,
    /// `127.0.0.1:<port>` of its /metrics.
    addr: String,
    stdout: Arc<Mutex<String>>,
    stderr_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Demo {
    fn start() -> Demo {
        let dir = tempfile::Builder::new()
            .prefix("churnguard-demo-")
            .tempdir()
            .expect("tempdir");
        let stderr_log = dir.path().join("stderr.log");
        // A healthy service runs a recently trained model. The committed demo model learned from
        // synthetic 2025 data, old enough to trip ChurnguardModelStale (whose firing is covered by
        // deploy/prometheus/test-rules.yml): serve a copy whose training data ends now.
        let model = dir.path().join("model.json");
        let mut artifact: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(MODEL).expect("model file"))
                .expect("model JSON");
        artifact["training"]["data"]["last_event"] = serde_json::json!(
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
        std::fs::write(&model, serde_json::to_vec_pretty(&artifact).expect("JSON"))
            .expect("write model copy");
        let mut child = Command::new(env!("CARGO_BIN_EXE_churnguard"))
            .arg("demo")
            // Port 0: the kernel picks a free port (no probe-then-bind race); the demo prints it.
            .args(["--metrics-addr", "127.0.0.1:0", "--model"])
            .arg(&model)
            .args(["--users", "500", "--days", "120"])
            .args(["--live-rate", &LIVE_RATE.to_string()])
            .args(["--duration-secs", "120", "--print-alerts", "0"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log).expect("log file"))
            .spawn()
            .expect("spawn churnguard demo");
        // Keep draining stdout (the demo prints alert progress); remember the start of it.
        let stdout = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stdout.take().expect("stdout");
        let buf = Arc::clone(&stdout);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("metrics on http://") {
                    let rest = &line[at + "metrics on http://".len()..];
                    let addr = rest.split('/').next().unwrap_or_default().to_string();
                    let _ = tx.send(addr);
                }
                let mut b = buf.lock().unwrap();
                if b.len() < 64 * 1024 {
                    b.push_str(&line);
                    b.push('\n');
                }
            }
        });
        let mut demo = Demo {
            child,
            addr: String::new(),
            stdout,
            stderr_log,
            _dir: dir,
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => demo.addr = addr,
            Err(_) => panic!(
                "churnguard demo did not report its metrics address within 30 s\n{}",
                demo.output()
            ),
        }
        demo
    }

    fn output(&self) -> String {
        let err = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
        format!(
            "demo stdout:\n{}\ndemo stderr (tail):\n{}",
            self.stdout.lock().unwrap(),
            tail(&err, 4000)
        )
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "churnguard demo exited early with {status}\n{}",
                self.output()
            );
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Prometheus server. It runs under a `bash` supervisor that stops it when its stdin reaches
/// EOF: when this guard is dropped, or when the test process dies in any way (even SIGKILL).
struct Prometheus {
    supervisor: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
    base: String,
    dir: tempfile::TempDir,
}

const SUPERVISOR: &str = r#"
    (
        "$PROM_BIN" --config.file=prometheus.yml --storage.tsdb.path=data \
            --web.listen-address="$PROM_ADDR" --log.level=warn \
            </dev/null >prometheus.log 2>&1 &
        echo "$!" > prometheus.pid
        wait "$!"
        echo "$?" > prometheus.exit
    ) &
    cat >/dev/null
    for _ in $(seq 40); do [ -s prometheus.pid ] && break; sleep 0.05; done
    pid=$(cat prometheus.pid 2>/dev/null)
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$pid" 2>/dev/null
    fi
    wait
    cd / && rm -rf "$PROM_DIR"
"#;

impl Prometheus {
    /// Starts Prometheus scraping `target` every second; retries on another port if the probed
    /// port was taken meanwhile.
    fn start(bin: &Path, target: &str) -> Prometheus {
        let mut last = String::new();
        for _ in 0..3 {
            match Prometheus::try_start(bin, target) {
                Ok(p) => return p,
                Err(e) => last = e,
            }
        }
        panic!("could not start prometheus: {last}");
    }

    fn try_start(bin: &Path, target: &str) -> Result<Prometheus, String> {
        let dir = tempfile::Builder::new()
            .prefix("churnguard-prometheus-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/rules.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules:?}\n\
             scrape_configs:\n  - job_name: {JOB}\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: [{target:?}]\n",
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).map_err(|e| e.to_string())?;
        let addr = format!("127.0.0.1:{}", free_port());
        let mut supervisor = Command::new("bash")
            .arg("-c")
            .arg(SUPERVISOR)
            .current_dir(dir.path())
            .env("PROM_BIN", bin)
            .env("PROM_ADDR", &addr)
            .env("PROM_DIR", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn bash: {e}"))?;
        let stdin = supervisor.stdin.take();
        let mut p = Prometheus {
            supervisor,
            stdin,
            pid: 0,
            base: format!("http://{addr}"),
            dir,
        };
        let pid_file = p.dir.path().join("prometheus.pid");
        let exit_file = p.dir.path().join("prometheus.exit");
        let client = http();
        let ready = wait_until(Duration::from_secs(30), || {
            if p.pid == 0 {
                p.pid = std::fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
            }
            exit_file.exists()
                || client
                    .get(format!("{}/-/ready", p.base))
                    .send()
                    .is_ok_and(|r| r.status().is_success())
        });
        if !ready || exit_file.exists() || p.pid == 0 {
            return Err(format!(
                "prometheus on {addr} not ready (exited: {}); log:\n{}",
                exit_file.exists(),
                p.log()
            ));
        }
        Ok(p)
    }

    fn log(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        tail(&log, 4000).to_string()
    }

    /// GET an API path with URL parameters; the parsed JSON body, whatever the HTTP status
    /// (Prometheus answers errors as JSON with status 400/422).
    fn api(&self, path: &str, params: &[(&str, &str)]) -> Json {
        let url = format!("{}{path}", self.base);
        let resp = http()
            .get(&url)
            .query(params)
            .send()
            .unwrap_or_else(|e| panic!("{url}: {e}; prometheus log:\n{}", self.log()));
        let body = resp.text().expect("response body");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {body}"))
    }

    /// An instant query: `Ok(result vector/scalar)` or `Err(error message)`.
    fn query(&self, expr: &str) -> Result<Json, String> {
        let r = self.api("/api/v1/query", &[("query", expr)]);
        if r["status"] == "success" {
            Ok(r["data"].clone())
        } else {
            Err(format!("{}: {}", r["errorType"], r["error"]))
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        util::stop_supervisor(self.stdin.take(), &mut self.supervisor);
        if self.pid != 0 && pid_alive(self.pid) {
            let _ = Command::new("kill")
                .args(["-9", &self.pid.to_string()])
                .status();
        }
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

// ---------------------------------------------------------------------------------------------
// What to query

/// One PromQL expression of a dashboard or a rule, before variable substitution.
#[derive(Debug, Clone)]
struct Query {
    /// `dashboard.json / panel title` or `rules.yml / alert name`.
    origin: String,
    /// Panel title (dashboards), alert name (rules).
    title: String,
    expr: String,
}

/// Panel target expressions and template-variable queries of every dashboard.
fn dashboard_queries() -> (Vec<Query>, Vec<Query>) {
    let dir = deploy().join("grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dashboards dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "dashboards: {files:?}");
    let (mut panels_q, mut vars_q) = (Vec::new(), Vec::new());
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let dash: Json = serde_json::from_str(&std::fs::read_to_string(&f).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut panels = Vec::new();
        leaf_panels(dash["panels"].as_array().expect("panels"), &mut panels);
        for p in panels {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    panels_q.push(Query {
                        origin: format!(
                            "{name} / {title} ({})",
                            t["refId"].as_str().unwrap_or("?")
                        ),
                        title: title.clone(),
                        expr: expr.to_string(),
                    });
                }
            }
        }
        for v in dash["templating"]["list"].as_array().into_iter().flatten() {
            if v["type"] != "query" {
                continue;
            }
            let q = v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .or(v["definition"].as_str())
                .unwrap_or_default();
            vars_q.push(Query {
                origin: format!("{name} / variable {}", v["name"]),
                title: v["name"].as_str().unwrap_or("?").to_string(),
                expr: q.to_string(),
            });
        }
    }
    (panels_q, vars_q)
}

/// Every rule of rules.yml, with its group.
fn rule_queries() -> (BTreeSet<String>, Vec<Query>) {
    let text = std::fs::read_to_string(deploy().join("prometheus/rules.yml")).unwrap();
    let doc: Yaml = serde_yaml::from_str(&text).expect("rules.yml");
    let mut groups = BTreeSet::new();
    let mut out = Vec::new();
    for g in doc["groups"].as_sequence().expect("groups") {
        let group = g["name"].as_str().expect("group name").to_string();
        groups.insert(group.clone());
        for r in g["rules"].as_sequence().expect("rules") {
            let name = r["alert"]
                .as_str()
                .or(r["record"].as_str())
                .expect("rule name")
                .to_string();
            out.push(Query {
                origin: format!("rules.yml / {group} / {name}"),
                title: name,
                expr: r["expr"].as_str().expect("expr").to_string(),
            });
        }
    }
    (groups, out)
}

/// The two selections a user makes on the dashboards: "All" (Grafana's `allValue` `.*`) and
/// the concrete job and instance.
fn selections(instance: &str) -> [(&'static str, [(&'static str, String); 2]); 2] {
    [
        ("All", [("$job", ".*".into()), ("$instance", ".*".into())]),
        (
            "selected",
            [("$job", JOB.into()), ("$instance", instance.to_string())],
        ),
    ]
}

fn substitute(expr: &str, vars: &[(&str, String)]) -> String {
    let mut s = expr.to_string();
    for (k, v) in TIME_VARS {
        s = s.replace(k, v);
    }
    for (k, v) in vars {
        s = s.replace(&format!("${{{}}}", &k[1..]), v).replace(k, v);
    }
    assert!(!s.contains('$'), "unsubstituted variable in {s}");
    s
}

/// Grafana's `label_values(selector, label)` as `(selector, label)`.
fn label_values(q: &str) -> Option<(String, String)> {
    let inner = q.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    Some((selector.trim().to_string(), label.trim().to_string()))
}

/// Sample values of an instant-query result (vector or scalar); NaN for unparsable values.
fn values(data: &Json) -> Vec<f64> {
    let parse = |v: &Json| {
        v[1].as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN)
    };
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| parse(&s["value"]))
            .collect(),
        Some("scalar") => vec![parse(&data["result"])],
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// What the answers must be

type Check = fn(&[f64]) -> bool;

fn some_positive(v: &[f64]) -> bool {
    v.iter().any(|x| x.is_finite() && *x > 0.0)
}
fn live_rate(v: &[f64]) -> bool {
    // The whole 10 s window in the live phase (not straddling its start): about LIVE_RATE.
    v.iter().sum::<f64>() >= f64::from(LIVE_RATE) / 2.0
}
fn all_one(v: &[f64]) -> bool {
    !v.is_empty() && v.iter().all(|x| *x == 1.0)
}
fn all_finite(v: &[f64]) -> bool {
    !v.is_empty() && v.iter().all(|x| x.is_finite())
}
fn latency(v: &[f64]) -> bool {
    // histogram_quantile: NaN when nothing was observed in the window; else within the buckets.
    !v.is_empty() && v.iter().all(|x| x.is_finite() && *x > 0.0 && *x <= 0.1)
}
fn probability(v: &[f64]) -> bool {
    !v.is_empty() && v.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x))
}
fn non_negative(v: &[f64]) -> bool {
    !v.is_empty() && v.iter().all(|x| x.is_finite() && *x >= 0.0)
}

/// The CORE panels, by title: what an operator looks at first, and what the demo (500 users'
/// history, then a steady 50 events/s) must show with real values, not just series of zeros:
///
/// * the pipeline is up and consuming: ready (1 per instance), assigned partitions, events
///   consumed per second (at least half the live rate: the rate window lies in the live phase),
///   per-type breakdown, offset commits (> 0: checkpoints every 2 s);
/// * input quality: rejected by reason (one series per reason, pre-populated zeros allowed: the
///   demo's malformed messages are in the history, which may be processed before the second
///   scrape);
/// * latency: processing and scoring p50/p99 are real numbers within the histogram buckets
///   (a NaN quantile means the panel shows nothing);
/// * state: users tracked (> 0), event-time lag (finite);
/// * the product: alerts published (counters may legitimately not move during the check:
///   timer alerts mostly fire while the history is replayed), scores per second (> 0: each
///   live event is scored), the churn score distribution (some bucket increases) and its
///   quantiles (probabilities), model threshold (a probability), model version (1 with its
///   labels), build info.
///
/// Every other panel (DLQ, delivery errors, suppressions, evictions, the shares) must
/// still return data — the service pre-populates all label values so that an idle series shows
/// 0, not "No data" — but its value is not constrained.
fn core_checks() -> Vec<(&'static str, &'static str, Check)> {
    vec![
        ("Ready instances", "== 1", all_one as Check),
        ("Ready by instance", "== 1", all_one),
        ("Assigned partitions", "> 0", some_positive),
        ("Events consumed /s", ">= half the live rate", live_rate),
        ("Events consumed /s by type", "some type > 0", some_positive),
        (
            "Events rejected /s by reason",
            ">= 0 per reason",
            non_negative,
        ),
        (
            "Event processing latency",
            "quantiles in (0, 0.1] s",
            latency,
        ),
        ("Scoring latency", "quantiles in (0, 0.1] s", latency),
        ("Users tracked", "> 0", some_positive),
        ("Users tracked by instance", "> 0", some_positive),
        ("Event-time lag", "finite", all_finite),
        (
            "Offset commits /s by result",
            "some result > 0",
            some_positive,
        ),
        ("Alerts published in range", ">= 0", non_negative),
        ("Alerts /s", ">= 0", non_negative),
        ("Alerts published /s by trigger", ">= 0", non_negative),
        ("Scores /s by trigger", "> 0", some_positive),
        ("Churn score distribution", "some bucket > 0", some_positive),
        ("Churn score quantiles", "probabilities", probability),
        ("Model threshold", "probability", probability),
        ("Model version by instance", "== 1", all_one),
        ("Build version by instance", "== 1", all_one),
    ]
}

/// Runs every dashboard query under both selections; returns the problems (empty = all good)
/// and, per origin, the values seen (for the report).
fn check_dashboards(
    prom: &Prometheus,
    panels: &[Query],
    vars: &[Query],
    instance: &str,
) -> (Vec<String>, Vec<(String, Vec<f64>)>) {
    let core = core_checks();
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for (sel, subst) in selections(instance) {
        for q in panels {
            let expr = substitute(&q.expr, &subst);
            match prom.query(&expr) {
                Err(e) => problems.push(format!(
                    "[{sel}] {}: query failed: {e}\n    {expr}",
                    q.origin
                )),
                Ok(data) => {
                    let v = values(&data);
                    if v.is_empty() {
                        problems.push(format!("[{sel}] {}: no data\n    {expr}", q.origin));
                    } else if let Some((_, want, check)) =
                        core.iter().find(|(t, _, _)| *t == q.title)
                    {
                        if !check(&v) {
                            problems.push(format!(
                                "[{sel}] {}: core panel values {v:?}, want {want}\n    {expr}",
                                q.origin
                            ));
                        }
                    }
                    if sel == "All" {
                        seen.push((q.origin.clone(), v));
                    }
                }
            }
        }
        // Template variables: Grafana asks /api/v1/label/<label>/values?match[]=<selector>.
        for q in vars {
            let Some((selector, label)) = label_values(&q.expr) else {
                problems.push(format!(
                    "{}: not a label_values() query: {}",
                    q.origin, q.expr
                ));
                continue;
            };
            let selector = substitute(&selector, &subst);
            if let Err(e) = prom.query(&selector) {
                problems.push(format!("[{sel}] {}: selector failed: {e}", q.origin));
                continue;
            }
            let r = prom.api(
                &format!("/api/v1/label/{label}/values"),
                &[("match[]", selector.as_str())],
            );
            let got: Vec<&str> = r["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Json::as_str)
                .collect();
            let want = if label == "job" { JOB } else { instance };
            if r["status"] != "success" || !got.contains(&want) {
                problems.push(format!(
                    "[{sel}] {}: label values of {label} for {selector}: {r}, want {want}",
                    q.origin
                ));
            }
        }
    }
    for (title, _, _) in &core {
        if !panels.iter().any(|q| q.title == *title) {
            problems.push(format!("core panel {title:?} not found in the dashboards"));
        }
    }
    (problems, seen)
}

/// Every rule expression parses and runs; on this healthy service none returns anything (no
/// alert would fire: events flow, the instance is ready, the model is loaded, the watermark
/// follows the wall clock, there is no delivery or commit error and 5 of ~100,000 messages are
/// rejected); `/api/v1/rules` shows every group, every rule evaluated with health "ok", inactive.
fn check_rules(prom: &Prometheus, groups: &BTreeSet<String>, rules: &[Query]) -> Vec<String> {
    let mut problems = Vec::new();
    for q in rules {
        match prom.query(&q.expr) {
            Err(e) => problems.push(format!("{}: query failed: {e}", q.origin)),
            Ok(data) => {
                let v = values(&data);
                if !v.is_empty() {
                    problems.push(format!(
                        "{}: would fire on a healthy service: {}",
                        q.origin, data["result"]
                    ));
                }
            }
        }
    }
    let r = prom.api("/api/v1/rules", &[]);
    if r["status"] != "success" {
        problems.push(format!("/api/v1/rules: {r}"));
        return problems;
    }
    let loaded = r["data"]["groups"].as_array().cloned().unwrap_or_default();
    let loaded_names: BTreeSet<String> = loaded
        .iter()
        .filter_map(|g| g["name"].as_str().map(str::to_string))
        .collect();
    if &loaded_names != groups {
        problems.push(format!(
            "rule groups loaded {loaded_names:?}, rules.yml has {groups:?}"
        ));
    }
    let mut names = BTreeSet::new();
    for g in &loaded {
        for rule in g["rules"].as_array().into_iter().flatten() {
            let name = rule["name"].as_str().unwrap_or("?");
            names.insert(name.to_string());
            if rule["health"] != "ok" {
                problems.push(format!(
                    "rule {name}: health {} ({})",
                    rule["health"], rule["lastError"]
                ));
            }
            if rule["lastEvaluation"]
                .as_str()
                .is_none_or(|t| t.starts_with("0001-"))
            {
                problems.push(format!("rule {name}: never evaluated"));
            }
            if rule["type"] == "alerting" && rule["state"] != "inactive" {
                problems.push(format!(
                    "alert {name}: state {} on a healthy service: {}",
                    rule["state"], rule["alerts"]
                ));
            }
        }
    }
    for q in rules {
        if !names.contains(&q.title) {
            problems.push(format!("rule {} not loaded by prometheus", q.title));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------

#[test]
fn dashboards_and_alert_rules_work_against_a_live_prometheus() {
    let (Some(prometheus), Some(promtool)) = (on_path("prometheus"), on_path("promtool")) else {
        if std::env::var_os("CI").is_some() {
            panic!("prometheus/promtool not installed but CI is set (apt-get install prometheus)");
        }
        println!("skipped: prometheus not installed (apt-get install prometheus)");
        return;
    };
    let t0 = Instant::now();
    let (panels, vars) = dashboard_queries();
    let (groups, rules) = rule_queries();

    let mut demo = Demo::start();
    let t_demo = t0.elapsed();
    let prom = Prometheus::start(&prometheus, &demo.addr);
    let t_prom = t0.elapsed();
    let instance = demo.addr.clone();

    // 1. The target is scraped and up.
    let up = wait_until(Duration::from_secs(20), || {
        demo.assert_running();
        prom.query(&format!(r#"up{{job="{JOB}", instance="{instance}"}} == 1"#))
            .is_ok_and(|d| !values(&d).is_empty())
    });
    assert!(
        up,
        "prometheus never scraped {instance} as up: {}\nprometheus log:\n{}\n{}",
        prom.api("/api/v1/targets", &[]),
        prom.log(),
        demo.output()
    );
    let t_up = t0.elapsed();

    // 2. `promtool check metrics` on a live scrape: no problems at all.
    let text = http()
        .get(format!("http://{instance}/metrics"))
        .send()
        .and_then(|r| r.text())
        .expect("scrape /metrics");
    assert!(text.contains("churnguard_model_info{"), "scrape: {text}");
    let mut lint = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    lint.stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let lint = lint.wait_with_output().expect("promtool");
    let lint_out = format!(
        "{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    assert!(
        lint.status.success() && lint_out.trim().is_empty(),
        "promtool check metrics on a live scrape: {} {lint_out}",
        lint.status
    );

    // 3. Dashboards: wait (bounded) until every query answers with data and the core panels with
    //    real values: rate() and histogram_quantile() need >= 2 scrapes in their window.
    let mut last = (Vec::new(), Vec::new());
    let ok = wait_until(Duration::from_secs(30), || {
        demo.assert_running();
        last = check_dashboards(&prom, &panels, &vars, &instance);
        last.0.is_empty()
    });
    assert!(
        ok,
        "dashboard queries against the live service:\n{}\n{}",
        last.0.join("\n"),
        demo.output()
    );
    let t_dash = t0.elapsed();

    // 4. Rules: they run, return nothing on a healthy service, and are loaded and evaluated.
    //    (Alerts may be briefly pending right after the first scrapes, e.g. ChurnguardNotReady
    //    before partitions are assigned; they must settle to inactive.)
    let mut rule_problems = Vec::new();
    let ok = wait_until(Duration::from_secs(15), || {
        rule_problems = check_rules(&prom, &groups, &rules);
        rule_problems.is_empty()
    });
    assert!(
        ok,
        "alert rules against the live service:\n{}\nprometheus log:\n{}",
        rule_problems.join("\n"),
        prom.log()
    );
    let t_rules = t0.elapsed();

    eprintln!(
        "[prometheus_live] demo metrics on {instance} after {t_demo:.1?}; prometheus ready after \
         {t_prom:.1?}; target up after {t_up:.1?}; {} dashboard queries + {} variables (x2 \
         selections) OK after {t_dash:.1?}; {} rules in {} group(s) OK after {t_rules:.1?}",
        panels.len(),
        vars.len(),
        rules.len(),
        groups.len()
    );
    for (origin, v) in &last.1 {
        eprintln!("[prometheus_live]   {origin}: {v:?}");
    }

    // Nothing left running: prometheus is stopped by its guard (checked), the demo by its own.
    let pid = prom.pid;
    drop(prom);
    assert!(
        !pid_alive(pid),
        "prometheus (pid {pid}) still running after drop"
    );
    drop(demo);
}
