//! Secrets stay out of the logs: a service configured with a SASL password (from the Kafka
//! option file), a second SASL password (from the environment) and a lookup-API token (from its token
//! file) runs at debug level, serves and refuses API requests, dead-letters input, fails SASL
//! authentication against a broker without it, and none of the three secrets appears anywhere
//! in what it wrote.
//!
//! Run alone with: `cargo test --release --test secrets`

mod util;

use std::path::Path;
use std::time::Duration;

use util::service::{free_port, Service, Topics, MODEL};
use util::*;

const SASL_PASSWORD: &str = "sasl-pw-7f3a9c1e5d";
const KEY_PASSWORD: &str = "key-pw-2b8d4f6a0c";
const API_TOKEN: &str = "api-token-9e1c3a5b7d0f2468";

const DEBUG: (&str, &str) = ("RUST_LOG", "debug");

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("utf-8 path").to_string()
}

/// Fails naming every secret found in `log` (and where), or passes.
fn assert_no_secret(log: &str, run: &str) {
    for secret in [SASL_PASSWORD, KEY_PASSWORD, API_TOKEN] {
        // Also the secret's halves: a value cut by a prefix limit still leaks what it shows.
        let half = &secret[..secret.len() / 2];
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(half)).collect();
        assert!(
            lines.is_empty(),
            "{run}: a secret (or its first half) is in the log:\n{}",
            lines.join("\n")
        );
    }
}

#[test]
fn secrets_configured_from_files_and_env_never_reach_the_logs() {
    let bs = shared().bootstrap();
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = write(dir.path(), "tokens", &format!("crm {API_TOKEN}\n"));
    let options = write(
        dir.path(),
        "kafka.properties",
        &format!("# from a Secret\nsasl.username=churnguard\nsasl.password={SASL_PASSWORD}\n"),
    );
    // The second secret arrives through the environment. It is a SASL password too: `ssl.*`
    // options are refused by this build's librdkafka (no OpenSSL), and librdkafka's refusal
    // quotes the value (README "Known issues").
    let env_options = format!("sasl.password={KEY_PASSWORD}");

    // 1. A working run: plaintext to the broker, the secrets configured but not needed by it.
    let t = Topics::create(&bs, "secrets", 1);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut svc = Service::start_with_env(
        &bs,
        &t,
        Path::new(MODEL),
        &[
            "--kafka-option-file",
            &options,
            "--api-addr",
            &addr,
            "--api-token-file",
            &tokens,
        ],
        &[DEBUG, ("CHURNGUARD_KAFKA_OPTIONS", &env_options)],
    );
    let events = [
        r#"{"event_id":"e1","user_id":"u1","type":"login","ts":"2026-01-05T10:00:00Z"}"#,
        "not json at all",
        r#"{"event_id":"e2","user_id":"u1","type":"purchase","ts":"2026-01-05T10:05:00Z","amount":12.5}"#,
    ];
    let records: Vec<(&str, &str)> = events.iter().map(|e| ("u1", *e)).collect();
    produce(&bs, &t.input, &records);
    let dead = consume_all(&bs, &t.dlq, 1, Duration::from_secs(60));
    assert_eq!(dead.len(), 1, "the malformed message is dead-lettered");
    let up = wait_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    assert!(up, "the API did not bind {addr}; log:\n{}", svc.log_text());
    let client = reqwest::blocking::Client::new();
    for (path, token) in [
        ("/v1/users/u1", Some(API_TOKEN)),
        ("/v1/users/u1/export", Some(API_TOKEN)),
        ("/v1/users/u1", Some("wrong-token-0000000000")),
        ("/v1/users/u1", None),
    ] {
        let mut req = client
            .get(format!("http://{addr}{path}"))
            .timeout(Duration::from_secs(10));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().expect("the API answers");
    }
    let status = svc.terminate(Duration::from_secs(60));
    assert!(status.success(), "SIGTERM exit: {status}");
    let log = svc.log_text();
    assert!(
        log.contains("\"level\":\"DEBUG\"") && log.contains("user data export requested"),
        "the run logged at debug level and logged the export:\n{log}"
    );
    assert_no_secret(&log, "plaintext run");

    // 2. A failing run: SASL against a broker that does not speak it, so the authentication
    // error paths log too.
    let t = Topics::create(&bs, "secrets-sasl", 1);
    let sasl = write(
        dir.path(),
        "sasl.properties",
        &format!(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.username=churnguard\n\
             sasl.password={SASL_PASSWORD}\n"
        ),
    );
    let log = run_briefly(&bs, &t, &sasl, &env_options, Duration::from_secs(8));
    assert!(
        log.to_lowercase().contains("sasl") || log.contains("error"),
        "the SASL run logged its failure:\n{log}"
    );
    assert_no_secret(&log, "SASL run");
}

/// `churnguard run` for `time` (it need not become healthy), then SIGKILL; its log.
fn run_briefly(bs: &str, t: &Topics, options: &str, env_options: &str, time: Duration) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_churnguard"))
        .args([
            "--log-format",
            "json",
            "run",
            "--brokers",
            bs,
            "--group",
            &t.group,
        ])
        .args([
            "--input-topic",
            &t.input,
            "--alert-topic",
            &t.alerts,
            "--dlq-topic",
            &t.dlq,
        ])
        .args(["--metrics-addr", "127.0.0.1:0", "--model", MODEL])
        .args(["--kafka-option-file", options])
        .env("RUST_LOG", "debug")
        .env("CHURNGUARD_KAFKA_OPTIONS", env_options)
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(
            std::fs::File::options()
                .append(true)
                .open(&log)
                .expect("log"),
        )
        .spawn()
        .expect("spawn churnguard");
    std::thread::sleep(time);
    let _ = child.kill();
    let _ = child.wait();
    std::fs::read_to_string(&log).unwrap_or_default()
}
