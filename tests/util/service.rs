#![allow(dead_code)]
//! The service under test: `churnguard run` as a child process, its topics, and /metrics scrapes.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use churnguard::event::encode;

use super::{create_topic, produce, unique, wait_until};

pub const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/churn-lr.json");

/// Options that make the service read slowly: small fetches and a small prefetch queue, so a
/// fault meant to land mid-stream does land mid-stream on a fast machine, which would otherwise
/// consume a whole test topic before the test's next poll.
pub const SLOW_READ: [&str; 4] = [
    "--kafka-option",
    "max.partition.fetch.bytes=16384",
    "--kafka-option",
    "queued.max.messages.kbytes=64",
];

/// `extra` followed by [`SLOW_READ`].
pub fn slow_read<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    extra.iter().copied().chain(SLOW_READ).collect()
}

/// Input, alert and DLQ topics plus a group, all unique to one test.
pub struct Topics {
    pub input: String,
    pub alerts: String,
    pub dlq: String,
    pub group: String,
}

impl Topics {
    pub fn create(bootstrap: &str, prefix: &str, input_partitions: i32) -> Topics {
        let t = Topics {
            input: unique(&format!("{prefix}-in")),
            alerts: unique(&format!("{prefix}-alerts")),
            dlq: unique(&format!("{prefix}-dlq")),
            group: unique(&format!("{prefix}-group")),
        };
        create_topic(bootstrap, &t.input, input_partitions);
        create_topic(bootstrap, &t.alerts, 1);
        create_topic(bootstrap, &t.dlq, 1);
        t
    }
}

/// A `churnguard run` child process and its metrics port.
pub struct Service {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl Service {
    pub fn start(bootstrap: &str, t: &Topics) -> Service {
        Service::start_with(bootstrap, t, &[])
    }

    pub fn start_with(bootstrap: &str, t: &Topics, extra: &[&str]) -> Service {
        Service::start_with_model(bootstrap, t, std::path::Path::new(MODEL), extra)
    }

    /// Like [`Service::start_with`], scoring with the model file at `model`.
    pub fn start_with_model(
        bootstrap: &str,
        t: &Topics,
        model: &std::path::Path,
        extra: &[&str],
    ) -> Service {
        Service::start_with_env(bootstrap, t, model, extra, &[])
    }

    /// Like [`Service::start_with_model`], with environment variables set after the defaults
    /// (so they win over them, `RUST_LOG` included).
    pub fn start_with_env(
        bootstrap: &str,
        t: &Topics,
        model: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Service {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("churnguard.log");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_churnguard"))
            .args(["--log-format", "json", "run"])
            .args(["--brokers", bootstrap, "--group", &t.group])
            .args([
                "--input-topic",
                &t.input,
                "--alert-topic",
                &t.alerts,
                "--dlq-topic",
                &t.dlq,
            ])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}"), "--model"])
            .arg(model)
            .args(extra)
            // Defaults by environment, as a deployment would set them; flags in `extra` win.
            .env("CHURNGUARD_SESSION_TIMEOUT_MS", "6000")
            .env("CHURNGUARD_COMMIT_INTERVAL_MS", "300")
            .env("RUST_LOG", "info,rdkafka=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn churnguard");
        let mut s = Service {
            child,
            port,
            log,
            _dir: dir,
        };
        let up = wait_until(Duration::from_secs(30), || {
            s.get("/healthz").is_some_and(|(code, _)| code == 200)
        });
        assert!(up, "service did not serve /healthz; log:\n{}", s.log_text());
        s
    }

    pub fn get(&mut self, path: &str) -> Option<(u16, String)> {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "churnguard exited early with {status}; log:\n{}",
                self.log_text()
            );
        }
        let r = reqwest::blocking::Client::new()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .timeout(Duration::from_secs(5))
            .send()
            .ok()?;
        let code = r.status().as_u16();
        Some((code, r.text().ok()?))
    }

    /// A scrape, or `None` if the endpoint did not answer in time (a busy machine).
    pub fn try_metrics(&mut self) -> Option<Metrics> {
        match self.get("/metrics") {
            Some((200, text)) => Some(Metrics(text)),
            _ => None,
        }
    }

    pub fn metrics(&mut self) -> Metrics {
        let (code, text) = self.get("/metrics").expect("scrape /metrics");
        assert_eq!(code, 200);
        Metrics(text)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The exit status, if the process has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait")
    }

    /// Sends SIGHUP (model reload).
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(status.success());
    }

    /// SIGTERM, then wait for exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within {timeout:?} of SIGTERM; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A scrape of /metrics.
pub struct Metrics(pub String);

impl Metrics {
    /// Sum of every series of `family` whose labels contain all of `labels` (`k="v"` pairs).
    pub fn sum(&self, family: &str, labels: &[&str]) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(series, _)| {
                let name = series.split('{').next().unwrap_or("");
                name == family && labels.iter().all(|lab| series.contains(lab))
            })
            .map(|(_, v)| v.parse::<f64>().expect("metric value"))
            .sum()
    }

    pub fn handled(&self) -> u64 {
        (self.sum("churnguard_events_consumed_total", &[])
            + self.sum("churnguard_events_rejected_total", &[])) as u64
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn produce_events(bootstrap: &str, topic: &str, events: &[churnguard::event::Event]) {
    let payloads: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.user_id.clone(), encode(e)))
        .collect();
    let records: Vec<(&str, &str)> = payloads
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for chunk in records.chunks(20_000) {
        produce(bootstrap, topic, chunk);
    }
}

/// One service run over `input` with its own group and alert topic, consumed with the given
/// extra flags; returns the alert ids once every event is committed and every user's
/// last timer has fired (the data lies further back than the retention, so that is eviction).
pub fn alert_ids_to_the_end(
    bootstrap: &str,
    input: &str,
    name: &str,
    extra: &[&str],
) -> std::collections::BTreeSet<String> {
    run_to_the_end(bootstrap, input, name, extra).0
}

/// Like [`alert_ids_to_the_end`], with the service's last scrape of /metrics.
pub fn run_to_the_end(
    bootstrap: &str,
    input: &str,
    name: &str,
    extra: &[&str],
) -> (std::collections::BTreeSet<String>, Metrics) {
    let t = Topics {
        input: input.to_string(),
        alerts: unique(&format!("{name}-alerts")),
        dlq: unique(&format!("{name}-dlq")),
        group: unique(&format!("{name}-group")),
    };
    create_topic(bootstrap, &t.alerts, 1);
    create_topic(bootstrap, &t.dlq, 1);
    let mut s = Service::start_with(bootstrap, &t, extra);
    let done = wait_until(Duration::from_secs(300), || {
        super::changelog::committed_to_end(bootstrap, &t)
            && s.try_metrics().is_some_and(|m| {
                m.sum("churnguard_users_tracked", &[]) == 0.0
                    && m.sum("churnguard_events_consumed_total", &[]) > 0.0
            })
    });
    assert!(done, "{name} did not finish; log:\n{}", s.log_text());
    let published = s.metrics().sum("churnguard_alerts_published_total", &[]) as usize;
    let alerts = super::consume_all(bootstrap, &t.alerts, published, Duration::from_secs(60));
    assert_eq!(
        alerts.len(),
        published,
        "{name}: every published alert is read back"
    );
    let last = s.metrics();
    let status = s.terminate(Duration::from_secs(35));
    assert!(
        status.success(),
        "{name} exit {status}; log:\n{}",
        s.log_text()
    );
    let ids = alerts
        .iter()
        .map(|(_, payload, _)| {
            let a: serde_json::Value = serde_json::from_str(payload).unwrap();
            a["alert_id"].as_str().unwrap().to_string()
        })
        .collect();
    (ids, last)
}
